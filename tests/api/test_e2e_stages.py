"""The main job is a list of stages the lead extends: order, summary, a failing check."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from yolov7c import e2e
from yolov7c.errors import UserError

SMALL = ("from yolov7c.ir.dsl import Builder\n"
         "b = Builder('small')\n"
         "x = b.conv(b.conv(b.input, 8, 3, 2), 16, 3, 2)\n"
         "b.detect([b.conv(x, 16, 3, 2)], nc=2, anchors=[[10, 13, 16, 30]])\n"
         "graph = b.build()\n")


def test_stages_run_in_order_and_extend(tmp_path: Path) -> None:
    src = tmp_path / "small.py"
    src.write_text(SMALL)
    seen: list[str] = []

    def extra(ctx: e2e.Context) -> dict:
        seen.append("extra")
        assert ctx.deployed is not None and ctx.ref is not None  # earlier stages' results
        return {"boxes": int(ctx.ref.shape[1])}

    by_name = {s.name: s for s in e2e.STAGES}
    stages = [by_name["model"], by_name["report"], by_name["deploy"], by_name["onnx"],
              e2e.Stage("extra", "a stage appended by a later issue", extra)]
    summary = e2e.run_e2e(src, img=64, out_dir=tmp_path / "run", stages=stages)
    assert list(summary["steps"]) == ["model", "report", "deploy", "onnx", "extra"]
    # 2 anchors at stride 8 on a 64² image
    assert seen == ["extra"] and summary["steps"]["extra"]["boxes"] == 2 * (64 // 8) ** 2
    assert summary["steps"]["onnx"]["max_rel_err"] <= e2e.REL_TOL
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    assert (tmp_path / "run" / "small.onnx").is_file()


def test_a_failed_check_names_its_stage(tmp_path: Path) -> None:
    def bad(ctx: e2e.Context) -> dict:
        raise e2e.CheckFailed("bad: relative error 1 > 0.0001")

    with pytest.raises(e2e.CheckFailed, match="^bad: "):
        e2e.run_e2e("yolov7-tiny", img=64, out_dir=tmp_path, stages=[e2e.Stage("bad", "b", bad)])
    assert not (tmp_path / "summary.json").exists()
    with pytest.raises(UserError, match="unknown model 'nope'"):
        e2e.run_e2e("nope", out_dir=tmp_path)
