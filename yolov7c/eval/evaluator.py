"""COCO evaluation of any predictor on a dataset: batches → model → NMS → pycocotools.

The default settings are the official evaluation's (``nms_settings.EVAL``: a low score
threshold, multi-label NMS; rectangular batches where the backend accepts any shape). Boxes go back to the
original image before scoring, so every backend is judged on the same ground truth. Each stage
is timed (ms per image). With ``out_dir``: ``predictions.json`` (COCO results),
``metrics.json``, ``pr_curve.png`` and ``confusion_matrix.png``, each written atomically.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..boxes import xywhn2xyxy
from ..data.batching import val_batches
from ..data.dataset import DetectionDataset
from ..errors import UserError
from ..io_util import atomic_path
from ..progress import Progress
from .metrics import STAT_NAMES, coco_metrics, confusion_matrix
from .predict import Stopwatch, predict
from ..eval_settings import VAL_BATCH
from ..nms_settings import EVAL

log = logging.getLogger(__name__)


def resolve_img(img: int, predictor: Any) -> int:
    """``img`` rounded up to the predictor's stride (with a note); a fixed-shape backend's own
    size wins (images are letterboxed to it, with a note)."""
    if not isinstance(img, (int, np.integer)) or img <= 0:
        raise UserError(f"img {img!r}: give a positive image size in pixels", arg="img")
    fixed = getattr(predictor, "fixed_shape", None)
    if fixed is not None:
        size = max(fixed)
        if (img, img) != tuple(fixed):
            log.warning("%s model was built for %dx%d input: images are letterboxed to that "
                        "size (img=%d not used)", predictor.name, fixed[0], fixed[1], img)
        return size
    s = int(getattr(predictor, "stride", 32))
    if img % s:
        new = int(math.ceil(img / s)) * s
        log.warning("img %d is not a multiple of the model's max stride %d: using %d", img, s,
                    new)
        return new
    return int(img)


def to_records(dets: torch.Tensor | np.ndarray, image_id: int | str,
               cat_ids: list[int]) -> list[dict]:
    """(n, 6) xyxy, score, class in original pixels → COCO result records (xywh, rounded as
    the official evaluation writes them)."""
    out = []
    for x1, y1, x2, y2, s, c in dets.tolist():
        out.append({"image_id": image_id, "category_id": cat_ids[int(c)],
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(s, 5)})
    return out


def labels_px(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, 5) class, cx, cy, w, h normalized → class, x1, y1, x2, y2 in pixels."""
    h, w = shape
    return np.concatenate([labels[:, :1], xywhn2xyxy(labels[:, 1:5], w, h)], 1) \
        .astype(np.float32)


def evaluate(predictor: Any, dataset: DetectionDataset, *, img: int = 640,
             batch_size: int = VAL_BATCH,
             conf: float = EVAL.conf, iou: float = EVAL.iou, max_det: int = EVAL.max_det,
             multi_label: bool = EVAL.multi_label, out_dir: str | None = None,
             plots: bool = True, progress: bool = True, rect: bool | None = None,
             pad: float = 0.0, keep_outputs: bool = False) -> dict:
    """mAP and friends of ``predictor`` on ``dataset`` (see the module docstring).

    ``rect`` (default: when the backend takes any shape) uses rectangular batches; ``pad``
    adds that many strides of border to them (the official evaluation uses 0.5; 0 keeps a
    square set at exactly ``img`` on every backend, so backends compare like for like).
    ``keep_outputs`` leaves the COCO records and PR curve in the result (keys ``records``,
    ``pr_curve``) for :func:`write_outputs`; ``out_dir`` writes them there directly.
    """
    if len(dataset) == 0:
        raise UserError(f"data {dataset.source}: no images to evaluate", arg="data")
    if batch_size < 1:
        raise UserError(f"batch_size {batch_size}: must be at least 1", arg="batch_size")
    img = resolve_img(img, predictor)
    bs, use_rect = _batching(predictor, batch_size, rect)
    watch = Stopwatch()
    batches = val_batches(dataset, img, bs, predictor.stride, rect=use_rect, pad=pad,
                          fixed_shape=getattr(predictor, "fixed_shape", None))
    records, per_image = _predict_all(predictor, dataset, batches, watch, progress,
                                      conf=conf, iou=iou, max_det=max_det,
                                      multi_label=multi_label)
    with watch("metric"):
        m = coco_metrics(dataset.gt_json(), records)
    res: dict[str, Any] = {
        "backend": predictor.name, "data": dataset.source, "images": len(dataset),
        "labels": int(sum(len(lab) for lab in dataset.labels)), "img": img, "batch_size": bs,
        "rect": use_rect, "conf": conf, "iou": iou, "max_det": max_det,
        **_scores(m), "detections": len(records),
        "confusion_matrix": _confusion(dataset, per_image).tolist(),
        "speed": _speed(watch, len(dataset)), "skipped": list(dataset.skipped)}
    if out_dir is not None or keep_outputs:
        res.update(records=records, pr_curve=m["pr_curve"])
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        res = write_outputs(out, res, dataset, plots)
    return res


