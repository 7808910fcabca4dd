"""The `passes` and `import-official` verbs: JSON contract, custom lists, errors (exit 2)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from yolov7c.cli import main

# in-process torch on the shared CI cores: see tests/conftest.py
pytestmark = pytest.mark.one_thread

def run_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_passes_deploy_verify_json(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out = tmp_path / "d.ckpt"
    obj = run_json(capsys, "passes", "yolov7-tiny", "--pipeline", "deploy", "--verify",
                   "--nc", "3", "--out", str(out))
    assert set(obj) >= {"model", "pipeline", "img", "params_before", "params", "passes",
                        "max_rel_err"}
    from yolov7c.passes import PIPELINES
    assert obj["pipeline"] == list(PIPELINES["deploy"])
    assert [p["name"] for p in obj["passes"]] == obj["pipeline"]
    assert all(set(p) >= {"name", "modified", "params_before", "params_after", "max_abs_err",
                          "max_rel_err"} for p in obj["passes"])
    assert 0 < obj["max_rel_err"] <= 1e-4 and obj["params"] < obj["params_before"]
    again = run_json(capsys, "passes", str(out), "--pipeline", "dce", "--verify")
    assert again["params"] == obj["params"] and not again["passes"][0]["modified"]


def test_passes_custom_list_print_after(capsys: pytest.CaptureFixture) -> None:
    assert main(["passes", "yolov7-tiny", "--pipeline", "fold-implicit,fold-bn",
                 "--print-after", "--no-verify", "--json"]) == 0
    captured = capsys.readouterr()
    obj = json.loads(captured.out)  # the printed modules go to stderr with --json
    assert obj["pipeline"] == ["fold-implicit", "fold-bn"] and obj["max_rel_err"] is None
    assert "# ---- after fold-bn ----" in captured.err and "def forward" in captured.err


def test_passes_bad_input_exits_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["passes", "yolov7-tiny", "--pipeline", "fold-bnn"]) == 2
    assert "unknown pass 'fold-bnn'" in capsys.readouterr().err
    assert main(["passes", "no-such-model"]) == 2


def test_passes_and_export_see_the_same_weights(capsys: pytest.CaptureFixture,
                                                tmp_path: Path) -> None:
    """`passes X --out` and the API's resolve(X) (what export, compile, bench use) give the
    same network: one weights rule (passes used to randomize, export did not)."""
    import torch

    import yolov7c
    out = tmp_path / "p.ckpt"
    run_json(capsys, "passes", "yolov7-tiny", "--pipeline", "fold-implicit", "--out", str(out))
    from_passes = yolov7c.load(out)
    ref = yolov7c.resolve("yolov7-tiny")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = from_passes(x)[0], ref(x)[0]
    assert float((a - b).abs().max() / b.abs().max()) <= 1e-5


def test_import_official_json(capsys: pytest.CaptureFixture, tmp_path: Path, shared) -> None:
    src = shared("fixtures", "yolov7-tiny-official.pt")
    obj = run_json(capsys, "import-official", str(src), "--out", str(tmp_path / "t.ckpt"))
    assert obj["nc"] == 80 and obj["anchors"] == 3 and obj["head"] == "IDetect"
    assert obj["params"] == 6228762 and (tmp_path / "t.ckpt").is_file()
