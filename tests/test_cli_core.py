"""The foundation verbs through the real entry point: JSON contract, exit codes, no
tracebacks for user errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import yolov7c
from yolov7c.ir.yaml_io import from_yaml

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-m", "yolov7c", *args], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=600, env=env)


def test_list_json_matches_the_zoo() -> None:
    r = cli("list", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["model"] for row in rows] == yolov7c.zoo.list()
    v7 = next(row for row in rows if row["model"] == "yolov7")
    assert v7 == {"model": "yolov7", "params": 37_622_682, "gflops": 106.4722, "img": 640}


def test_convert_yaml_zoo_to_cfg_and_back(tmp_path: Path) -> None:
    out = tmp_path / "e6e.yaml"
    r = cli("convert-yaml", "yolov7-e6e", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert from_yaml(out).nodes == yolov7c.graph("yolov7-e6e").nodes
    r = cli("convert-yaml", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["params"] == 166_408_884 and report["layers"] == 266


@pytest.mark.parametrize("args,match", [
    (["convert-yaml", "nope.yaml"], r"nope.yaml: cannot read cfg"),
    (["convert-yaml", "yolov9"], r"unknown model 'yolov9'"),
    (["convert-yaml", "yolov7", "--out", "/proc/version/x.yaml"], r"cannot write there"),
    (["e2e", "yolov9"], r"unknown model 'yolov9'"),
])
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], match: str) -> None:
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(match, lines[0]), r.stderr


def test_bad_yaml_row_is_a_one_line_cli_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nc: 1\nanchors: [[1,2]]\nbackbone: [[-1, 1, Conv, [8, 3, 2]], [-3, 1, Conv, [8]]]\n"
                   "head: [[[1], 1, Detect, [nc, anchors]]]\n")
    r = cli("convert-yaml", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.yaml: backbone row 1 (layer 1): 'from' -3 points to layer -2" in r.stderr


def test_readme_python_examples_run() -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


@pytest.mark.slow
def test_e2e_main_job(tmp_path: Path) -> None:
    """The README's main job: every backend within its bound of PyTorch."""
    pytest.importorskip("onnxruntime")
    r = cli("e2e", "--img", "256", "--out", str(tmp_path), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    steps = summary["steps"]
    assert steps["deploy"]["params"] == 6_219_709  # official fused deploy yolov7-tiny
    assert steps["onnx"]["max_rel_err"] <= 1e-4
    assert "skipped" in steps["tvm"] or steps["tvm"]["max_rel_err"] <= 1e-4
    assert (tmp_path / "summary.json").exists() and (tmp_path / "yolov7-tiny.onnx").exists()
