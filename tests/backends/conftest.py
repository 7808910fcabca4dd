"""Fixtures for backend tests: small YOLO-like nets assembled from our PyTorch modules, and
the zoo models when the zoo exists.

The synthetic nets cover every op the zoo uses in a deploy graph (Conv+act, ELAN-style
concat, MP/SP, SPPCSPC, nearest upsample, ReOrg, DownC, Shortcut, Detect/IDetect decode) at a
fraction of the compile time, so the TVM tests stay within the suite's time budget.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from yolov7c.backends.torch import modules as M

ANCHORS_P5 = [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146],
              [142, 110, 192, 243, 459, 401]]
ANCHORS_P6 = ANCHORS_P5 + [[436, 615, 739, 380, 925, 792]]


def _randomize_bn(net: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics so BN is not an identity in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


class TinyP5(nn.Module):
    """Stride 8/16/32 net: stem, ELAN-ish block, MP down path, SPPCSPC, PAN-ish head, Detect."""

    def __init__(self, nc: int = 3, w: int = 8, act: str = "silu") -> None:
        super().__init__()
        self.stem = nn.Sequential(M.Conv(3, w, 3, 2, act=act), M.Conv(w, 2 * w, 3, 2, act=act))
        self.e1, self.e2 = M.Conv(2 * w, w, 1, act=act), M.Conv(2 * w, w, 1, act=act)
        self.e3, self.e4 = M.Conv(w, w, 3, act=act), M.Conv(w, w, 3, act=act)
        self.cat = M.Concat()
        self.t1 = M.Conv(4 * w, 2 * w, 1, act=act)                      # stride 4
        self.d8 = M.Conv(2 * w, 2 * w, 3, 2, act=act)                  # stride 8
        self.mp, self.d16b = M.MP(), M.Conv(2 * w, 2 * w, 1, act=act)  # stride 16 via MP
        self.d16a = M.Conv(2 * w, 2 * w, 3, 2, act=act)
        self.d32 = M.Conv(4 * w, 4 * w, 3, 2, act=act)                 # stride 32
        self.spp = M.SPPCSPC(4 * w, 2 * w, act=act)
        self.sp = M.SP(3)
        self.up = M.Upsample(2)
        self.h16 = M.Conv(6 * w, 2 * w, 1, act=act)
        self.h8 = M.Conv(4 * w, w, 1, act=act)
        self.detect = M.Detect(nc, ANCHORS_P5, [w, 2 * w, 2 * w], [8, 16, 32])

    def forward(self, x):
        x = self.stem(x)
        a, b = self.e1(x), self.e2(x)
        c = self.e3(b)
        d = self.e4(c)
        x4 = self.t1(self.cat([a, b, c, d]))
        p8 = self.d8(x4)
        p16 = self.cat([self.d16a(p8), self.d16b(self.mp(p8))])
        p32 = self.spp(self.d32(p16))
        h16 = self.h16(self.cat([self.up(p32), p16]))
        h8 = self.h8(self.cat([self.up(h16), p8]))
        return self.detect([h8, h16, self.sp(p32)])


class TinyP6(nn.Module):
    """Stride 8..64 net with the P6 ops: ReOrg stem, DownC, Shortcut, IDetect on 4 levels."""

    def __init__(self, nc: int = 3, w: int = 8) -> None:
        super().__init__()
        self.reorg = M.ReOrg()                                          # stride 2, 12 ch
        self.stem = M.Conv(12, w, 3, act="silu")
        self.d4 = M.DownC(w, 2 * w)
        self.d8 = M.DownC(2 * w, 2 * w)
        self.b1, self.b2 = M.Conv(2 * w, 2 * w, 3), M.Conv(2 * w, 2 * w, 3)
        self.add = M.Shortcut()
        self.d16 = M.DownC(2 * w, 2 * w)
        self.d32 = M.DownC(2 * w, 2 * w)
        self.d64 = M.DownC(2 * w, 2 * w)
        self.detect = M.IDetect(nc, ANCHORS_P6, [2 * w] * 4, [8, 16, 32, 64])

    def forward(self, x):
        p8 = self.d8(self.d4(self.stem(self.reorg(x))))
        p8 = self.add([self.b2(self.b1(p8)), p8])
        p16 = self.d16(p8)
        p32 = self.d32(p16)
        return self.detect([p8, p16, p32, self.d64(p32)])


def make_tiny(kind: str = "p5", seed: int = 0) -> nn.Module:
    """A deterministic eval-mode synthetic model."""
    torch.manual_seed(seed)
    net = TinyP5() if kind == "p5" else TinyP6()
    _randomize_bn(net, seed)
    return net.eval()


@pytest.fixture
def tiny_p5() -> nn.Module:
    return make_tiny("p5")


@pytest.fixture
def tiny_p6() -> nn.Module:
    return make_tiny("p6")


@pytest.fixture(scope="session")
def bk():
    """The helpers of this file, as a namespace (test dirs have no __init__.py to import by)."""
    import types
    return types.SimpleNamespace(make_tiny=make_tiny, assert_close=assert_close,
                                 deploy_model=deploy_model, zoo_names=zoo_names,
                                 zoo_model=zoo_model, llvm_o0=llvm_o0)


def llvm_o0():
    """This machine's llvm target with LLVM's optimizer off (opt-level 0): the same TIR,
    compiled 5-6x faster (tiny P5 at 64: 2 s instead of 13 s). For tests of what a Relax
    rewrite or a TIR schedule computes, which LLVM's optimizer must not change; never for a
    library a user runs (compile_model builds those, at LLVM's default level)."""
    import tvm

    from yolov7c.backends.tvm import targets as T
    return tvm.target.Target({**T.resolve("llvm").tvm_target().export(), "opt-level": 0})


def zoo_names() -> list[str]:
    """Every zoo model name (the registry is the source of truth)."""
    from yolov7c import zoo
    return list(zoo.list())


def deploy_model(name: str) -> nn.Module:
    """Zoo model in deploy form (through the verified deploy pass pipeline), via the API."""
    from yolov7c.api.models import deploy
    return deploy(name).eval()


def assert_close(ref: list[np.ndarray], got: list[np.ndarray], label: str,
                 rel: float = 1e-4) -> None:
    """Each output: max abs error <= rel * max|ref| (the project's fp32 bound); prints it."""
    assert len(ref) == len(got), f"{label}: {len(got)} outputs, expected {len(ref)}"
    for i, (r, g) in enumerate(zip(ref, got)):
        assert r.shape == g.shape, f"{label}[{i}]: shape {g.shape} != {r.shape}"
        err = float(np.abs(r - g).max())
        bound = rel * float(np.abs(r).max())
        print(f"{label}[{i}] shape={tuple(r.shape)} max_abs_err={err:.3g} bound={bound:.3g}")
        assert err <= bound, f"{label}[{i}]: max abs error {err:.3g} > {bound:.3g}"


def zoo_model(name: str, width: float = 1.0) -> nn.Module:
    """Zoo model ``name`` in deploy form, unverified (tests/passes/test_deploy_zoo.py checks
    deploy of every zoo model; here it would cost 5-15 s a model for nothing the backend
    tests check). ``width`` < 1: the width-only scaled copy (same ops, topology and depth,
    fewer channels: far fewer embedded weights for a backend to import and export)."""
    from yolov7c.api.models import deploy, graph_of
    from yolov7c.ir.scaling import scale
    graph = graph_of(name)
    if width != 1:
        graph = scale(graph, width=width, rule="width-only")
    return deploy(graph, verify=False).eval()


def is_p6(name: str) -> bool:
    """A zoo model with a stride-64 level (yolov7-w6, -e6, -d6, -e6e)."""
    from yolov7c.api.models import graph_of
    return graph_of(name).max_stride == 64


def pytest_generate_tests(metafunc):
    """Parametrize ``zoo_name`` over every zoo model (``zoo.list()``); the P6 ones are marked
    slow (they still run in CI, so each test keeps them cheap)."""
    if "zoo_name" in metafunc.fixturenames:
        metafunc.parametrize("zoo_name", [
            pytest.param(n, marks=[pytest.mark.slow] if is_p6(n) else [])
            for n in zoo_names()])
