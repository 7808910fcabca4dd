"""Training vs deploy: per-step savings add up exactly, land on the official deploy
figures, and match savings derived by hand."""
from __future__ import annotations

import pytest

import yolov7c
from yolov7c.ir.analysis import CONVENTIONS
from yolov7c.report import compare_report
from yolov7c.report.compare import compare
from yolov7c.report.reference_figures import OFFICIAL


@pytest.mark.parametrize("name", yolov7c.zoo.list())
def test_step_savings_add_up_to_official_deploy(name: str) -> None:
    img = yolov7c.zoo.entry(name).img
    c = compare(yolov7c.graph(name), img)
    fig = OFFICIAL[f"deploy/{name}"]
    assert c.deploy.params == fig["fused_params"]
    assert c.deploy.flops["official"] == round(fig["fused_gflops"][img] * 1e9)
    saved = sum(s["params_saved"] for s in c.steps.values())
    assert saved == c.training.params - c.deploy.params
    assert sum(x.params_saved for x in c.changes) == saved
    for conv in CONVENTIONS:
        assert sum(s["flops_saved"][conv] for s in c.steps.values()) == (
            c.training.flops[conv] - c.deploy.flops[conv])
        assert sum(x.flops_saved[conv] for x in c.changes) == (
            c.training.flops[conv] - c.deploy.flops[conv])
    assert c.unchanged + len(c.changes) == c.training.nodes


def test_yolov7_savings_by_hand() -> None:
    c = compare(yolov7c.graph("yolov7"), 640)
    # RepConv c1→c2 (3×3+BN, 1×1+BN, no identity since c1≠c2) → 3×3 conv with bias:
    # saves the 1×1 weights c1·c2 and 3·c2 (two BNs' γ,β minus one bias)
    rep = sum(c1 * c2 + 3 * c2 for c1, c2 in ((128, 256), (256, 512), (512, 1024)))
    assert c.steps["RepConv fusion"]["params_saved"] == rep == 693_504
    # implicit folding: ImplicitA on the head inputs (256+512+1024) + ImplicitM (3 × 255)
    assert c.steps["implicit folding"]["params_saved"] == 256 + 512 + 1024 + 3 * 255
    assert c.steps["aux pruning"]["params_saved"] == 0  # yolov7 has no aux head
    reps = [x for x in c.changes if x.op_training == "RepConv"]
    assert [(x.op_deploy, x.steps) for x in reps] == [("Conv", ("RepConv fusion",))] * 3


def test_d6_aux_pruning_removes_the_aux_convs() -> None:
    c = compare(yolov7c.graph("yolov7-d6"), 1280)
    removed = [x.name for x in c.changes if x.op_deploy is None]
    assert len(removed) == 4 and all(".aux." in n for n in removed)
    # README: training d6 154,709,364 vs unfused deploy 133,810,044 → aux + implicit part
    aux_and_implicit = 154_709_364 - 133_810_044
    assert (c.steps["aux pruning"]["params_saved"] + c.steps["implicit folding"]["params_saved"]
            == aux_and_implicit)
    text = compare_report(yolov7c.graph("yolov7-d6"), fmt="text")
    assert "(removed)" in text and "aux pruning" in text