def _batching(predictor: Any, batch_size: int, rect: bool | None) -> tuple[int, bool]:
    """(images per batch, rectangular batches): a fixed-batch library runs fewer at a time,
    a fixed-shape one takes square batches only."""
    bs = min(batch_size, predictor.max_batch or batch_size)
    if bs < batch_size:
        log.info("%s runs %d image(s) at a time (its library has a fixed batch)", predictor.name,
                 bs)
    fixed = getattr(predictor, "fixed_shape", None)
    return bs, fixed is None if rect is None else bool(rect and fixed is None)


def _predict_all(predictor: Any, dataset: DetectionDataset, batches: Iterator[Any],
                 watch: Stopwatch, progress: bool, **nms: Any
                 ) -> tuple[list[dict], dict[int, np.ndarray]]:
    """(COCO result records, detections by image index) of every batch, each phase timed;
    a model whose classes are not the data's is refused at the first batch."""
    records: list[dict] = []
    per_image: dict[int, np.ndarray] = {}
    with Progress(len(dataset), f"val {predictor.name}", progress, unit="img") as bar:
        while True:
            with watch("preprocess"):
                batch = next(batches, None)
            if batch is None:
                return records, per_image
            pred, dets = predict(predictor, batch.images, batch.ratios, batch.pads,
                                 batch.shapes, watch=watch, **nms)
            if pred.shape[-1] - 5 != dataset.nc:
                raise UserError(f"model predicts {pred.shape[-1] - 5} classes but the data has "
                                f"{dataset.nc} ({dataset.source}); evaluate a model trained "
                                "on these classes", arg="data")
            with watch("nms"):
                for k, d in zip(batch.indices, dets):
                    per_image[k] = d
                    records += to_records(d, dataset.image_ids[k], dataset.cat_ids)
            bar.update(len(batch.indices))


def _scores(m: dict) -> dict[str, Any]:
    """The result's metric fields from pycocotools' ``m``."""
    return {"map50": m["stats"][1], "map": m["stats"][0],
            "precision": m["precision"], "recall": m["recall"],
            "conf_at_best_f1": m["conf_at_best_f1"],
            "stats": m["stats"], "stats_named": dict(zip(STAT_NAMES, m["stats"])),
            "per_class": m["per_class"]}


def _confusion(dataset: DetectionDataset, per_image: dict[int, np.ndarray]) -> np.ndarray:
    n = len(dataset)
    return confusion_matrix([per_image[i] for i in range(n)],
                            [labels_px(dataset.labels[i], dataset.shapes[i]) for i in range(n)],
                            dataset.nc)


def _speed(watch: Stopwatch, images: int) -> dict[str, float]:
    speed = watch.per_image_ms(images)
    speed["images_per_s"] = images / max(watch.total, 1e-9)
    return speed


def write_outputs(out: Path, res: dict, dataset: DetectionDataset, plots: bool = True) -> dict:
    """Write ``predictions.json`` (COCO results), the plots and ``metrics.json`` into ``out``
    (each atomically); returns ``res`` without the bulky ``records``/``pr_curve``, plus
    ``out_dir`` and ``files``."""
    from .plots import plot_confusion, plot_pr_curve
    res = dict(res)
    records, pr = res.pop("records"), res.pop("pr_curve")
    files = {"predictions": str(out / "predictions.json"), "metrics": str(out / "metrics.json")}
    with atomic_path(files["predictions"], ".json") as tmp:
        tmp.write_text(json.dumps(records))
    if plots:
        if pr is not None:
            files["pr_curve"] = str(out / "pr_curve.png")
            plot_pr_curve(pr, dataset.names, res["per_class"], files["pr_curve"])
        files["confusion_matrix"] = str(out / "confusion_matrix.png")
        plot_confusion(np.asarray(res["confusion_matrix"]), dataset.names,
                       files["confusion_matrix"], 0.25, 0.45)
    res.update(out_dir=str(out), files=files)
    with atomic_path(files["metrics"], ".json") as tmp:
        tmp.write_text(json.dumps(res, indent=1))
    return res
