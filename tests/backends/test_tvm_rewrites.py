"""The Relax rewrites of the ``nhwc`` pipeline change how the network is computed, never what:
each one (a named module pass) is compiled (untuned) and compared with PyTorch, and its
structural promise is checked (three 5×5 pools instead of 5/9/13; no leaky_relu left; no
transposes between convolutions)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from yolov7c.backends import common as bx  # noqa: E402
from yolov7c.backends.tvm import rewrites  # noqa: E402
from yolov7c.backends.tvm.frontend import to_relax  # noqa: E402

IMG = 64


def _run(mod, x: torch.Tensor, target) -> list[np.ndarray]:
    """``mod`` compiled for ``target`` (the tests pass bk.llvm_o0(): what a rewrite computes
    does not depend on LLVM's optimizer, and it compiles 5-6x faster without it), run on x."""
    from tvm import relax
    ex = tvm.compile(mod, target)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]


def _ref(model, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in bx.Outputs(model)(x)]


def _pool_kernels(mod) -> list[int]:
    return [int(k) for k in re.findall(r"max_pool2d\([^)]*?pool_size=\[(\d+)",
                                       mod["main"].script())]


@pytest.fixture(scope="module")
def leaky_p5(bk):
    net = bk.make_tiny("p5")
    from yolov7c.backends.torch import modules as M
    for name, m in net.named_modules():   # the zoo's P5 models use LeakyReLU(0.1)
        if isinstance(m, M.Conv):
            m.act = M.make_act("leaky")
    return net


@pytest.fixture(scope="module")
def leaky_p5_relax(leaky_p5):
    """Its Relax import at IMG, made once (IRModules are immutable; each test rewrites it)."""
    return to_relax(leaky_p5, IMG)


def test_spp_pools_become_a_chain_of_5x5_pools_and_outputs_equal_torch(leaky_p5, leaky_p5_relax,
                                                                       bk):
    mod = leaky_p5_relax
    before = _pool_kernels(mod)
    chained = rewrites.ChainSamePools()(mod)
    after = _pool_kernels(chained)
    print(f"pool kernels {before} -> {after}")
    assert {5, 9, 13} <= set(before) and not {9, 13} & set(after)
    assert after.count(5) == 3                     # the shared prefixes are computed once
    assert after.count(3) == before.count(3)       # a lone pool (SP 3) is left alone
    x = bx.example_input(leaky_p5, IMG, seed=3)
    bk.assert_close(_ref(leaky_p5, x), _run(chained, x, bk.llvm_o0()), "chained-pools", rel=1e-5)


def n_heads(text: str) -> int:
    """Detect heads whose channels were padded: their slices back to 24 channels."""
    return sum(1 for ln in text.splitlines() if "R.strided_slice(" in ln and "(24,)" in ln)


def test_nhwc_rewrites_equal_torch_with_transposes_only_at_the_ends(leaky_p5, leaky_p5_relax,
                                                                    bk):
    from tvm import relax
    mod = leaky_p5_relax
    assert "leakyrelu" in mod["main"].script()
    nhwc = relax.transform.FoldConstant()(rewrites.ToNHWC(16)(mod))   # AVX-512's lanes
    text = nhwc["main"].script()
    assert "leakyrelu" not in text and 'data_layout="NHWC"' in text
    assert "resize2d" not in text and "broadcast_to" in text   # the x2 upsample, as copies
    assert "R.strided_slice(" in text    # the heads' 24 channels computed as 32, then sliced
    # with AVX2's 8 lanes (or NEON's 4) 24 channels are whole vectors already: no padding
    by8 = relax.transform.FoldConstant()(rewrites.ToNHWC(8)(mod))["main"].script()
    assert by8.count("R.strided_slice(") == text.count("R.strided_slice(") - n_heads(text)
    # the input transpose, and one per detection level: the NHWC->NCHW transpose and the
    # decode's own (bs, na, ny, nx, no) permute collapse into one (head_from_nhwc)
    n_levels = 3
    assert text.count("permute_dims") == 1 + n_levels, text.count("permute_dims")
    x = bx.example_input(leaky_p5, IMG, seed=4)
    bk.assert_close(_ref(leaky_p5, x), _run(nhwc, x, bk.llvm_o0()), "nhwc", rel=1e-5)


def test_leaky_with_slope_outside_0_1_is_left_alone() -> None:
    from tvm import relax
    from tvm.script import relax as R

    @tvm.script.ir_module
    class Mod:
        @R.function
        def main(x: R.Tensor((1, 4), "float32")):
            with R.dataflow():
                y = R.nn.leakyrelu(x, alpha=1.5)
                R.output(y)
            return y

    out = rewrites.LeakyAsMax()(Mod)
    assert "leakyrelu" in out["main"].script()   # max(x, 1.5x) would be wrong for x > 0
    assert isinstance(out["main"], relax.Function)


def test_nhwc_on_the_p6_ops_equals_torch(tiny_p6, bk):
    """ReOrg (strided slices + concat), DownC, Shortcut and the IDetect head under NHWC."""
    from tvm import relax
    mod = tvm.transform.Sequential([rewrites.ChainSamePools(), rewrites.ToNHWC(16)])(
        to_relax(tiny_p6, 128))
    x = bx.example_input(tiny_p6, 128, seed=5)
    bk.assert_close(_ref(tiny_p6, x), _run(relax.transform.FoldConstant()(mod), x, bk.llvm_o0()),
                    "nhwc-p6", rel=1e-5)


def test_head_transposes_from_nhwc_collapse_to_one_and_stay_exact() -> None:
    from tvm import relax
    from tvm.script import relax as R

    @tvm.script.ir_module
    class Head:
        @R.function
        def main(x: R.Tensor((1, 4, 5, 12), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])      # NHWC -> NCHW
                b = R.reshape(a, (1, 3, 4, 4, 5))             # (bs, na, no, ny, nx)
                c = R.permute_dims(b, axes=[0, 1, 3, 4, 2])   # (bs, na, ny, nx, no)
                d = R.sigmoid(c)
                R.output(d)
            return d

    out = rewrites.HeadFromNHWC()(Head)
    text = out["main"].script()
    assert text.count("permute_dims") == 1 and "axes=[0, 3, 1, 2, 4]" in text, text
    x = np.random.default_rng(0).random((1, 4, 5, 12), dtype=np.float32)

    def run(mod):
        ex = tvm.compile(mod, "llvm")
        return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()

    assert np.array_equal(run(Head), run(out))
