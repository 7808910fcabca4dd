"""Synthetic images made on the fly, so the main job and the tests need no data set.

A scene is a smooth background with a few filled rectangles and ellipses, each returned with
its box, so later detection/evaluation code can use the same generator as ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticScene:
    image: np.ndarray            # (3, H, W) float32 in [0, 1]
    boxes: np.ndarray            # (N, 4) xyxy in pixels
    classes: np.ndarray          # (N,) int class ids


def synthetic_scene(img: int | tuple[int, int], n_objects: int = 4, n_classes: int = 80,
                    seed: int = 0) -> SyntheticScene:
    """A deterministic (by ``seed``) image of shapes on a gradient, with its boxes."""
    h, w = (img, img) if isinstance(img, int) else img
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    image = np.stack([base[c] + 0.2 * np.sin((xx * (c + 1) + yy) / max(h, w) * np.pi)
                      for c in range(3)])
    boxes, classes = [], []
    for _ in range(n_objects):
        bw, bh = rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.4) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        color = rng.uniform(0, 1, size=3).astype(np.float32)
        if rng.uniform() < 0.5:
            mask = (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
        else:  # ellipse inscribed in the box
            mask = (((xx - x0 - bw / 2) / (bw / 2)) ** 2 + ((yy - y0 - bh / 2) / (bh / 2)) ** 2) <= 1
        image[:, mask] = color[:, None]
        boxes.append((x0, y0, x0 + bw, y0 + bh))
        classes.append(int(rng.integers(n_classes)))
    return SyntheticScene(np.clip(image, 0, 1).astype(np.float32),
                          np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                          np.asarray(classes, dtype=np.int64))
