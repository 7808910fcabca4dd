"""Metric parity: hand-made cases with known AP, the pipeline reaching mAP 1.0 on perfect
predictions, and val's numbers equal to pycocotools run directly on the JSON it writes."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from yolov7c.data import load_dataset
from yolov7c.eval.metrics import coco_metrics, confusion_matrix

pytestmark = pytest.mark.one_thread


def _gt(boxes, cats=(1,), size=(200, 200)):
    return {"images": [{"id": 1, "width": size[1], "height": size[0], "file_name": "a.png"}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b,
                             "area": b[2] * b[3], "iscrowd": 0}
                            for i, (c, b) in enumerate(boxes)],
            "categories": [{"id": c, "name": f"c{c}"} for c in cats]}


def test_one_perfect_box_is_ap_1():
    gt = _gt([(1, [10, 10, 50, 60])])
    m = coco_metrics(gt, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 60],
                           "score": 0.9}])
    assert m["stats"][0] == pytest.approx(1.0) and m["stats"][1] == pytest.approx(1.0)
    assert m["precision"] == pytest.approx(1.0) and m["recall"] == pytest.approx(1.0)


def test_half_right_by_hand():
    """Two labels; detections: a hit (score 0.9), a false positive (0.8), nothing on the
    second label. Precision/recall points: (r=0.5, p=1), (r=0.5, p=0.5). COCO's 101-point
    interpolated AP: recall thresholds 0.00..0.50 (51 of them) get precision 1, the remaining
    50 get 0 → AP = 51/101 at every IoU threshold (the hit is exact)."""
    gt = _gt([(1, [10, 10, 40, 40]), (1, [120, 120, 40, 40])])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.8}]
    m = coco_metrics(gt, dets)
    assert m["stats"][0] == pytest.approx(51 / 101) and m["stats"][1] == pytest.approx(51 / 101)
    # best F1: threshold above 0.8 → P = 1, R = 0.5
    assert m["precision"] == pytest.approx(1.0) and m["recall"] == pytest.approx(0.5)


def test_box_shifted_beyond_iou_thresholds():
    """IoU of [0,0,100,100] and [0,0,100,80] is 0.8: a hit at IoU 0.50..0.80 (7 of the 10
    thresholds), a miss above → mAP@.5:.95 = 0.7, mAP@.5 = 1."""
    gt = _gt([(1, [0, 0, 100, 100])])
    m = coco_metrics(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 80],
                           "score": 0.5}])
    assert m["stats"][1] == pytest.approx(1.0) and m["stats"][0] == pytest.approx(0.7)


def test_no_detections_is_zero():
    m = coco_metrics(_gt([(1, [0, 0, 10, 10])]), [])
    assert m["stats"] == [0.0] * 12


def test_confusion_matrix_counts():
    labels = [np.array([[0, 0, 0, 10, 10], [1, 50, 50, 60, 60]], np.float32)]
    dets = [np.array([[0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.9, 0],
                      [80, 80, 90, 90, 0.9, 1]], np.float32)]
    m = confusion_matrix(dets, labels, nc=2)
    want = np.zeros((3, 3), int)
    want[0, 0] = 1          # right
    want[0, 1] = 1          # a class-1 object called class 0
    want[1, 2] = 1          # a class-1 detection on background
    assert (m == want).all()


class PerfectFake(nn.Module):
    """A 'trained-looking fake': recognises each dataset image by its pixels and outputs its
    labels as decoded head rows (xywh in input pixels, obj 1, one-hot class). Valid where the
    letterbox is the identity (square images at their own size)."""

    def __init__(self, ds) -> None:
        super().__init__()
        self.keys = [torch.from_numpy(ds[i].image.copy()).permute(2, 0, 1) for i in range(len(ds))]
        self.labels, self.nc, self.shapes = ds.labels, ds.nc, ds.shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), 8, 5 + self.nc)
        for b, im in enumerate((x * 255).round().to(torch.uint8)):
            i = next(k for k, key in enumerate(self.keys) if torch.equal(key, im))
            h, w = self.shapes[i]
            for r, (c, cx, cy, bw, bh) in enumerate(self.labels[i]):
                out[b, r, :5] = torch.tensor([cx * w, cy * h, bw * w, bh * h, 1.0])
                out[b, r, 5 + int(c)] = 1.0
        return out


def test_perfect_predictions_reach_map_1(synth_small, tmp_path):
    from yolov7c.api.evaluate import detect, val
    ds = load_dataset(synth_small)
    res = val(PerfectFake(ds), synth_small, img=128, batch_size=3, out=tmp_path / "runs",
              progress=False)
    print({k: res[k] for k in ("map50", "map", "precision", "recall")})
    assert res["map"] == pytest.approx(1.0) and res["map50"] == pytest.approx(1.0)
    assert res["recall"] == pytest.approx(1.0) and res["precision"] == pytest.approx(1.0)
    cm = np.asarray(res["confusion_matrix"])
    assert cm[:-1, :-1].trace() == res["labels"] and cm[-1].sum() == cm[:, -1].sum() == 0
    files = res["files"]
    for k in ("predictions", "metrics", "pr_curve", "confusion_matrix"):
        assert (tmp_path / "runs" / "exp" / files[k].split("/")[-1]).is_file()
    d = detect(PerfectFake(ds), ds.paths[:2], img=128, out=tmp_path / "det", save_txt=True,
               progress=False)
    assert d["out_dir"].endswith("exp")
    for r, lab in zip(d["results"], ds.labels[:2]):
        assert len(r["detections"]) == len(lab)
    assert len(list((tmp_path / "det" / "exp" / "labels").glob("*.txt"))) == 2


def test_val_equals_pycocotools_on_its_own_json(synth_small, tmp_path):
    """A random-weight zoo model (mAP ≈ 0, but thousands of boxes): val's stats equal COCOeval
    run here, independently, on the predictions JSON val wrote and the dataset's COCO GT."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from yolov7c.api.evaluate import val
    res = val("yolov7-tiny", synth_small.parent / "annotations" / "instances_val.json",
              images=synth_small.parent / "images" / "val", img=128, out=tmp_path, name="run",
              progress=False, plots=False)
    assert res["detections"] > 100 and res["out_dir"].endswith("run")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(synth_small.parent / "annotations" / "instances_val.json"))
        dt = gt.loadRes(json.loads((tmp_path / "run" / "predictions.json").read_text()))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert res["stats"] == pytest.approx(list(ev.stats), abs=1e-12)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["map"] == res["map"] and "records" not in saved
    # a second run never overwrites the first
    res2 = val("yolov7-tiny", synth_small, img=128, out=tmp_path, name="run", progress=False,
               plots=False)
    assert res2["out_dir"].endswith("run2")


