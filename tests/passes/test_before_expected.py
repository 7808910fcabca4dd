"""Structural before/expected tests of each pass on tiny hand-built graphs (the style of TVM
Relax's transform tests): trace ``Before``, run the pass, and compare the graph with the trace
of a hand-written ``Expected`` module — op by op, module kind by module kind, edge by edge —
then check the values numerically too. Also the manager's contract: DCE and lint after each
pass, logging instead of printing."""
from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch import fx, nn

from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.init_weights import randomize_weights
from yolov7c.passes import Pass, PassError, PassResult, run_passes
from yolov7c.passes import _fx
from yolov7c.passes.dce import dce
from yolov7c.passes.fold_batchnorm import fold_bn
from yolov7c.passes.fold_implicit import fold_implicit
from yolov7c.passes.fuse_repconv import fuse_repconv
from yolov7c.passes.prune_aux_head import prune_aux

ANCHORS = ((10, 13, 16, 30),)  # one level, two anchors


def _kind(m: nn.Module) -> Any:
    """What a module is, structurally (type and geometry, not weights)."""
    if isinstance(m, nn.Conv2d):
        return ("Conv2d", m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                m.groups, m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return ("BatchNorm2d", m.num_features)
    if isinstance(m, M.Detect):
        return (type(m).__name__, m.nc, m.na, m.nl, [c.in_channels for c in m.m],
                len(getattr(m, "m2", [])))
    return type(m).__name__


def structure(gm: fx.GraphModule) -> list[tuple[Any, ...]]:
    """The graph as (op, kind, operands) rows, operands as row numbers: names and weights
    do not matter, only what is computed from what."""
    rows: list[tuple[Any, ...]] = []
    pos: dict[fx.Node, int] = {}

    def arg(a: Any) -> Any:
        if isinstance(a, fx.Node):
            return ("%", pos[a])
        if isinstance(a, (list, tuple)):
            return tuple(arg(x) for x in a)
        return a
    for n in gm.graph.nodes:
        kind = (_kind(gm.get_submodule(str(n.target))) if n.op == "call_module"
                else getattr(n.target, "__name__", str(n.target)))
        pos[n] = len(rows)
        rows.append((n.op, kind, arg(n.args)))
    return rows


def check(pass_fn: Any, before: nn.Module, expected: nn.Module, x: torch.Tensor,
          modified: bool = True) -> fx.GraphModule:
    """Run ``pass_fn`` on the trace of ``before``; its structure must equal ``expected``'s
    and its values ``before``'s."""
    before = before.eval()
    want = before(x)
    out = pass_fn(_fx.trace(before))
    assert out.modified == modified
    assert structure(out.graph_module) == structure(_fx.trace(expected.eval()))
    got = out.graph_module(x)
    for w, g in zip(_tensors(want), _tensors(got)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    return out.graph_module


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _tensors(o)]


def _random(net: nn.Module, shape: tuple[int, ...] = (2, 4, 8, 8)) -> nn.Module:
    torch.manual_seed(0)
    return randomize_weights(net, torch.rand(shape)).eval()


X = torch.rand(1, 4, 8, 8)


# ----- fold-bn --------------------------------------------------------------------------------
class ConvBN(nn.Module):
    def __init__(self, fused: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, 1, 1, bias=fused)
        self.bn = nn.Identity() if fused else nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))) if isinstance(self.bn, nn.BatchNorm2d) \
            else torch.relu(self.conv(x))


def test_fold_bn_before_expected() -> None:
    check(fold_bn, _random(ConvBN()), ConvBN(fused=True), X)


