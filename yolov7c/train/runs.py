"""A training run's folder: ``runs/train/expN/`` with ``weights/``, ``results.csv`` (one row per
epoch), ``results.png`` (loss and mAP curves), ``labels.png`` (label distribution). Folder naming is
``run_dirs.next_run_dir`` (the same rule as val/detect).

Every file is written atomically, so a run killed at any moment leaves complete files.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..figures import pyplot, save_png
from ..io_util import write_text_atomic

# The columns of results.csv, declared once: the trainer's history rows, the plots and the
# resume check read these names.
LOSSES = ("train/box", "train/obj", "train/cls", "train/total")
# each metric column and the evaluator's key it comes from
METRICS = {"precision": "precision", "recall": "recall", "mAP50": "map50", "mAP50-95": "map"}
LRS = ("lr/no_decay", "lr/decay", "lr/bias")
COLUMNS = ("epoch", *LOSSES, *METRICS, *LRS, "time_s")


def results_row(epoch: int, losses: Sequence[float], metrics: dict, lrs: Sequence[float],
                time_s: float) -> dict:
    """One epoch's row (``epoch`` counts from 1; a metric the evaluator did not give is
    NaN, as for a run without validation)."""
    row: dict = {"epoch": epoch, **dict(zip(LOSSES, losses, strict=True))}
    row.update({col: float(metrics.get(key, math.nan)) for col, key in METRICS.items()})
    row.update(zip(LRS, lrs, strict=True))
    row["time_s"] = round(time_s, 2)
    return row


def write_results(path: Path, rows: Sequence[dict]) -> None:
    """The whole ``results.csv`` from the run's history (rewritten each epoch, atomically)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())



def plot_results(path: Path, rows: Sequence[dict]) -> None:
    """Loss parts and validation metrics per epoch, one panel each."""
    if not rows:
        return
    plt = pyplot()
    keys = (*LOSSES, *METRICS)
    ep = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(2, 4, figsize=(14, 6), tight_layout=True)
    for ax, k in zip(axes.ravel(), keys):
        ax.plot(ep, [float(r[k]) for r in rows], marker=".")
        ax.set_title(k)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    save_png(fig, path, dpi=100)


def plot_labels(path: Path, labels: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Instances per class, box centres and box sizes (normalized) of the training set."""
    plt = pyplot()
    lab = np.concatenate([np.asarray(x, np.float32).reshape(-1, 5) for x in labels], 0)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), tight_layout=True)
    counts = np.bincount(lab[:, 0].astype(int), minlength=len(names))
    axes[0].bar(range(len(counts)), counts)
    axes[0].set_xticks(range(len(counts)))
    axes[0].set_xticklabels([str(n) for n in names][:len(counts)] + [""] * max(
        0, len(counts) - len(names)), rotation=90 if len(counts) > 10 else 0)
    axes[0].set_title(f"instances per class ({len(lab)} boxes)")
    axes[1].scatter(lab[:, 1], lab[:, 2], s=2, alpha=0.4)
    axes[1].set(xlim=(0, 1), ylim=(1, 0), title="box centres (x, y)")
    axes[2].scatter(lab[:, 3], lab[:, 4], s=2, alpha=0.4)
    axes[2].set(xlim=(0, 1), ylim=(0, 1), title="box sizes (w, h)")
    save_png(fig, path, dpi=100)
