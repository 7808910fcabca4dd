"""Winograd F(4×4, 3×3) convolutions for CPU: 3×3 stride-1 NHWC convs in 4× fewer multiplies.

More than half of yolov7's FLOPs are 3×3 stride-1 convolutions, and a direct convolution,
however well tuned, runs at the machine's FMA peak at best (~300 of 336 GFLOP/s here, the
same as onnxruntime's MLAS). Winograd's minimal filtering computes each 4×4 output tile
from a 6×6 input tile with 36 multiplies per (input channel, output channel) instead of
144: ``Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` (Lavin & Gray, 2016). The filter transform
``U = G g Gᵀ`` is done once, in numpy, when the graph is rewritten (the library carries
``U`` as its weight); the input transform, the 36 channel GEMMs and the output transform
run in one kernel, a chunk of tiles at a time, so the transformed tiles stay in cache.

- :func:`WinogradConv2D` (the pass ``yolov7c.WinogradConv2D``): every NHWC conv with a
  constant 3×3 weight, stride 1, padding 1, dilation 1, one group, channels in whole
  vectors and an output of whole 4×4 tiles, at least ``MIN_TILES`` of them, becomes a
  ``call_tir`` of :func:`compute`. The function is
  marked fusable like a conv (``op_pattern``), so the bias and activation after it fuse
  into its epilogue.
- :func:`apply_schedule`: a hand schedule for the fused kernel (rows of tiles in
  parallel; per chunk of tiles, the input transform vectorized over channels, the GEMMs
  register-blocked, the output transform and epilogue vectorized), with three parameters
  (tiles per chunk, output channels per GEMM block, tiles per register block).
- :func:`candidate_schedules`: the tuner measures a few parameter points per task, each
  a database record, and the build takes the fastest (no evolutionary search: the design
  space is these points). :func:`default_rule` gives a build without a record the first point.

fp32 error: the transforms amplify rounding (Bᵀ and Aᵀ have entries up to 8). Against
onnxruntime, yolov7 @ 640's outputs differ by 2.9e-5 of their scale with these kernels and
1.8e-5 with direct ones; the tests bound the error at 1e-5 of the output's scale against
PyTorch.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .rewrites import module_pass
from .shapes import divisors, ints
from .targets import AVX512, VectorFacts, vector_facts

TILE = 4                      # output tile (m); the input tile is m + 2 = 6
ALPHA = TILE + 2
CANDIDATES = 8                # parameter points measured per task
# Each transformed weight element is used once per 4×4 output tile, and U is 4× the size of
# the 3×3 weight: on yolov7's 20×20 layers (25 tiles, U up to 75 MB) the kernel ran at
# 195-291 GFLOP/s counted as direct FLOPs, against ~300 for a direct conv, and from
# 40×40 (100 tiles) at 550-800. Below this many tiles the conv stays direct.
MIN_TILES = 64
PATTERN_OUT_EWISE_FUSABLE = 4  # Relax's kOutEWiseFusable: elementwise consumers fuse in
BLOCKS = ("wino_rows", "wino_data", "wino_gemm", "wino_inv_rows")

BT = ((4, 0, -5, 0, 1, 0),
      (0, -4, -4, 1, 1, 0),
      (0, 4, -4, -1, 1, 0),
      (0, -2, -1, 2, 1, 0),
      (0, 2, -1, -2, 1, 0),
      (0, 4, 0, -5, 0, 1))
G = ((1 / 4, 0, 0),
     (-1 / 6, -1 / 6, -1 / 6),
     (-1 / 6, 1 / 6, -1 / 6),
     (1 / 24, 1 / 12, 1 / 6),
     (1 / 24, -1 / 12, 1 / 6),
     (0, 0, 1))
AT = ((1, 1, 1, 1, 1, 0),
      (0, 1, -1, 2, -2, 0),
      (0, 1, 1, 4, 4, 0),
      (0, 1, -1, 8, -8, 1))


def weight_transform(w_ohwi: np.ndarray) -> np.ndarray:
    """OHWI 3×3 weights (K, 3, 3, C) → ``U[ε, ν, c, k] = (G g_kc Gᵀ)[ε, ν]`` (float64 math)."""
    g = np.asarray(G, dtype=np.float64)
    u = np.einsum("ea,kabc,nb->enck", g, w_ohwi.astype(np.float64), g)
    return u.astype(w_ohwi.dtype)


def _row_select(mat, row, term):
    """``Σ_j mat[row][j]·term(j)`` for a symbolic ``row``: a Select over the rows, each a sum
    of its non-zero terms only (once the row loop is unrolled, one branch is left)."""
    from tvm import tirx
    expr = None
    for r in reversed(range(len(mat))):
        s = None
        for j, c in enumerate(mat[r]):
            if c == 0:
                continue
            t = term(j)
            t = t if c == 1 else (-t if c == -1 else t * tirx.const(float(c), "float32"))
            s = t if s is None else s + t
        expr = s if expr is None else tirx.Select(row == r, s, expr)
    return expr


def compute(x, u):
    """te: NHWC ``x`` (N, H, W, C), transformed weight ``u`` (6, 6, C, K) → the 3×3 conv
    with padding 1, (N, H, W, K); H and W multiples of 4."""
    from tvm import te, tirx
    n_, h_, w_, c_ = (int(v) for v in x.shape)
    k_ = int(u.shape[-1])
    nh, nw = h_ // TILE, w_ // TILE
    tiles = n_ * nh * nw
    zero = tirx.const(0.0, x.dtype)

    def padded(n, y, xx, c):
        inside = tirx.all(y >= 1, y <= h_, xx >= 1, xx <= w_)
        return tirx.if_then_else(inside, x[n, y - 1, xx - 1, c], zero)
    xp = te.compute((n_, h_ + 2, w_ + 2, c_), padded, name="wino_pad")

    def tile(a, b, p, c):
        return xp[p // (nh * nw), (p // nw) % nh * TILE + a, p % nw * TILE + b, c]
    rows = te.compute((ALPHA, ALPHA, tiles, c_),
                      lambda e, b, p, c: _row_select(BT, e, lambda a: tile(a, b, p, c)),
                      name="wino_rows")
    data = te.compute((ALPHA, ALPHA, tiles, c_),
                      lambda e, v, p, c: _row_select(BT, v, lambda b: rows[e, b, p, c]),
                      name="wino_data")
    rc = te.reduce_axis((0, c_), name="rc")
    gemm = te.compute((ALPHA, ALPHA, tiles, k_),
                      lambda e, v, p, k: te.sum(data[e, v, p, rc] * u[e, v, rc, k], axis=rc),
                      name="wino_gemm")
    inv = te.compute((TILE, ALPHA, tiles, k_),
                     lambda i, v, p, k: _row_select(AT, i, lambda e: gemm[e, v, p, k]),
                     name="wino_inv_rows")

    def out(n, y, xx, k):
        p = n * nh * nw + y // TILE * nw + xx // TILE
        return _row_select(AT, xx % TILE, lambda v: inv[y % TILE, v, p, k])
    return te.compute((n_, h_, w_, k_), out, name="wino_out")


def eligible(data_shape, weight_shape, attrs, lanes: int) -> bool:
    """Whether an NHWC/OHWI conv (shapes as ints) is one :func:`compute` implements with
    channels in whole vectors of ``lanes`` fp32 lanes."""
    if not data_shape or len(data_shape) != 4 or len(weight_shape) != 4:
        return False
    _, h, w, c = data_shape
    k, kh, kw, wc = weight_shape
    return (str(attrs.data_layout) == "NHWC" and str(attrs.kernel_layout) == "OHWI"
            and str(attrs.out_layout) == "NHWC" and int(attrs.groups) == 1
            and (kh, kw) == (3, 3) and wc == c
            and ints(attrs.strides) == [1, 1] and ints(attrs.dilation) == [1, 1]
            and ints(attrs.padding) == [1, 1, 1, 1]
            and c % lanes == 0 and k % lanes == 0 and h % TILE == 0 and w % TILE == 0
            and (h // TILE) * (w // TILE) >= MIN_TILES
            and str(attrs.out_dtype or "float32") == "float32")


def _constant(expr, lookup) -> np.ndarray | None:
    """The value of a constant weight, through variables and a ``permute_dims`` (how
    ConvertLayout hands over an OIHW constant as OHWI)."""
    from tvm import relax
    from tvm.ir.expr import Constant
    while isinstance(expr, relax.Var):
        expr = lookup(expr)
        if expr is None:
            return None
    if isinstance(expr, Constant):
        return expr.value.numpy()
    if (isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.permute_dims"
            and expr.attrs.axes is not None):
        inner = _constant(expr.args[0], lookup)
        return None if inner is None else np.transpose(inner, [int(a) for a in expr.attrs.axes])
    return None


def WinogradConv2D(lanes: int):
    """The pass ``yolov7c.WinogradConv2D``: eligible NHWC 3×3 convs (:func:`eligible`) →
    Winograd ``call_tir`` (see the module doc); ``lanes``: the target's fp32 vector lanes."""
    return module_pass("WinogradConv2D", lambda mod: _rewrite(mod, lanes))


