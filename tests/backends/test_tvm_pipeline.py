"""The TVM pipelines are data, and ``nhwc-fastexp``'s sigmoid is a faster way to compute the
same function: checked against float64 over the whole float range, and on a SiLU network
against PyTorch, with no scalar ``expf`` left in its kernels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from yolov7c.backends import common as bx  # noqa: E402
from yolov7c.backends.tvm import pipeline as pl  # noqa: E402
from yolov7c.backends.tvm import targets as T  # noqa: E402
from yolov7c.backends.tvm.frontend import to_relax  # noqa: E402
from yolov7c.errors import UserError  # noqa: E402

IMG = 64


def test_pipelines_are_data_and_old_names_keep_their_meaning() -> None:
    assert list(pl.PIPELINES) == ["nhwc-winograd", "nhwc-fastexp", "nhwc", "prepack", "zero"]
    assert pl.default_for("llvm") == "nhwc-winograd" and pl.default_for("cuda") == "zero"
    fx, nhwc, wino = pl.get("nhwc-fastexp"), pl.get("nhwc"), pl.get("nhwc-winograd")
    # nhwc-winograd is nhwc-fastexp plus the Winograd rewrite, nothing else
    assert (wino.nhwc, wino.prepack, wino.seeds, wino.fast_exp) == (True, True, True, True)
    assert wino.winograd and not fx.winograd and not nhwc.winograd
    # nhwc-fastexp is nhwc plus the sigmoid, nothing else (databases of nhwc stay valid)
    assert (fx.nhwc, fx.prepack, fx.seeds) == (nhwc.nhwc, nhwc.prepack, nhwc.seeds)
    assert fx.fast_exp and not nhwc.fast_exp and not pl.get("zero").prepack
    with pytest.raises(UserError, match="nhwc-winograd, nhwc-fastexp, nhwc, prepack, zero"):
        pl.check("nhwc2")


def _sigmoid_module(n: int):
    from tvm.script import relax as R

    @tvm.script.ir_module
    class Mod:
        @R.function
        def main(x: R.Tensor((n,), "float32")):
            with R.dataflow():
                y = R.sigmoid(x)
                R.output(y)
            return y

    return Mod


def test_fast_sigmoid_matches_float64_over_the_float_range() -> None:
    from tvm import relax
    x = np.concatenate([np.linspace(-120, 120, 240_001, dtype=np.float32),
                        np.float32([-np.inf, np.inf, 0.0, -0.0, 88.5, -88.5, 1e-30, -1e-30])])
    tgt = T.resolve("llvm").tvm_target()
    got = {}
    for name in ("nhwc", "nhwc-fastexp"):
        ex, _ = pl.build(_sigmoid_module(x.size), tgt, name)
        got[name] = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    with np.errstate(over="ignore"):
        ref = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    for name, y in got.items():
        abs_err = float(np.abs(y - ref).max())
        live = ref > 1e-30                                  # where a relative error means something
        rel_err = float((np.abs(y - ref)[live] / ref[live]).max())
        print(f"{name}: max abs err {abs_err:.2e}, max rel err {rel_err:.2e}")
        assert np.isfinite(y).all() and ((y >= 0) & (y <= 1)).all()
        assert abs_err < 1e-7 and rel_err < 1e-6, name


def test_fastexp_pipeline_equals_torch_on_a_silu_net_without_scalar_exp(bk) -> None:
    net = bk.make_tiny("p5")        # SiLU everywhere: sigmoid in every conv epilogue
    mod = to_relax(net, IMG)
    tgt = T.resolve("llvm").tvm_target()
    x = bx.example_input(net, IMG, seed=2)
    with torch.no_grad():
        ref = [t.numpy() for t in bx.Outputs(net)(x)]
    from tvm import relax
    for name in ("nhwc", "nhwc-fastexp"):
        text = pl.tuning_module(mod, tgt, name).script(show_meta=False)
        # TVM's sigmoid is a T.sigmoid call, lowered to one scalar expf per element
        assert ("T.sigmoid(" in text) == (name == "nhwc"), name
        ex, _ = pl.build(mod, tgt, name)
        out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
        got = [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
        bk.assert_close(ref, got, f"tvm-{name}", rel=1e-5)
