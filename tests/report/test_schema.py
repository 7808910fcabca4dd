"""The ``report --json`` object (issue 2 schema) through the real entry point, and
``report_dict`` directly: keys, types, one JSON object on stdout, deploy form numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import yolov7c
from yolov7c.report import report_dict

REPO = Path(__file__).resolve().parents[2]
SCHEMA = {"model": str, "form": str, "img": int, "nc": int, "params": int, "gflops": float,
          "gflops_macs2": float, "gflops_paper": float, "layers": int, "nodes": list}
NODE_KEYS = {"index", "name", "op", "inputs", "c_in", "c_out", "stride", "params", "macs"}


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "yolov7c", "report", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300, env=env)


def test_cli_json_is_one_object_with_the_schema() -> None:
    r = cli("yolov7-e6e", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)  # the whole stdout is exactly one JSON document
    for k, t in SCHEMA.items():
        assert isinstance(d[k], t), k
    # paper README: training/yolov7-e6e @ 1280 (default P6 size)
    assert (d["model"], d["form"], d["img"], d["nc"]) == ("yolov7-e6e", "training", 1280, 80)
    assert d["params"] == 166_408_884
    assert round(d["gflops"], 4) == 920.1322
    assert round(d["gflops_macs2"], 4) == 915.8509
    assert round(d["gflops_paper"], 4) == 918.0193
    assert d["layers"] == len(d["nodes"]) == 266
    for n in d["nodes"]:
        assert NODE_KEYS <= set(n)
    assert [n["index"] for n in d["nodes"]] == list(range(266))
    assert sum(n["params"] for n in d["nodes"]) == d["params"]


def main_report(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``yolov7c report ...`` in this process (no interpreter start): the CLI's ``main``,
    what it printed. The real-process contract is checked by the subprocess tests here."""
    from yolov7c.cli import main
    rc = main(["report", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_deploy_equals_the_official_fused_deploy_column(capsys) -> None:
    rc, out, err = main_report(capsys, "yolov7", "--deploy", "--json")
    assert rc == 0, err
    d = json.loads(out)
    # README: deploy/yolov7 fused: 36,905,341 params, 104.5135 / 104.6847 / 104.5111 GFLOPs
    assert (d["form"], d["params"]) == ("deploy", 36_905_341)
    assert [round(d[k], 4) for k in ("gflops", "gflops_paper", "gflops_macs2")] == [
        104.5135, 104.6847, 104.5111]


def test_nc_and_img_change_the_numbers() -> None:
    d = report_dict(yolov7c.graph("yolov7-tiny", nc=1), 320)
    assert (d["nc"], d["img"]) == (1, 320)
    # the three head convs shrink from 255 to 18 outputs: (128+256+512)·(255−18) weights and
    # 237 biases each, plus the implicit-M vectors (3 × 237) — computed by hand
    full = report_dict(yolov7c.graph("yolov7-tiny"), 320)
    assert full["params"] - d["params"] == (128 + 256 + 512) * 237 + 3 * 237 + 3 * 237
    assert round(full["gflops"], 4) == 3.4651  # official training/yolov7-tiny @ 320


def test_node_entries_carry_every_convention_and_the_groups() -> None:
    d = report_dict(yolov7c.graph("yolov7"), 640)
    n = d["nodes"][0]  # stem conv 3→32, 3×3, stride 1 at 640: 640²·32·27 MACs
    assert n["macs"] == 640 * 640 * 32 * 27 and n["params"] == 32 * 27 + 64
    assert set(n["flops"]) == {"macs2", "official", "paper"}
    assert set(d["groups"]) == {"stage", "block", "op", "role"}
    assert set(d["conventions"]) == {"macs2", "official", "paper"}


BAD = [
    (("nope",), "unknown model 'nope'"),
    (("yolov7-e6e", "--img", "650"), "stride 64"),
    (("yolov7", "--img", "100"), "stride 32"),
    (("yolov7", "--format", "md", "--out", "/proc/version/x.md"), "--out"),
    (("yolov7", "--by", "colour"), "--by 'colour'"),
    (("yolov7", "--nc", "0"), "--nc 0"),
]


def test_bad_input_is_one_line_exit_2_from_the_entry_point() -> None:
    """A real process: the exit status and stderr of ``python -m yolov7c`` itself."""
    args, culprit = BAD[0]
    r = cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], r.stderr


@pytest.mark.parametrize("args, culprit", BAD)
def test_bad_input_is_one_line_exit_2(capsys, args: tuple[str, ...], culprit: str) -> None:
    rc, out, err = main_report(capsys, *args)
    assert rc == 2
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], err
