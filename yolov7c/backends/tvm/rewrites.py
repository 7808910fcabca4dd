"""Relax graph rewrites that run before fusion, each exact (checked against PyTorch in the
tests): they change how the network is computed, never what it computes.

Each is a named module pass (``yolov7c.<Name>``, built by the function of that name, like
TVM's own ``relax.transform.FoldConstant()``): :mod:`.pipeline` runs a pipeline's rewrites
and fusion as one ``Sequential`` under a ``PassContext``, so a pass instrument (timing,
IR dumps) sees each of them as it sees TVM's passes.

- :func:`ChainSamePools`: SPP's max-pools of kernels 5, 9 and 13 (stride 1, "same"
  padding) over one input become a chain of three 5×5 pools, since with -inf padding
  ``maxpool_b(x) = maxpool_(b-a+1)(maxpool_a(x))`` for odd ``a < b``. 75 comparisons per
  output instead of 275, and two kernels fewer to tune (the three 5×5 pools are one task).
- :func:`LeakyAsMax`: ``leaky_relu(x, a)`` → ``maximum(x, a·x)`` for ``0 ≤ a ≤ 1``. Relax
  0.27 has no layout rule for ``leakyrelu``, so a layout conversion would wrap every
  activation in two transposes; ``maximum`` and ``multiply`` follow any layout, and after
  fusion both sit in the conv's epilogue as leaky_relu did.
- :func:`HeadFromNHWC`: the detect head's ``NHWC→NCHW transpose → reshape (b, a, c, h,
  w) → transpose (0, 1, 3, 4, 2)`` becomes ``reshape (b, h, w, a, c) → transpose (0, 3, 1,
  2, 4)``: one transpose instead of two, and far less index arithmetic in the fused decode
  kernel (the two-transpose form tuned to 5 ms at 416, for a few element-wise ops).
- :func:`NearestAsBroadcast`: a nearest-neighbour resize by an integer factor ``s``
  (the neck's ×2 upsample) becomes reshape → broadcast → reshape: each output pixel copies
  input pixel ``⌊i/s⌋``, which is what "half_pixel" + round (and "asymmetric" + floor)
  compute for an integer factor, without the per-element float coordinate arithmetic
  (the resize+concat kernel took 2.3 ms at 416 after tuning).
- :func:`PadConvChannels`: a convolution whose output channels are not a multiple of the
  target's vector width (16 fp32 lanes on AVX-512, 8 on AVX2, 4 on NEON; the detect
  heads' 255 = 3 × 85) computes 256 with a zero filter and drops the extra channel (a
  slice the decode absorbs): its schedule then works in whole vectors instead of a 51-lane
  tail (the P3 head took 3.2 ms at 416, 55 GFLOP/s).
- :func:`ToNHWC`: convolutions in NHWC / OHWI (channels innermost, so a schedule
  vectorizes over output channels with unit-stride weight reads); everything between
  convolutions follows, the only transposes left are at the input and before the detect
  head's reshapes (the weight transposes fold into the constants).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

from .shapes import ints

MAX_POOL = "relax.nn.max_pool2d"
PASS_PREFIX = "yolov7c."     # every pass of the project is named yolov7c.<Name>


def module_pass(name: str, fn: Callable[[Any], Any]):
    """``fn(mod) -> mod`` as a Relax module pass named ``yolov7c.<name>`` (opt level 0: it
    runs at every optimization level, as the database keys need)."""
    import tvm
    return tvm.transform.module_pass(lambda mod, _ctx: fn(mod), opt_level=0,
                                     name=PASS_PREFIX + name)


def _op_name(call) -> str:
    return getattr(getattr(call, "op", None), "name", "")


def _same_pool_kernel(call) -> int | None:
    """k if ``call`` is a k×k max-pool with stride 1 and padding k//2 on every side (the
    output has the input's size), else None."""
    a = call.attrs
    k = [int(v) for v in a.pool_size]
    if (len(k) != 2 or k[0] != k[1] or k[0] % 2 == 0 or bool(a.ceil_mode)
            or [int(v) for v in a.strides] != [1, 1] or [int(v) for v in a.dilation] != [1, 1]
            or [int(v) for v in a.padding] != [k[0] // 2] * 4 or a.layout != a.out_layout):
        return None
    return k[0]


def _map_functions(mod, fn):
    import tvm
    from tvm import relax
    out = tvm.IRModule(attrs=mod.attrs) if mod.attrs is not None else tvm.IRModule()
    for gv, f in mod.functions.items():
        out[gv] = fn(f) if isinstance(f, relax.Function) else f
    return out


def _chain_same_pools(mod):
    """Max-pools of one input with kernels a < b < … become a chain (see the module doc)."""
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    def rewrite(func):
        kernels: dict[object, set[int]] = defaultdict(set)
        for blk in func.body.blocks:
            for b in blk.bindings:
                v = b.value
                if isinstance(v, relax.Call) and _op_name(v) == MAX_POOL:
                    k = _same_pool_kernel(v)
                    if k is not None:
                        kernels[v.args[0]].add(k)
        if not any(len(ks) > 1 for ks in kernels.values()):
            return func
        x = wildcard()
        pattern = is_op(MAX_POOL)(x)

        def chain(call, matches):
            k, src = _same_pool_kernel(call), call.args[0]  # the bound var, as scanned
            ks = sorted(kernels.get(src, ()))
            if k is None or len(ks) < 2 or k == ks[0]:
                return call
            out, prev = src, 1
            for step_to in ks[:ks.index(k) + 1]:
                step = step_to - prev + 1
                out = relax.op.nn.max_pool2d(out, (step, step), (1, 1), (step // 2,) * 4,
                                             layout=call.attrs.layout)
                prev = step_to
            return out

        return rewrite_call(pattern, chain, func)

    mod = _map_functions(mod, rewrite)
    # the chains share their prefixes: one 5x5 pool of x, one of that, ...
    return tvm.transform.Sequential([relax.transform.Normalize(),
                                     relax.transform.EliminateCommonSubexpr()])(mod)


def _leaky_as_max(mod):
    """``leaky_relu(x, a)`` → ``maximum(x, a·x)`` where ``0 ≤ a ≤ 1`` (exact there)."""
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    x = wildcard()
    pattern = is_op("relax.nn.leakyrelu")(x)

    def as_max(call, matches):
        a = float(call.attrs.alpha)
        if not 0.0 <= a <= 1.0:
            return call
        v = call.args[0]
        dtype = getattr(getattr(v, "ty", None), "dtype", None) or "float32"  # fp32 models
        return relax.op.maximum(v, relax.op.multiply(v, relax.const(a, dtype)))

    return _map_functions(mod, lambda f: rewrite_call(pattern, as_max, f))


def _head_from_nhwc(mod):
    """``permute(reshape(permute(x, NHWC→NCHW), (b, a, c, h, w)), (0, 1, 3, 4, 2))`` →
    ``permute(reshape(x, (b, h, w, a, c)), (0, 3, 1, 2, 4))`` (see the module doc)."""
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    x, shape = wildcard(), wildcard()
    inner = is_op("relax.permute_dims")(x)
    pattern = is_op("relax.permute_dims")(is_op("relax.reshape")(inner, shape))

    def simplify(call, matches):
        first = matches[inner]
        s5 = ints(getattr(matches[shape], "values", []))
        if (ints(call.attrs.axes or []) != [0, 1, 3, 4, 2] or
                ints(first.attrs.axes or []) != [0, 3, 1, 2] or s5 is None or len(s5) != 5):
            return call
        b, a, c, h, w = s5
        src = matches[x]
        src_shape = ints(getattr(getattr(src, "ty", None), "shape", None) or [])
        if src_shape != [b, h, w, a * c]:
            return call
        return relax.op.permute_dims(relax.op.reshape(src, (b, h, w, a, c)), [0, 3, 1, 2, 4])

    return _map_functions(mod, lambda f: rewrite_call(pattern, simplify, f))


def _pad_conv_channels(mod, multiple: int):
    """NCHW/OIHW convolutions with constant weights and ``C_out % multiple != 0`` (and more
    than ``multiple`` channels) → the padded convolution, then a channel slice.
    ``multiple``: the target's fp32 vector lanes (``TargetSpec.vector_lanes``)."""
    import numpy as np
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

    x, w = wildcard(), is_const()
    pattern = is_op("relax.nn.conv2d")(x, w)

    def pad(call, matches):
        a = call.attrs
        weight = matches[w].value.numpy()
        oc = weight.shape[0]
        if (int(a.groups) != 1 or str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW"
                or str(a.out_layout) != "NCHW" or oc <= multiple or oc % multiple == 0):
            return call
        extra = -oc % multiple
        padded = np.concatenate([weight, np.zeros((extra, *weight.shape[1:]), weight.dtype)])
        conv = relax.op.nn.conv2d(call.args[0], relax.const(padded), ints(a.strides),
                                  ints(a.padding), ints(a.dilation), 1, "NCHW", "OIHW",
                                  "NCHW", a.out_dtype or None)
        return relax.op.strided_slice(conv, [1], [0], [oc])

    return _map_functions(mod, lambda f: rewrite_call(pattern, pad, f))


# (coordinate transformation, rounding) pairs that map output i to input floor(i / s) for an
# integer factor s: half_pixel puts (i + .5)/s - .5 strictly inside (k - .5, k + .5)
NEAREST_FLOOR_MODES = {("half_pixel", "round"), ("half_pixel", "round_prefer_floor"),
                       ("half_pixel", "round_prefer_ceil"), ("asymmetric", "floor")}


def _nearest_as_broadcast(mod):
    """Integer-factor nearest resizes → reshape/broadcast/reshape (see the module doc)."""
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    x, size = wildcard(), wildcard()
    pattern = is_op("relax.image.resize2d")(x, size)

    def as_broadcast(call, matches):
        a = call.attrs
        src = call.args[0]
        shape = ints(getattr(getattr(src, "ty", None), "shape", None) or [])
        out_hw = ints(getattr(matches[size], "values", []))
        layout = str(a.layout)
        if (str(a.method) != "nearest_neighbor" or len(shape) != 4 or not out_hw
                or (str(a.coordinate_transformation_mode), str(a.rounding_method))
                not in NEAREST_FLOOR_MODES or layout not in ("NCHW", "NHWC")):
            return call
        hi, wi = layout.index("H"), layout.index("W")
        h, w = shape[hi], shape[wi]
        if out_hw[0] % h or out_hw[1] % w or out_hw[0] // h != out_hw[1] // w:
            return call
        f = out_hw[0] // h
        # (…, H, 1, W, 1, …) broadcast to (…, H, f, W, f, …), then merged
        split = shape[:hi + 1] + [1] + shape[wi:wi + 1] + [1] + shape[wi + 1:]
        wide = shape[:hi + 1] + [f] + shape[wi:wi + 1] + [f] + shape[wi + 1:]
        out = list(shape)
        out[hi], out[wi] = h * f, w * f
        y = relax.op.broadcast_to(relax.op.reshape(src, split), wide)
        return relax.op.reshape(y, out)

    return _map_functions(mod, lambda f: rewrite_call(pattern, as_broadcast, f))


def ChainSamePools():
    """Max-pools of one input with kernels a < b < … as a chain (see the module doc)."""
    return module_pass("ChainSamePools", _chain_same_pools)


def LeakyAsMax():
    """``leaky_relu(x, a)`` → ``maximum(x, a·x)`` where ``0 ≤ a ≤ 1``."""
    return module_pass("LeakyAsMax", _leaky_as_max)


def HeadFromNHWC():
    """The detect head's two transposes after NHWC convs as one (see the module doc)."""
    return module_pass("HeadFromNHWC", _head_from_nhwc)


def PadConvChannels(multiple: int):
    """Conv output channels padded to a ``multiple`` (the target's fp32 vector lanes)."""
    return module_pass("PadConvChannels", lambda mod: _pad_conv_channels(mod, multiple))


def NearestAsBroadcast():
    """Integer-factor nearest resizes as reshape/broadcast/reshape (see the module doc)."""
    return module_pass("NearestAsBroadcast", _nearest_as_broadcast)


def ToNHWC(lanes: int):
    """Convolutions in NHWC/OHWI, the ops between them following (see the module doc), as
    one named ``Sequential`` of its steps; ``lanes``: the target's fp32 vector lanes (the
    channel multiple of :func:`PadConvChannels`)."""
    import tvm
    from tvm import relax
    return tvm.transform.Sequential([
        PadConvChannels(lanes), LeakyAsMax(),
        relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
        relax.transform.Normalize(), HeadFromNHWC(), NearestAsBroadcast()],
        name=PASS_PREFIX + "ToNHWC")


__all__ = ["ChainSamePools", "HeadFromNHWC", "LeakyAsMax", "NearestAsBroadcast",
           "PadConvChannels", "ToNHWC", "module_pass"]
