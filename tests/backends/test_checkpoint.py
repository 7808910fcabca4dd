"""Our checkpoints: architecture + weights, weights_only-loadable, atomic, round-trip exact
for training models and deploy modules; the IR spec round-trips for every zoo model.
(Hostile and malformed files: tests/hardening/test_checkpoint_hostile.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import yolov7c
from yolov7c.backends.torch import checkpoint as ck
from yolov7c.backends.torch.init_weights import randomize_weights
from yolov7c.ir.serialize import graph_from_dict, graph_to_dict
from yolov7c.passes import example_input


@pytest.mark.parametrize("name", yolov7c.zoo.list())
def test_graph_spec_round_trip(name: str) -> None:
    g = yolov7c.graph(name, nc=3)
    back = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert back.nodes == g.nodes and back.blocks == g.blocks and back.name == g.name


def test_save_load_training_and_deploy(tmp_path: Path) -> None:
    model = yolov7c.build("yolov7-tiny", nc=5)
    x = example_input(model, 128)
    randomize_weights(model, x)
    deployed = yolov7c.deploy(model)
    yolov7c.save(model, tmp_path / "run.ckpt")
    yolov7c.save(deployed, tmp_path / "deploy.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.ckpt", "run.ckpt"]  # no temps
    raw = torch.load(tmp_path / "deploy.ckpt", weights_only=True)
    assert raw["pipeline"] == list(yolov7c.passes.PIPELINES["deploy"])
    a, b = yolov7c.load(tmp_path / "run.ckpt"), yolov7c.load(tmp_path / "deploy.ckpt")
    assert a.graph.nodes == model.graph.nodes and not a.training
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], model.eval()(x)[0], rtol=0, atol=0)
        torch.testing.assert_close(b(x)[0], deployed(x)[0], rtol=0, atol=0)
    assert sum(p.numel() for p in b.parameters()) == sum(p.numel() for p in deployed.parameters())
    r = ck.read(tmp_path / "deploy.ckpt")   # what the API's load composes from
    assert r["pipeline"] == list(yolov7c.passes.PIPELINES["deploy"]) and r["extra"] == {}
    assert r["graph"].nodes == model.graph.nodes


def test_save_refuses_foreign_modules(tmp_path: Path) -> None:
    with pytest.raises(yolov7c.UserError, match="only models built by yolov7c"):
        yolov7c.save(torch.nn.Conv2d(1, 1, 1), tmp_path / "x.ckpt")
    assert not list(tmp_path.iterdir())


def test_load_rejects_other_files(tmp_path: Path) -> None:
    p = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(1)}, p)
    with pytest.raises(yolov7c.UserError, match="not a yolov7c checkpoint"):
        yolov7c.load(p)
    with pytest.raises(yolov7c.UserError, match="no such checkpoint"):
        yolov7c.load(tmp_path / "missing.ckpt")