def test_failed_val_leaves_no_run_folder(synth_small, tmp_path):
    from yolov7c.api.evaluate import val
    from yolov7c.errors import UserError
    with pytest.raises(UserError, match="model predicts 5 classes but the data has 3"):
        val("yolov7-tiny", synth_small, nc=5, img=64, out=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_torch_predictor_keeps_train_flag_and_rect_batches(tmp_path):
    """A live training model evaluates in eval mode and is handed back in training mode;
    non-square images go through rectangular batches end to end."""
    from PIL import Image

    import yolov7c
    from yolov7c.eval import TorchPredictor, evaluate
    m = yolov7c.build("yolov7-tiny", nc=2).train()
    out = TorchPredictor(m)(torch.rand(1, 3, 64, 96))
    assert out.shape == (1, 3 * (8 * 12 + 4 * 6 + 2 * 3), 7) and m.training
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i, (w, h) in enumerate([(96, 48), (100, 60), (40, 90)]):
        Image.new("RGB", (w, h), (30 * i, 90, 160)).save(tmp_path / "images" / f"{i}.png")
        (tmp_path / "labels" / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.3\n")
    (tmp_path / "d.yaml").write_text("val: images\nnames: [a, b]\n")
    res = evaluate(TorchPredictor(m), load_dataset(tmp_path / "d.yaml"), img=96, batch_size=2,
                   progress=False)
    assert res["rect"] and res["images"] == 3 and len(res["stats"]) == 12 and m.training
