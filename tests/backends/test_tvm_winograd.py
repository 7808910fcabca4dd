"""Winograd F(4×4, 3×3) convolutions (``nhwc-winograd``): the transform matrices compute a
3×3 correlation (float64, exact to rounding); the graph rewrite takes exactly the eligible
convolutions and the built network equals PyTorch; every parameter point of the hand
schedule computes what the unscheduled kernel computes, replayed as the build replays a
record; and a tune measures the points as records that a build then uses."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

tvm = pytest.importorskip("tvm")

from yolov7c.backends.tvm import pipeline as pl  # noqa: E402
from yolov7c.backends.tvm import rewrites  # noqa: E402
from yolov7c.backends.tvm import targets as T  # noqa: E402
from yolov7c.backends.tvm import winograd as W  # noqa: E402

IMG = 32
IMG_TUNE = 256      # the synthetic P6 net's stride-8 level is then 32×32: 64 tiles


def test_transform_matrices_compute_a_3x3_correlation() -> None:
    rng = np.random.default_rng(0)
    bt, g, at = (np.asarray(m, dtype=np.float64) for m in (W.BT, W.G, W.AT))
    for _ in range(20):
        d, k = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
        y = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
        ref = np.array([[(d[i:i + 3, j:j + 3] * k).sum() for j in range(4)] for i in range(4)])
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    # the filter transform of a whole OHWI weight is the same G g Gᵀ per (k, c)
    w = rng.standard_normal((5, 3, 3, 4)).astype(np.float32)
    u = W.weight_transform(w)
    assert u.shape == (6, 6, 4, 5)
    np.testing.assert_allclose(u[:, :, 2, 3], g @ w[3, :, :, 2] @ g.T, rtol=1e-6, atol=1e-6)


class Mixed(nn.Module):
    """One eligible 3×3 conv per activation (SiLU, leaky), and the three kinds the rewrite
    must leave alone: 3 input channels, stride 2, 1×1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)          # C = 3: not whole vectors
        self.a = nn.Conv2d(16, 32, 3, 1, 1)            # eligible
        self.b = nn.Conv2d(32, 32, 3, 1, 1)            # eligible
        self.down = nn.Conv2d(32, 32, 3, 2, 1)         # stride 2
        self.pw = nn.Conv2d(32, 16, 1)                 # 1×1

    def forward(self, x):
        x = nn.functional.silu(self.stem(x))
        x = nn.functional.silu(self.a(x))
        x = nn.functional.leaky_relu(self.b(x), 0.1)
        return self.pw(nn.functional.silu(self.down(x)))


def _relax(net: nn.Module, shape=(1, 3, IMG, IMG)):
    """Any torch module → Relax (``to_relax`` wants a YOLO model with a Detect head)."""
    from tvm.relax.frontend.torch import from_exported_program
    ep = torch.export.export(net.eval(), (torch.randn(*shape),))
    return from_exported_program(ep, keep_params_as_input=False)


def _fused(mod, pipeline="nhwc-winograd"):
    return pl.tuning_module(mod, T.resolve("llvm").tvm_target(), pipeline)


def _winograd_funcs(fused) -> dict:
    return {gv.name_hint: f for gv, f in fused.functions.items()
            if isinstance(f, tvm.tirx.PrimFunc) and W.is_winograd(f)}


def test_rewrite_takes_the_eligible_convs_and_the_network_equals_torch() -> None:
    from tvm import relax
    net = Mixed().eval()
    mod = _relax(net)
    lanes = T.resolve("llvm").vector_lanes   # this CPU's; both convs qualify on any
    rewritten = W.WinogradConv2D(lanes)(rewrites.ToNHWC(lanes)(mod))
    text = rewritten["main"].script(show_meta=False)
    assert text.count("R.call_tir(winograd_conv2d") == 2 and text.count("R.nn.conv2d(") == 3
    fused = _fused(mod)
    wino = _winograd_funcs(fused)
    # the bias and the activation fused into the Winograd kernel's epilogue
    assert len(wino) == 2 and all("add" in n for n in wino), list(wino)
    assert not _winograd_funcs(_fused(mod, "nhwc-fastexp"))
    x = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x).numpy()
    tgt = T.resolve("llvm").tvm_target()
    outs = {}
    for name in ("nhwc-fastexp", "nhwc-winograd"):
        ex, _ = pl.build(mod, tgt, name)
        out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
        outs[name] = (out[0] if not hasattr(out, "numpy") else out).numpy()
    scale = float(np.abs(ref).max())
    for name, got in outs.items():
        err = float(np.abs(got - ref).max())
        print(f"{name}: max abs err {err:.2e} (max |ref| {scale:.3g})")
    # Winograd's transforms amplify fp32 rounding (entries up to 8): bound it at 1e-5 of
    # the output's magnitude (measured here: 3e-7 Winograd, 1e-7 direct)
    assert float(np.abs(outs["nhwc-winograd"] - ref).max()) <= 1e-5 * scale
    assert float(np.abs(outs["nhwc-fastexp"] - ref).max()) <= 1e-5 * scale


