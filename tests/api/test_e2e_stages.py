"""The main job is a list of stages the lead extends: order, summary, a failing check."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def test_a_correct_box_overlaps_a_label_of_its_class() -> None:
    labels = np.array([[0, 0.25, 0.25, 0.2, 0.2], [2, 0.7, 0.6, 0.3, 0.4]])  # 100 × 200 image
    exact = [[40, 15, 60, 35, 0.9, 0], [110, 40, 170, 80, 0.8, 2]]  # x1 y1 x2 y2 conf cls
    assert e2e.correct_per_image(exact, labels, (100, 200)) == 2
    assert e2e.correct_per_image([[40, 15, 60, 35, 0.9, 1]], labels, (100, 200)) == 0  # class
    assert e2e.correct_per_image([[60, 35, 80, 55, 0.9, 0]], labels, (100, 200)) == 0  # IoU 1/7
    assert e2e.correct_per_image([], labels, (100, 200)) == 0
    assert e2e.correct_per_image(exact, np.zeros((0, 5)), (100, 200)) == 0


def test_shipped_checkpoint_is_small_safe_package_data_at_its_size() -> None:
    import torch

    from yolov7c.api.evaluate import default_eval_img
    from yolov7c.api.models import resolve
    from yolov7c.api.training import trained_img
    from yolov7c.backends.torch.checkpoint import read
    path = e2e.default_model()
    assert path.is_file() and path.stat().st_size < 2.5e6
    assert torch.load(path, weights_only=True)["format"] == "yolov7c.checkpoint/1"
    ck = read(path)
    assert ck["graph"].name == "yolov7-tiny-n" and ck["extra"] == {}
    assert ck["meta"]["map50"] >= e2e.MIN_MAP50  # as trained (docs/training.md)
    assert trained_img(path) == ck["meta"]["img"] == 128
    assert default_eval_img(path, None) == 128 and default_eval_img(path, 96) == 96
    assert default_eval_img("yolov7-tiny", None) == 640
    assert resolve(path).nc == 3
    toml = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"yolov7c.zoo" = ["weights/*.ckpt"]' in toml  # installed with the package


@pytest.mark.slow
def test_the_default_main_job_detects_on_every_backend(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """README's first command: the shipped checkpoint, fine-tuned briefly, reaches mAP@0.5 ≥
    0.5 on its validation images with the same numbers on every backend, and draws at least
    one correct box on every detect image; the output names the drawn images and gives one
    line per backend."""
    pytest.importorskip("onnxruntime")
    from yolov7c.cli import main
    assert main(["e2e", "--epochs", "1", "--train-images", "16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = summary["backends"]
    built = {"torch", "deploy", "onnxruntime"} | (
        {"tvm"} if "path" in summary["steps"]["tvm"] else set())
    assert set(rows) == built and summary["img"] == 128
    for name, row in rows.items():
        assert row["map50"] >= e2e.MIN_MAP50, (name, row)
        assert abs(row["map50"] - rows["torch"]["map50"]) <= e2e.MAP_TOL
        assert abs(row["map"] - rows["torch"]["map"]) <= e2e.MAP_TOL
        det = summary["steps"]["detect"]["backends"][name]
        assert det["images_with_a_correct_box"] == det["images"] == e2e.DETECT_IMAGES
        assert len(list(Path(row["out_dir"]).glob("*.png"))) == e2e.DETECT_IMAGES
        lines = [x for x in out.splitlines()
                 if x.strip().startswith(name + " ") and "ms/img" in x]
        assert len(lines) == 1 and f"mAP@.5 {row['map50']:.4f}" in lines[0], out
    assert f"drawn images: {tmp_path / 'detect'}" in out