def _rewrite(mod, lanes: int):
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class Winograd(relax.PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if getattr(call.op, "name", "") != "relax.nn.conv2d":
                return call
            # None for a symbolic dimension
            data_shape = ints(getattr(getattr(call.args[0], "ty", None), "shape", None) or [])
            weight = _constant(call.args[1], self.lookup_binding)
            if (weight is None or weight.dtype != np.float32
                    or not eligible(data_shape, weight.shape, call.attrs, lanes)):
                return call
            out = self.builder_.call_te(compute, call.args[0],
                                        relax.const(weight_transform(weight)),
                                        primfunc_name_hint="winograd_conv2d")
            gv = out.args[0]
            func = self.builder_.get()[gv]
            self.builder_.update_func(gv, func.with_attr("op_pattern",
                                                         PATTERN_OUT_EWISE_FUSABLE))
            return out

    mutator = Winograd(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return tvm.transform.Sequential([relax.transform.DeadCodeElimination(),
                                     relax.transform.Normalize()])(mutator.builder_.get())


def is_winograd(func) -> bool:
    """Whether a (fused) PrimFunc holds a :func:`compute` kernel."""
    from tvm import s_tir
    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root") if _has_root(sch) else None
    if root is None:
        return False
    names = {sch.get(b).name_hint for b in sch.get_child_blocks(root)}
    return all(b in names for b in BLOCKS)


def parameter_points(tiles_w: int, k: int, limit: int = CANDIDATES,
                     vec: VectorFacts = AVX512) -> list[tuple[int, int, int]]:
    """(tiles per chunk, output channels per GEMM block, tiles per register block), best
    guess first: chunks of a whole row of tiles where it is short (≤ 20), register blocks
    of half to all of ``vec``'s accumulators (16-28 of AVX-512's 32 registers, 8-12 of
    AVX2's 16)."""
    lanes, acc = vec.lanes, vec.accumulators
    chunks = sorted((d for d in divisors(tiles_w) if 4 <= d <= 20), reverse=True) \
        or [tiles_w]
    out = []
    for kb in (4 * lanes, 2 * lanes, 8 * lanes, lanes):
        if k % kb:
            continue
        vecs = kb // lanes
        for pt in chunks:
            regs = [d for d in divisors(pt) if d * vecs <= acc and d <= 12]
            for pi in sorted(regs, key=lambda d: -d * vecs)[:2]:
                out.append((pt, kb, pi))
    out.sort(key=lambda t: (-(t[0] >= 10), -(vec.registers // 2 <= t[2] * t[1] // lanes <= acc),
                            -t[0]))
    return out[:limit]


def _shape(sch) -> tuple[int, int]:
    """(tiles per row, output channels) of the Winograd kernel in ``sch``, from its loops."""
    def extents(name):
        return [int(sch.get(lp).extent) for lp in sch.get_loops(sch.get_sblock(name))]
    w = extents("wino_out")[2]
    return w // TILE, extents("wino_gemm")[3]


def apply_schedule(sch, chunk: int, kb: int, pi: int, lanes: int) -> None:
    """The hand schedule (module doc) on a fused Winograd kernel, in place; vectors of
    ``lanes`` fp32 lanes."""
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    # the padding, the output gather and the fused epilogue (bias, activation) all inline
    # into the last block, which writes the result: its loops anchor the schedule
    for nm in names[:-1]:
        if nm not in BLOCKS:
            sch.compute_inline(sch.get_sblock(nm))
    anchor = sch.get_sblock(names[-1])
    n, h, w, k = sch.get_loops(anchor)
    th, vh = sch.split(h, [None, TILE])
    tw, vw = sch.split(w, [None, TILE])
    two, twi = sch.split(tw, [None, chunk])
    sch.reorder(n, th, two, twi, vh, vw, k)
    po = sch.fuse(n, th, two)
    sch.parallel(po)
    _, ki = sch.split(k, [None, lanes])
    sch.unroll(vw)
    sch.vectorize(ki)
    inv = sch.get_sblock("wino_inv_rows")
    sch.compute_at(inv, po, preserve_unit_loops=True)
    i_, v_, p_, k_ = sch.get_loops(inv)[1:]
    k1, k2 = sch.split(k_, [None, lanes])
    sch.reorder(p_, k1, i_, v_, k2)
    sch.unroll(i_)
    sch.unroll(v_)
    sch.vectorize(k2)
    gemm = sch.get_sblock("wino_gemm")
    sch.compute_at(gemm, po, preserve_unit_loops=True)
    e, v, p, k, rc = sch.get_loops(gemm)[1:]
    ko, kin = sch.split(k, [None, kb])
    po2, pin = sch.split(p, [None, pi])
    kvo, kv = sch.split(kin, [None, lanes])
    sch.reorder(e, v, ko, po2, rc, pin, kvo, kv)
    sch.unroll(pin)
    sch.unroll(kvo)
    sch.vectorize(kv)
    init = sch.decompose_reduction(gemm, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    data = sch.get_sblock("wino_data")
    sch.compute_at(data, po, preserve_unit_loops=True)
    e, v, p, c = sch.get_loops(data)[1:]
    co, ci = sch.split(c, [None, lanes])
    sch.reorder(p, co, e, v, ci)
    rows = sch.get_sblock("wino_rows")
    sch.compute_at(rows, co, preserve_unit_loops=True)
    r_loops = sch.get_loops(rows)[3:]
    for lp in r_loops[:-1]:
        sch.unroll(lp)
    sch.vectorize(r_loops[-1])
    sch.unroll(e)
    sch.unroll(v)
    sch.vectorize(ci)


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # noqa: BLE001 - a PrimFunc without a root block
        return False


def schedules(func, limit: int = CANDIDATES, postprocs=(), vec: VectorFacts = AVX512) -> list:
    """Traced schedules of ``func`` at its parameter points for a CPU with the vector unit
    ``vec`` (postprocessed when ``postprocs`` are given, as the tuner's records are)."""
    from tvm import s_tir
    base = s_tir.Schedule(func)
    tiles_w, k = _shape(base)
    out = []
    for pt, kb, pi in parameter_points(tiles_w, k, limit, vec):
        sch = s_tir.Schedule(func)
        try:
            apply_schedule(sch, pt, kb, pi, vec.lanes)
        except Exception:  # noqa: BLE001 - a point this kernel's epilogue cannot take
            continue
        if postprocs:
            sch.enter_postproc()
            if not all(p.apply(sch) for p in postprocs):
                continue
        out.append(sch)
    return out


def candidate_schedules(ctx, limit: int = CANDIDATES) -> list:
    """The tuner's measured candidates for a Winograd task ([] for any other task)."""
    if not is_winograd(ctx.mod["main"]):
        return []
    return schedules(ctx.mod, limit, ctx.space_generator.postprocs, vector_facts(ctx.target))


def default_rule():
    """A dlight rule: a Winograd kernel without a record gets the first parameter point."""
    from tvm.s_tir import dlight as dl

    class WinogradDefault(dl.ScheduleRule):
        def apply(self, func, target, _tunable) -> Any:
            if target.kind.name != "llvm" or not is_winograd(func):
                return None
            found = schedules(func, limit=1, vec=vector_facts(target))
            return found[0] if found else None

    return WinogradDefault()


__all__ = ["AT", "BT", "G", "WinogradConv2D", "apply_schedule", "candidate_schedules",
           "compute", "default_rule", "eligible", "is_winograd", "parameter_points",
           "schedules", "weight_transform"]