@pytest.mark.parametrize("size", [18, 16])
def test_ineligible_shapes_are_left_alone(size) -> None:
    """18×18: not whole 4×4 tiles; 16×16: 16 tiles, fewer than ``MIN_TILES`` (each
    transformed weight element would be used too few times to pay for its load)."""
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(16, 16, 3, 1, 1)

        def forward(self, x):
            return self.c(x)
    mod = _relax(Odd(), (1, 16, size, size))
    text = W.WinogradConv2D(16)(rewrites.ToNHWC(16)(mod))["main"].script(show_meta=False)
    assert "winograd" not in text and "R.nn.conv2d(" in text


def _args(func, seed):
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype)
            for a in ArgInfo.from_prim_func(func)]


def _run(mod, args):
    lib = tvm.compile(mod, target=T.resolve("llvm").tvm_target())
    out = [tvm.runtime.tensor(a) for a in args]
    lib["main"](*out)
    return out[-1].numpy()


def test_every_parameter_point_replays_and_equals_the_unscheduled_kernel() -> None:
    from tvm.s_tir import Schedule
    fused = _fused(_relax(Mixed()))
    name, func = sorted(_winograd_funcs(fused).items())[0]
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    args = _args(func, 0)
    ref = _run(mod, args)
    schs = W.schedules(mod)
    assert len(schs) >= 2, name
    for i, sch in enumerate(schs):
        replay = Schedule(mod)
        sch.trace.apply_to_schedule(replay, remove_postproc=True)  # as a build replays it
        text = replay.mod.script(show_meta=False)
        assert "T.parallel(" in text and "T.vectorized(" in text
        err = float(np.abs(_run(replay.mod, args) - ref).max())
        print(f"{name} parameter point {i}: max abs err {err:.2e}")
        assert err <= 1e-5 * float(np.abs(ref).max())


@pytest.mark.parametrize("isa", ["avx512", "avx2", "neon"])
@pytest.mark.parametrize("tiles_w,k", [(80, 64), (20, 128), (5, 512), (1, 256), (10, 1024)])
def test_parameter_points_divide_the_loops_and_fit_the_registers(tiles_w, k, isa) -> None:
    vec = T.VECTOR_CLASSES[isa]
    pts = W.parameter_points(tiles_w, k, vec=vec)
    assert pts and len(set(pts)) == len(pts) <= W.CANDIDATES
    for chunk, kb, pi in pts:
        assert tiles_w % chunk == 0 and k % kb == 0 and chunk % pi == 0
        assert kb % vec.lanes == 0 and pi * kb // vec.lanes <= vec.accumulators
    if isa == "avx512":   # the points the shipped databases were tuned with, unchanged
        assert pts == W.parameter_points(tiles_w, k)


def test_vector_facts_come_from_the_target() -> None:
    """AVX-512: 16 fp32 lanes, 32 registers; AVX2: 8 and 16; NEON: 4 and 32 (issue 21:
    they were AVX-512's for every llvm target)."""
    assert (T.resolve("llvm", mcpu="znver4").vector_lanes,
            T.resolve("llvm", mcpu="znver4").vector_registers) == (16, 32)
    assert (T.resolve("llvm", mcpu="znver3").vector_lanes,
            T.resolve("llvm", mcpu="znver3").vector_registers) == (8, 16)
    assert (T.resolve("aarch64").vector_lanes, T.resolve("aarch64").vector_registers) == (4, 32)
    # an AVX-512 model with AVX-512 switched off (a VM that hides it): AVX2
    off = {"kind": "llvm", "mcpu": "emeraldrapids", "mattr": ["-avx512f"]}
    assert T.vector_facts(off).isa == "avx2"
    assert T.vector_facts(T.resolve("llvm").tvm_target()) == T.resolve("llvm").vector


@pytest.mark.slow
def test_tune_measures_the_points_and_the_build_uses_them(tmp_path, bk) -> None:
    from yolov7c.backends import common as bx
    from yolov7c.backends import tvm as btvm
    from yolov7c.backends.tvm import database as dbm
    from yolov7c.backends.tvm import tuning
    net = bk.make_tiny("p6")           # its 16-channel 3×3 convs at stride 8 are eligible
    db = tmp_path / "db"
    rep = btvm.tune(net, "llvm", IMG_TUNE, db, trials=40, op_names=["winograd"], per_round=4,
                    cost_model="random", progress=False)
    assert rep.pipeline == "nhwc-winograd" and rep.tasks >= 1 and not rep.untuned_tasks
    d = dbm.open_database(db)
    _, tasks = tuning.extract(net, T.resolve("llvm"), (IMG_TUNE, IMG_TUNE))
    wino = {t.task_name: t.dispatched[0] for t in tasks if W.is_winograd(t.dispatched[0]["main"])}
    assert wino
    for name, task_mod in wino.items():
        n = len(d.get_top_k(d.commit_workload(task_mod), 1 << 30))
        # every point measured once, no evolutionary search on top
        assert 1 <= n <= W.CANDIDATES, (name, n)
    out = tmp_path / "m.so"
    meta = btvm.compile_model(net, "llvm", IMG_TUNE, out, db_dir=db, verbose=False)
    assert meta.tasks_tuned >= len(wino) and meta.pipeline == "nhwc-winograd"
    x = bx.example_input(net, IMG_TUNE, seed=2)
    with torch.no_grad():
        ref = [t.numpy() for t in bx.Outputs(net)(x)]
    bk.assert_close(ref, btvm.load(out)(x), "tvm-winograd-tuned", rel=1e-5)
