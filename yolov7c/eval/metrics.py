"""COCO metrics with pycocotools (the field's reference implementation), plus the precision,
recall and confusion matrix people read next to mAP.

``coco_metrics`` takes a ground-truth dict and a list of COCO result records and returns the
12 ``COCOeval.stats``, mAP@0.5 and mAP@0.5:0.95 per class, the interpolated PR curves at
IoU 0.5, and precision/recall at the confidence that maximizes the mean F1 over classes (as
the official evaluation reports them). pycocotools' console output is captured, so callers
that promise one JSON object on stdout keep their promise.
"""
from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np

from ..boxes import box_iou

STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


def _coco(gt: dict):
    from pycocotools.coco import COCO
    c = COCO()
    c.dataset = copy.deepcopy(gt)
    c.dataset.setdefault("info", {})
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def coco_metrics(gt: dict, results: list[dict]) -> dict[str, Any]:
    """pycocotools bbox evaluation of ``results`` against ``gt``; all zeros when no results."""
    from pycocotools.cocoeval import COCOeval
    cat_ids = sorted(c["id"] for c in gt["categories"])
    names = {c["id"]: c.get("name", str(c["id"])) for c in gt["categories"]}
    out: dict[str, Any] = {"stats": [0.0] * 12, "per_class": [], "pr_curve": None,
                           "precision": 0.0, "recall": 0.0, "conf_at_best_f1": 0.0}
    if not results or not gt["annotations"]:
        out["per_class"] = [{"class": i, "category_id": c, "name": names[c], "map50": 0.0,
                             "map": 0.0, "labels": 0} for i, c in enumerate(cat_ids)]
        for a in gt["annotations"]:
            if not a.get("iscrowd", 0):
                out["per_class"][cat_ids.index(a["category_id"])]["labels"] += 1
        for c in out["per_class"]:
            if not c["labels"]:
                c["map"] = c["map50"] = None
        return out
    coco_gt = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out["stats"] = [float(s) for s in ev.stats]
    prec = ev.eval["precision"]          # (T iou, R recall, K class, A area, M maxdets)
    n_gt = {c: 0 for c in cat_ids}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and a["category_id"] in n_gt:
            n_gt[a["category_id"]] += 1
    for k, c in enumerate(ev.params.catIds):
        p_all, p50 = prec[:, :, k, 0, -1], prec[0, :, k, 0, -1]
        out["per_class"].append({
            "class": k, "category_id": int(c), "name": names[c], "labels": n_gt[c],
            # None where the class has no labels: COCO leaves it out of the mean as well
            "map": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else None,
            "map50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else None})
    p50 = prec[0, :, :, 0, -1].T                                   # (K, R); -1: no labels
    out["pr_curve"] = {"recall": ev.params.recThrs.tolist(),
                       "precision": [row.tolist() if (row > -1).any() else None for row in p50]}
    out.update(_best_f1(ev))
    return out


def _best_f1(ev) -> dict[str, float]:
    """Precision and recall at IoU 0.5 at the score threshold with the best mean F1."""
    grid = np.linspace(0, 1, 1001)
    per_cat: dict[int, list] = {c: [[], [], 0] for c in ev.params.catIds}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0] or \
                e["maxDet"] != ev.params.maxDets[-1]:
            continue
        acc = per_cat[e["category_id"]]
        keep = ~np.asarray(e["dtIgnore"][0], bool) if len(e["dtIds"]) else np.zeros(0, bool)
        acc[0].append(np.asarray(e["dtScores"], float)[keep])
        acc[1].append(np.asarray(e["dtMatches"][0])[keep] > 0 if len(keep) else keep)
        acc[2] += int((~np.asarray(e["gtIgnore"], bool)).sum())
    ps, rs = [], []
    for scores, tps, n_pos in per_cat.values():
        if n_pos == 0:
            continue
        s = np.concatenate(scores) if scores else np.zeros(0)
        t = np.concatenate(tps) if tps else np.zeros(0, bool)
        o = np.argsort(-s, kind="stable")
        s, t = s[o], t[o]
        ctp, cfp = np.concatenate(([0], np.cumsum(t))), np.concatenate(([0], np.cumsum(~t)))
        k = np.searchsorted(-s, -grid, side="right")    # detections with score >= g
        tp, fp = ctp[k], cfp[k]
        ps.append(np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0))
        rs.append(tp / n_pos)
    if not ps:
        return {"precision": 0.0, "recall": 0.0, "conf_at_best_f1": 0.0}
    p, r = np.stack(ps), np.stack(rs)
    f1 = (2 * p * r / np.maximum(p + r, 1e-16)).mean(0)
    i = int(f1.argmax())
    return {"precision": float(p[:, i].mean()), "recall": float(r[:, i].mean()),
            "conf_at_best_f1": float(grid[i])}


def confusion_matrix(dets: list[np.ndarray], labels: list[np.ndarray], nc: int,
                     conf: float = 0.25, iou: float = 0.45) -> np.ndarray:
    """(nc + 1) × (nc + 1) counts, rows = predicted class, columns = true class; the last row
    and column are background (missed labels, false detections). ``dets`` are (n, 6) xyxy,
    score, class; ``labels`` (m, 5) class, xyxy, both in pixels."""
    m = np.zeros((nc + 1, nc + 1), np.int64)
    for d, lab in zip(dets, labels):
        d = d[d[:, 4] > conf]
        gc, pc = lab[:, 0].astype(int), d[:, 5].astype(int)
        if not len(lab):
            np.add.at(m, (pc, nc), 1)
            continue
        if not len(d):
            np.add.at(m, (nc, gc), 1)
            continue
        ious = box_iou(lab[:, 1:5].astype(np.float32), d[:, :4].astype(np.float32))
        gi, di = np.nonzero(ious > iou)
        if len(gi):  # one-to-one: best IoU first, each detection and label used once
            order = np.argsort(-ious[gi, di], kind="stable")
            gi, di = gi[order], di[order]
            _, first = np.unique(di, return_index=True)
            gi, di = gi[np.sort(first)], di[np.sort(first)]
            _, first = np.unique(gi, return_index=True)
            gi, di = gi[np.sort(first)], di[np.sort(first)]
        np.add.at(m, (pc[di], gc[gi]), 1)
        missed = np.setdiff1d(np.arange(len(lab)), gi)
        np.add.at(m, (np.full(len(missed), nc), gc[missed]), 1)
        extra = np.setdiff1d(np.arange(len(d)), di)
        np.add.at(m, (pc[extra], np.full(len(extra), nc)), 1)
    return m
