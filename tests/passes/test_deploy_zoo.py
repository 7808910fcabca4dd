"""The deploy pipeline on every zoo model: each pass numerically equivalent (checked by the
manager after every pass, asserted again here), and the structure each pass leaves equal to
its IR counterpart's (parameter count), ending at the official fused deploy figures."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import yolov7c
from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.lower import lower
from yolov7c.ir.deploy import apply_step
from yolov7c.backends.torch.init_weights import randomize_weights as randomize
from yolov7c.passes import PIPELINES, example_input, run_passes

# small convs on the shared CI cores: two spinning OpenMP threads make them ~10x slower
pytestmark = pytest.mark.one_thread

BIG = {"yolov7-d6", "yolov7-e6e"}


def deploy_checked(graph: yolov7c.Graph) -> None:
    """Randomize, run the deploy pipeline, assert per-pass error and per-pass structure.

    The image is 2 × the largest stride: the deepest map is 2 × 2, so every tap of each
    3 × 3 conv (a fused RepConv's included) is read — a larger image checks no more weights."""
    img = 2 * graph.max_stride
    model = lower(graph)
    randomize(model, example_input(model, img, batch=2, seed=1))  # stats from other images
    result = run_passes(model, "deploy", img=img)
    ir = graph
    for rec in result.records:
        print(f"{graph.name} {rec.name:<14} modified={rec.modified!s:<5} params={rec.params_after:>11,} "
              f"max_abs={rec.max_abs_err:.3g} max_rel={rec.max_rel_err:.3g}")
        assert rec.max_rel_err <= 1e-4
        after = apply_step(rec.name, ir)
        assert rec.modified == (after is not ir and after.nodes != ir.nodes), rec.name
        ir = after
        assert rec.params_after == yolov7c.analyze(ir, 640).params, rec.name
    assert result.pipeline == list(PIPELINES["deploy"])
    assert result.params == yolov7c.analyze(yolov7c.to_deploy(graph), 640).params
    kinds = {type(m) for m in result.module.modules()}
    assert not kinds & {nn.BatchNorm2d, M.RepConv, M.ImplicitA, M.ImplicitM, M.IDetect,
                        M.IAuxDetect}
    assert [type(m) for m in result.module.modules() if isinstance(m, M.Detect)] == [M.Detect]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in yolov7c.zoo.list()])
def test_deploy_pipeline_every_zoo_model(name: str) -> None:
    deploy_checked(yolov7c.graph(name))


@pytest.mark.parametrize("name,nc,na", [("yolov7-tiny", 1, 3), ("yolov7-tiny", 3, 3),
                                        ("yolov7-tiny", 80, 4), ("yolov7-w6", 3, 4)])
def test_custom_nc_and_anchor_count(name: str, nc: int, na: int) -> None:
    levels = len(yolov7c.graph(name).anchors)
    anchors = [[float(8 * (lvl + 1) * (a + 1)) for a in range(2 * na)] for lvl in range(levels)]
    graph = yolov7c.graph(name, nc=nc, anchors=anchors)
    assert graph.head.attrs["nc"] == nc
    deploy_checked(graph)


def test_deployed_module_exports() -> None:
    model = yolov7c.build("yolov7-tiny")
    x = example_input(model, 64)  # 2 × the largest stride, as deploy_checked
    deployed = yolov7c.deploy(randomize(model, x)).eval()
    exported = torch.export.export(deployed, (x,))
    with torch.no_grad():
        want, got = deployed(x), exported.module()(x)
    torch.testing.assert_close(got[0], want[0])
