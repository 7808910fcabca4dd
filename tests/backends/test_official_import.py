"""Safe import of official .pt files: the shared fixture reproduces its expected outputs, and
crafted pickles that would run code are refused before anything runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


# ------------------------------------------- a checkpoint the official train.py wrote itself

TRAINER = ("fixtures", "yolov7-tiny.official-trainer.pt")


def _trainer_reference(shared) -> tuple[Path, np.ndarray, dict]:
    """The official-trainer file, its expected decoded output and the facts beside it."""
    return (shared(*TRAINER),
            np.load(shared("fixtures", "yolov7-tiny.official-trainer.expected.npz"))["out"],
            shared.json("fixtures", "yolov7-tiny.official-trainer.expected.json"))


def _fixture_input() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(1, 3, 320, 320)


def test_official_trainer_checkpoint_reads_its_numpy_data(shared) -> None:
    """best_fitness is a numpy array pickled with _codecs.encode: read as data, values kept."""
    path, _, facts = _trainer_reference(shared)
    ck = unpickle(path)
    assert {k: type(v).__name__ for k, v in ck.items()} == {
        k: ("Record" if v == "Model" else v) for k, v in facts["keys"].items()} | {
        "model": type(ck["model"]).__name__}
    fit = ck["best_fitness"]
    assert type(fit) is np.ndarray and fit.dtype == np.float64 and fit.shape == (1,)
    assert 0 < float(fit[0]) < 1


def test_official_trainer_checkpoint_matches_the_official_output(shared) -> None:
    """Through the resolver every verb shares (val, detect, train, export, compile)."""
    from yolov7c.api.models import resolve
    path, want, facts = _trainer_reference(shared)
    model = resolve(path)
    with torch.no_grad():
        out = model(_fixture_input())[0].numpy()
    assert list(out.shape) == facts["output_shape"] and model.nc == out.shape[-1] - 5
    err, tol = float(np.abs(out - want).max()), 1e-4 * float(np.abs(want).max())
    print(f"official-trainer .pt vs official output: max abs err {err:.2e} (tolerance {tol:.2e})")
    assert err <= tol


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(repo)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-m", "yolov7c", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600, env=env)


@pytest.mark.slow
def test_official_trainer_checkpoint_exports_to_matching_onnx(shared, tmp_path: Path) -> None:
    """``yolov7c export`` end to end: the deployed ONNX reproduces the official output."""
    ort = pytest.importorskip("onnxruntime")
    path, want, _ = _trainer_reference(shared)
    out = tmp_path / "trainer.onnx"
    r = _cli("export", str(path), "--img", "320", "--out", str(out), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["out"] == str(out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: _fixture_input().numpy()})[0]
    err, tol = float(np.abs(got - want).max()), 1e-4 * float(np.abs(want).max())
    print(f"official-trainer .pt → ONNX vs official output: max abs err {err:.2e}")
    assert got.shape == want.shape and err <= tol


@pytest.mark.slow
def test_official_trainer_checkpoint_imports_and_fine_tunes_from(shared, tmp_path: Path
                                                                  ) -> None:
    """``yolov7c import-official`` (the issue's command) writes our checkpoint with the same
    outputs; ``train`` builds its start model from the file with every tensor transferred."""
    from yolov7c.api.training import build_model
    path, want, _ = _trainer_reference(shared)
    out = tmp_path / "trainer.ckpt"
    r = _cli("import-official", str(path), "--out", str(out), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    with torch.no_grad():
        got = yolov7c.load(out)(_fixture_input())[0].numpy()
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
    model, report = build_model(str(path), None, 0)
    summary = report.as_dict()
    assert model.nc == 1 and summary["transferred"] == len(model.state_dict()), summary


@pytest.mark.slow
def test_official_trainer_checkpoint_validates(shared, tmp_path: Path) -> None:
    """``yolov7c val`` end to end on the file (a 1-class model on a 1-class synthetic set)."""
    from yolov7c.data import make_synthetic
    path, _, _ = _trainer_reference(shared)
    data = make_synthetic(tmp_path / "ds", train=0, val=2, img=320, nc=1, seed=0)
    r = _cli("val", str(path), "--data", str(data), "--img", "320", "--no-plots", "--json",
             "--project", str(tmp_path / "runs"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert 0 <= res["map50"] <= 1 and res["images"] == 2, res


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
