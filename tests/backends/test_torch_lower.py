"""IR → PyTorch: exact parameter counts, output shapes at every stride, trainability, and
official state_dict layout."""
from __future__ import annotations

import pytest
import torch

import yolov7c
from yolov7c.ir.analysis import analyze
from yolov7c.ir.deploy import to_deploy

IMG = 128  # smallest multiple of every model's max stride (64) with ≥2 cells at P6


@pytest.fixture(scope="module", params=yolov7c.zoo.list())
def model(request):
    torch.manual_seed(0)
    return yolov7c.build(request.param, nc=3)


def test_param_count_equals_analysis(model) -> None:
    assert sum(p.numel() for p in model.parameters()) == analyze(model.graph, IMG).params


def test_eval_outputs_official_format(model) -> None:
    g = model.graph
    na, no = len(g.anchors[0]) // 2, g.nc + 5
    model.eval()
    with torch.no_grad():
        decoded, raw = model(torch.rand(2, 3, IMG, IMG))
    assert len(raw) == len(g.strides)
    for r, s in zip(raw, g.strides):
        assert tuple(r.shape) == (2, na, IMG // s, IMG // s, no)
    assert tuple(decoded.shape) == (2, sum(na * (IMG // s) ** 2 for s in g.strides), no)
    # decoded xy are pixel centres inside (−0.5·stride, img + 0.5·stride), scores in (0, 1)
    assert decoded[..., 4:].min() > 0 and decoded[..., 4:].max() < 1
    assert decoded[..., :2].min() > -0.5 * max(g.strides) - 1e-3
    assert decoded[..., :2].max() < IMG + 0.5 * max(g.strides) + 1e-3


def test_train_mode_backward(model) -> None:
    model.train()
    # 64 px leaves one cell at P6; batch 2 gives train-mode BN two values per channel there
    outs = model(torch.rand(2, 3, 64, 64))
    aux = 2 if model.graph.head.op == "IAuxDetect" else 1
    assert len(outs) == aux * len(model.graph.strides)
    loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.zero_grad(set_to_none=True)


def test_deploy_form_lowers_with_exact_params() -> None:
    g = to_deploy(yolov7c.graph("yolov7"))
    m = yolov7c.build(g)
    assert sum(p.numel() for p in m.parameters()) == 36_905_341  # official fused deploy


@pytest.mark.parametrize("form", ["training", "deploy"])
@pytest.mark.parametrize("name", yolov7c.zoo.list())
def test_state_dict_matches_official_keys_and_shapes(shared, name: str, form: str) -> None:
    """Every zoo model whose official state_dict layout is recorded in ../shared (the
    unfused deploy cfg for ``deploy``); the others skip, naming the missing file."""
    file = f"state_dict_{name}_{form}.json"
    official = {k: list(s) for k, s in shared.json("reference", "official_state_dicts", file)}
    graph = yolov7c.graph(name)
    if form == "deploy":
        graph = to_deploy(graph, fuse=False)
    ours = {k: list(v.shape) for k, v in yolov7c.build(graph).state_dict().items()}
    assert ours == official


def test_symbolic_graph_is_refused() -> None:
    import sympy
    from yolov7c.errors import UserError
    from yolov7c.ir.blocks import elan
    from yolov7c.ir.dsl import Builder
    b = Builder("sym")
    y = elan(b.conv(b.input, 16, 3, 2), c=sympy.Symbol("w") * 8, convs=2, out=32)
    b.detect([y], nc=1, anchors=((10, 13, 16, 30, 33, 23),), kind="Detect")
    with pytest.raises(UserError, match="symbolic widths"):
        yolov7c.build(b.build())
