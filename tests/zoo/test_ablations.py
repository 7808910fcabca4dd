"""The paper's re-parameterization ablation models (Figs. 4, 6, 7): the planner reproduces
the hand-written planned variants, every variant deploys to exactly its plain base's
parameters and FLOPs, and the deploy pipeline verifies on each."""
from __future__ import annotations

import contextlib
import io
import json
import warnings

import pytest
from torch import nn

import yolov7c
from yolov7c import zoo
from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.init_weights import randomize_weights
from yolov7c.backends.torch.lower import lower
from yolov7c.cli import main
from yolov7c.ir.gradient_path import PlannedReparamWarning
from yolov7c.ir.plan_reparam import choice_of, plan_reparam
from yolov7c.passes import example_input, run_passes
from yolov7c.zoo.ablations import BASES

# small convs on the shared CI cores: two spinning OpenMP threads make them ~10x slower
pytestmark = pytest.mark.one_thread

NAMES = zoo.ablation_names()


def _choices(g: yolov7c.Graph) -> dict[str, str]:
    return {n.name: choice_of(g, n.index) for n in g.nodes if n.op in ("Conv", "RepConv")}


def test_registered_apart_from_the_zoo() -> None:
    assert len(NAMES) == 17 and not set(NAMES) & set(zoo.names())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["list", "--ablations", "--json"]) == 0
    assert [r["model"] for r in json.loads(out.getvalue())["models"]] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_builds_without_lint_warnings(name: str) -> None:
    """The harmful placements are written with identity=True (deliberate): no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlannedReparamWarning)
        g = zoo.get(name, nc=3)
    assert g.nc == 3


@pytest.mark.parametrize("base,policy,variant", [
    ("fig4-plainnet", "planned", "fig4-repplainnet"),
    ("fig4-plainnet", "repconv-everywhere", "fig4-repplainnet"),
    ("fig4-resnet", "planned", "fig4-p1-represnet"),
    ("fig6-elan3", "planned", "fig6-elan3-planned"),
    ("fig7-csp", "planned", "fig7-repcsp"),
    ("fig7-rcsp", "planned", "fig7-reprcsp"),
    ("fig6-elan3-planned", "none", "fig6-elan3"),
])
def test_planner_reproduces_the_hand_written_variant(base: str, policy: str,
                                                     variant: str) -> None:
    assert plan_reparam(zoo.get(base), policy).nodes == zoo.get(variant).nodes


def test_fig6_planner_favours_c_and_everywhere_is_a() -> None:
    """Planned: RepConv (identity) exactly where variant (c) has it — the second conv of each
    stack — and RepConvN on the first (its input is tapped). repconv-everywhere = (a)."""
    planned = _choices(plan_reparam(zoo.get("fig6-elan3"), "planned"))
    c = _choices(zoo.get("fig6-elan3-c"))
    assert {k for k, v in planned.items() if v == "RepConv"} == \
        {k for k, v in c.items() if v == "RepConv"}
    assert {k.rsplit(".", 1)[1] for k, v in planned.items() if v == "RepConvN"} == \
        {"m0", "m2", "m4"}
    assert _choices(plan_reparam(zoo.get("fig6-elan3"), "repconv-everywhere")) == \
        _choices(zoo.get("fig6-elan3-a"))


def test_fig4_represnet_is_repconv_everywhere_on_resnet() -> None:
    assert _choices(plan_reparam(zoo.get("fig4-resnet"), "repconv-everywhere")) == \
        _choices(zoo.get("fig4-represnet"))


@pytest.mark.parametrize("name", NAMES)
def test_deploy_form_has_exactly_the_base_params_and_flops(name: str) -> None:
    base = yolov7c.analyze(yolov7c.to_deploy(zoo.get(BASES[name])), 320)
    dep = yolov7c.analyze(yolov7c.to_deploy(zoo.get(name)), 320)
    assert dep.params == base.params
    assert all(dep.gflops(c) == base.gflops(c) for c in ("official", "paper", "macs2"))


def test_reversed_dark_block_has_the_dark_blocks_params_and_flops() -> None:
    """Training form too: 1×1 then 3×3 and 3×3 then 1×1 (h → h) cost the same. Hand count
    of one dark block at h = 16: 16·16 + 2·16 + 16·16·9 + 2·16 = 256 + 32 + 2,304 + 32 = 2,624
    params either way."""
    csp, rcsp = zoo.get("fig7-csp"), zoo.get("fig7-rcsp")
    a, b = yolov7c.analyze(csp, 320), yolov7c.analyze(rcsp, 320)
    assert a.params == b.params and a.gflops("official") == b.gflops("official")
    dark = [r for r in a.nodes if r.name.startswith("p2.csp.dark.cv")]
    assert sum(r.params for r in dark) == 2624


QUICK = ("fig4-p1-represnet", "fig6-elan3-planned", "fig7-reprcsp")


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in NAMES if BASES[n] != n])
def test_variant_deploys_verified(name: str) -> None:
    """The existing deploy pipeline on each re-parameterized variant, BN statistics
    randomized: ≤ 1e-4 relative error after every pass, no RepConv or BN left, deployed
    params = the plain base's deploy params."""
    model = lower(zoo.get(name, nc=3))
    randomize_weights(model, example_input(model, 64, batch=2, seed=1))
    result = run_passes(model, "deploy", img=64)
    worst = max(r.max_rel_err for r in result.records)
    print(f"{name}: max rel err {worst:.2e}")
    assert worst <= 1e-4
    assert not any(isinstance(m, (M.RepConv, nn.BatchNorm2d)) for m in result.module.modules())
    assert result.params == yolov7c.analyze(yolov7c.to_deploy(zoo.get(BASES[name], nc=3)),
                                            64).params
