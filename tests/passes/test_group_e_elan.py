"""group-e-elan: structural (before/expected, hand-written) and numerical tests.

The hand-built ``Before`` is E6E's E-ELAN in miniature: two ELAN branches on one input
(cv1, cv2 1×1; a chain of two 3×3; concat [m1, m0, cv2, cv1]; a 1×1 transition), summed.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import yolov7c
from yolov7c.api.models import resolve
from yolov7c.backends.torch.init_weights import randomize_weights as randomize
from yolov7c.backends.torch.lower import lower
from yolov7c.ir.blocks import e_elan_sum, elan
from yolov7c.ir.dsl import Builder
from yolov7c.passes import PIPELINES, _fx, example_input, run_passes
from yolov7c.passes.group_e_elan import group_e_elan

from .test_before_expected import _random, check

# small convs on the shared CI cores: two spinning OpenMP threads make them ~10x slower
pytestmark = pytest.mark.one_thread

X = torch.rand(1, 4, 8, 8)


class Branch(nn.Module):
    """One ELAN: widths cv 3, chain 2, transition 5 (SiLU after it unless ``linear``)."""

    def __init__(self, linear: bool = False, c3: int = 2) -> None:
        super().__init__()
        self.cv1, self.cv2 = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1)
        self.m0, self.m1 = nn.Conv2d(3, c3, 3, 1, 1), nn.Conv2d(c3, c3, 3, 1, 1)
        self.tr = nn.Conv2d(3 + 3 + 2 * c3, 5, 1)
        self.a1, self.a2, self.a3, self.a4 = nn.SiLU(), nn.SiLU(), nn.SiLU(), nn.SiLU()
        self.at = None if linear else nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a1(self.cv1(x)), self.a2(self.cv2(x))
        y0 = self.a3(self.m0(b))
        y1 = self.a4(self.m1(y0))
        t = self.tr(torch.cat([y1, y0, b, a], 1))
        return t if self.at is None else self.at(t)


class Before(nn.Module):
    def __init__(self, linear: bool = False, c3: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 4, 1)
        self.g1, self.g2 = Branch(linear, c3[0]), Branch(linear, c3[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.g2(x) + self.g1(x)


class Grouped(nn.Module):
    """What the pass must emit, written by hand. Pairs are [branch g2; branch g1] (the add's
    operand order); the x-readers cv2, cv1 become one 4→12 conv laid out [cv2²; cv2¹;
    cv1²; cv1¹]; m0, m1 group convs g=2 (12 and 4 params per output channel)."""

    def __init__(self, linear: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 4, 1)
        self.x0, self.x0_act = nn.Conv2d(4, 12, 1), nn.SiLU()
        self.m1, self.m1_act = nn.Conv2d(6, 4, 3, 1, 1, groups=2), nn.SiLU()
        self.m2, self.m2_act = nn.Conv2d(4, 4, 3, 1, 1, groups=2), nn.SiLU()
        self.linear = linear
        # linear: one dense conv, one bias; else one group conv g=2 over [cat¹; cat²]
        self.transition = nn.Conv2d(20, 5, 1) if linear else nn.Conv2d(20, 10, 1, groups=2)
        self.transition_act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        p = self.x0_act(self.x0(x))
        s0 = torch.split(p, [6, 6], 1)
        y0 = self.m1_act(self.m1(s0[0]))
        y1 = self.m2_act(self.m2(y0))
        if self.linear:  # [y1 pair, y0 pair, whole x-conv]: weight columns follow
            return self.transition(torch.cat([y1, y0, p], 1))
        s1 = torch.split(y1, [2, 2], 1)
        h1 = s1[0]
        s2 = torch.split(y0, [2, 2], 1)
        h2 = s2[0]
        s3 = torch.split(p, [3, 3, 3, 3], 1)
        h3, h4 = s3[0], s3[2]
        q = torch.cat([h1, h2, h3, h4, s1[1], s2[1], s3[1], s3[3]], 1)
        u = torch.split(self.transition_act(self.transition(q)), [5, 5], 1)
        return u[0] + u[1]


def _convs(gm: torch.fx.GraphModule) -> int:
    return sum(1 for n in gm.graph.nodes if _fx.calls_to(gm, n, nn.Conv2d))


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_before_expected_released_form_activation_after_transitions() -> None:
    before = _random(Before())
    gm = check(group_e_elan, before, Grouped(), X)
    # each fold stacks weights, so the count is the same: no bias can merge across SiLU
    assert _params(gm) == _params(before) == _params(Grouped())
    assert _convs(_fx.trace(before)) == 11 and _convs(gm) == 5


def test_before_expected_linear_sum_merges_the_transition_biases() -> None:
    before = _random(Before(linear=True))
    gm = check(group_e_elan, before, Grouped(linear=True), X)
    assert _params(gm) == _params(before) - 5 == _params(Grouped(linear=True))  # b = b¹ + b²


def test_non_isomorphic_branches_and_outside_readers_are_left_alone() -> None:
    check(group_e_elan, _random(Before(c3=(2, 3))), Before(c3=(2, 3)), X, modified=False)

    class Tapped(Before):  # a branch tensor read outside it (E6E's aux tap before prune-aux)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            y = self.g2(x)
            return y + self.g1(x), y
    check(group_e_elan, _random(Tapped()), Tapped(), X, modified=False)


def _model(*specs: tuple[int, int, int, int, int]) -> nn.Module:
    """A DSL model of ``e_elan_sum`` blocks (c, convs, out, c3, step), as E6E builds them."""
    b = Builder("ee", act="silu")
    y = b.conv(b.input, 16, 3, 2, name="stem")
    for k, (c, convs, out, c3, step) in enumerate(specs):
        y, _ = e_elan_sum(y, c, convs, out, c3=c3, step=step, name=f"e{k}")
    y = elan(y, 8, 2, 16, name="plain")  # a single ELAN: nothing to pair, left as it is
    b.detect([y], nc=2, anchors=[[10, 13, 16, 30, 33, 23]])
    return resolve(b.build(), seed=1)


@pytest.mark.parametrize("specs", [
    [(8, 4, 16, 8, 2)],                        # backbone form: every second conv tapped
    [(8, 4, 24, 4, 1), (8, 2, 16, 8, 2)],      # light neck form (c3 = c/2, all tapped), chained
])
def test_numerically_equal_params_kept_fewer_convs(specs) -> None:
    model = _model(*specs)
    base = run_passes(model, "deploy", img=64)
    out = run_passes(model, "deploy,group-e-elan", img=64)
    rec = out.records[-1]
    assert rec.name == "group-e-elan" and rec.modified and len(rec.changes) == len(specs)
    assert rec.max_rel_err <= 1e-4 and rec.params_after == rec.params_before == base.params
    # per block: 2·(2 + convs) + 2 convs → one x-conv, convs group convs, one transition
    fewer = sum(2 * (2 + s[1]) + 2 - (s[1] + 2) for s in specs)
    assert _convs(out.module) == _convs(base.module) - fewer
    assert (rec.convs_before, rec.convs_after) == (_convs(base.module), _convs(out.module))
    grouped = [m for m in out.module.modules() if isinstance(m, nn.Conv2d) and m.groups == 2]
    assert len(grouped) == sum(s[1] + 1 for s in specs)


def test_pipeline_name_inside_a_list_and_replay_from_a_checkpoint(tmp_path) -> None:
    from yolov7c.api.models import load_checkpoint, save
    model = _model((8, 2, 16, 8, 2))
    out = run_passes(model, "deploy,group-e-elan", img=64)
    assert out.pipeline == ["prune-aux", "fold-implicit", "fuse-repconv", "fold-bn",
                            "group-e-elan"]
    path = save(out.module, tmp_path / "g.ckpt")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(path)(x)[0], out.module(x)[0])


@pytest.mark.slow
def test_yolov7_e6e_deploy_grouped() -> None:
    """The acceptance command's numbers: ≤ 1e-4, parameters unchanged (E6E's transitions
    carry SiLU before the sum: no bias can merge), 11 blocks × (18 − 8) = 110 fewer convs.

    group-e-elan runs on the deployed module and is verified against it: the deploy step of
    E6E is verified by test_deploy_zoo's ``[yolov7-e6e]`` case, so it runs unverified here.
    128 px: E6E's stride-64 map is 2 × 2, so every tap of a 3 × 3 group conv is read."""
    model = lower(yolov7c.graph("yolov7-e6e"))
    randomize(model, example_input(model, 128, batch=2, seed=1))  # BN stats, γ, β ≠ identity
    base = run_passes(model, "deploy", verify=False)
    out = run_passes(base.module, "group-e-elan", img=128)
    rec = out.records[-1]
    assert out.pipeline == ["group-e-elan"] and rec.max_rel_err is not None
    assert out.module.meta["yolov7c"]["pipeline"] == [*PIPELINES["deploy"], "group-e-elan"]
    assert rec.max_rel_err <= 1e-4 and rec.params_after == rec.params_before == base.params
    assert len(rec.changes) == 11 and _convs(out.module) == _convs(base.module) - 110
    assert rec.convs_before == _convs(base.module) and rec.convs_after == rec.convs_before - 110
