"""Safe import of official .pt files: the shared fixture reproduces its expected outputs, and
crafted pickles that would run code are refused before anything runs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import yolov7c
from yolov7c.backends.torch.official import import_official
from yolov7c.backends.torch.safe_pickle import unpickle

FIXTURE = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def fixture(name: str) -> Path:
    p = FIXTURE / name
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only beside the developers' checkout)")
    return p


def test_official_tiny_fixture_reproduces_expected_outputs() -> None:
    model = import_official(fixture("yolov7-tiny-official.pt"))
    want = json.loads(fixture("yolov7-tiny-official.expected.json").read_text())
    assert model.nc == want.get("nc", 80) and type(model.detect).__name__ == "IDetect"
    torch.manual_seed(0)
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        decoded, raw = model(x)
    assert list(decoded.shape) == want["output0_shape"]
    assert float(decoded.double().sum()) == pytest.approx(want["output0_sum_float64"], rel=1e-3)
    torch.testing.assert_close(decoded.flatten()[:10], torch.tensor(want["output0_first10_flat"]),
                               rtol=1e-3, atol=1e-3)
    for r, shape, total, first in zip(raw, want["raw_heads_shapes"],
                                      want["raw_heads_sum_float64"], want["raw_heads_first5_flat"]):
        assert list(r.shape) == shape
        assert float(r.double().sum()) == pytest.approx(total, rel=1e-3)
        torch.testing.assert_close(r.flatten()[:5], torch.tensor(first), rtol=1e-3, atol=1e-3)


def test_official_fixture_deploys_and_saves(tmp_path: Path) -> None:
    model = import_official(fixture("yolov7-tiny-official.pt"))
    deployed = yolov7c.deploy(model, img=128)
    assert sum(p.numel() for p in deployed.parameters()) == yolov7c.analyze(
        yolov7c.to_deploy(model.graph), 640).params
    yolov7c.save(model, tmp_path / "tiny.ckpt")
    again = yolov7c.load(tmp_path / "tiny.ckpt")
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], model(x)[0])


class _RunsCode:
    """Pickles as a call to ``fn(arg)``: what a malicious checkpoint does."""

    def __init__(self, fn, arg) -> None:
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("fn,what", [(os.system, "system"), (eval, "eval"), (exec, "exec")])
def test_crafted_pickle_is_refused_and_nothing_runs(tmp_path: Path, fn, what: str) -> None:
    sentinel = tmp_path / "pwned"
    code = f"touch {sentinel}" if fn is os.system else f"open({str(sentinel)!r}, 'w').close()"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _RunsCode(fn, code), "w": torch.zeros(2)}, evil)
    with pytest.raises(yolov7c.UserError, match=f"refused: the pickle references '.*{what}'"):
        import_official(evil)
    with pytest.raises(yolov7c.UserError, match=f"refused: the pickle references '.*{what}'"):
        yolov7c.load(evil)  # our own loader: weights_only=True refuses it and names it
    assert not sentinel.exists()


def test_records_are_inert_and_tensors_rebuilt(tmp_path: Path) -> None:
    """A module class from the official tree becomes a Record holding its state."""
    p = tmp_path / "plain.pt"
    torch.save({"t": torch.arange(6, dtype=torch.float16).view(2, 3).t()}, p)
    got = unpickle(p)["t"]
    assert got.dtype == torch.float16 and got.shape == (3, 2)
    assert got.tolist() == [[0, 3], [1, 4], [2, 5]]


def test_not_a_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "x.pt"
    p.write_text("hello")
    with pytest.raises(yolov7c.UserError, match="not a torch zip checkpoint"):
        import_official(p)
