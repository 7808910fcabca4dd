"""Evaluation plots (matplotlib, Agg): the PR curve at IoU 0.5 and the confusion matrix."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..figures import pyplot, save_png


def plot_pr_curve(pr: dict, names: Sequence[str], per_class: list[dict],
                  path: str | os.PathLike) -> None:
    """Interpolated precision vs recall per class (thin) and their mean (bold), IoU 0.5."""
    plt = pyplot()
    r = np.asarray(pr["recall"])
    rows = [(k, np.asarray(p)) for k, p in enumerate(pr["precision"]) if p is not None]
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    few = len(rows) <= 20
    for k, row in rows:
        label = f"{names[k]} {per_class[k]['map50']:.3f}" if few else None
        ax.plot(r, row, lw=1, alpha=0.7 if few else 0.3, label=label)
    if rows:   # classes without labels are left out, as COCO leaves them out of mAP
        mean50 = float(np.mean([per_class[k]["map50"] for k, _ in rows]))
        ax.plot(r, np.mean([row for _, row in rows], 0), lw=3, color="navy",
                label=f"all classes {mean50:.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01),
           title="Precision–recall at IoU 0.5 (pycocotools, interpolated)")
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    save_png(fig, path, bbox_inches="tight")


def plot_confusion(m: np.ndarray, names: Sequence[str], path: str | os.PathLike,
                   conf: float, iou: float) -> None:
    """Column-normalized confusion matrix (each true class sums to 1), background last."""
    plt = pyplot()
    col = m.sum(0, keepdims=True)
    norm = m / np.maximum(col, 1)
    labels = list(names) + ["background"]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * n + 3), max(4, 0.35 * n + 2)), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="True", ylabel="Predicted",
           title=f"Confusion matrix (conf > {conf}, IoU > {iou})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    save_png(fig, path, bbox_inches="tight")