class SharedConv(nn.Module):
    """The conv's output is read by the BN and by the sum: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_bn_leaves_a_shared_conv() -> None:
    check(fold_bn, _random(SharedConv()), SharedConv(), X, modified=False)


# ----- fuse-repconv ---------------------------------------------------------------------------
class Fused3x3(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(4, 4, 3, 1, 1, bias=True), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def test_fuse_repconv_before_expected() -> None:
    """act(BN(conv3×3 x) + BN(conv1×1 x) + BN(x)) → act(conv3×3 x + b)."""
    check(fuse_repconv, _random(M.RepConv(4, 4, act="silu")), Fused3x3(nn.SiLU()), X)


def test_fuse_repconv_leaves_a_residual_sum() -> None:
    """conv(x) + x is not a sum of linear branches of one input read by nothing else."""
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) + x
    check(fuse_repconv, _random(Residual()), Residual(), X, modified=False)


# ----- fold-implicit --------------------------------------------------------------------------
class Head(nn.Module):
    def __init__(self, cls: type[M.Detect], inputs: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 4, 1)
        self.aux = nn.Conv2d(4, 4, 1) if inputs == 2 else None
        self.head = cls(1, ANCHORS, [4] * inputs, [8])

    def forward(self, x: torch.Tensor) -> Any:
        y = self.stem(x)
        return self.head([y, self.aux(x)] if self.aux is not None else [y])


def test_fold_implicit_before_expected() -> None:
    """IDetect(ImplicitA → conv → ImplicitM) → Detect(conv), same anchors and strides."""
    gm = check(fold_implicit, _random(Head(M.IDetect)), Head(M.Detect), X)
    assert torch.equal(gm.head.anchor_grid, Head(M.IDetect).head.anchor_grid)


# ----- prune-aux ------------------------------------------------------------------------------
class AuxDead(Head):
    """What prune-aux alone leaves: the head on the lead input, the aux conv still computed
    but read by nothing (the manager's DCE removes it)."""

    def __init__(self) -> None:
        super().__init__(M.IDetect)
        self.aux = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> Any:
        y = self.stem(x)
        self.aux(x)
        return self.head([y])


def test_prune_aux_prunes_only_and_the_manager_removes_the_dead() -> None:
    before = _random(Head(M.IAuxDetect, inputs=2))
    check(prune_aux, before, AuxDead(), X)
    out = run_passes(before, ["prune-aux"], example=X)
    assert structure(out.module) == structure(_fx.trace(Head(M.IDetect).eval()))
    assert out.records[0].modified and any("removed aux" in c for c in out.records[0].changes)
    assert out.max_rel_err == 0.0


# ----- dce ------------------------------------------------------------------------------------
def test_dce_before_expected() -> None:
    check(dce, _random(AuxDead()), Head(M.IDetect), X)


# ----- the manager: DCE and lint after every pass, logging ------------------------------------
def _nan_pass(gm: fx.GraphModule) -> PassResult:
    with torch.no_grad():
        next(m for m in gm.modules() if isinstance(m, nn.Conv2d)).weight[0, 0, 0, 0] = float("nan")
    return PassResult(gm, True)


def test_lint_names_the_pass_that_writes_non_finite_weights_even_unverified(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="yolov7c.passes"):
        with pytest.raises(PassError, match=r"'nan-it' left a malformed graph: non-finite "
                                            r"values in conv.weight"):
            run_passes(_random(ConvBN()), ["fold-bn", Pass("nan-it", "-", _nan_pass)],
                       example=X, verify=False)
    assert [r.levelname for r in caplog.records] == ["ERROR"]


def test_run_passes_logs_one_line_per_pass_and_the_code_on_request(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="yolov7c.passes"):
        run_passes(_random(ConvBN()), "fold-bn,dce", example=X, print_after=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("fold-bn") and "max rel err" in lines[0]
    assert lines[1].startswith("module after fold-bn:") and "def forward" in lines[1]
    assert lines[2].startswith("dce") and len(lines) == 4


def test_rtol_must_be_positive_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^rtol -1: must be a positive number") as e:
        run_passes(_random(ConvBN()), "fold-bn", example=X, rtol=-1)
    assert getattr(e.value, "arg", None) == "rtol"
