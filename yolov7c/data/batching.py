"""Evaluation batches: images letterboxed to one shape per batch, with what it takes to map the
boxes back.

Rectangular batches (the official evaluation's ``rect``): images are ordered by aspect ratio
and each batch gets the smallest stride-multiple shape that holds its images once their long
side is ``img``, so a 640×480 image is not padded to 640×640. Backends with a fixed input
shape (ONNX, TVM) get every image letterboxed to that shape instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..eval_settings import VAL_BATCH
from .dataset import DetectionDataset
from .letterbox import letterbox, resize


@dataclass
class Batch:
    """``images`` float32 (B, 3, H, W) in [0, 1]; per image: dataset index, letterbox ratio and
    (pad_w, pad_h), original (H, W)."""
    indices: list[int]
    images: torch.Tensor
    ratios: list[float]
    pads: list[tuple[float, float]]
    shapes: list[tuple[int, int]]


def batch_shapes(shapes: list[tuple[int, int]], img: int, batch_size: int, stride: int,
                 pad: float = 0.0) -> tuple[list[int], list[tuple[int, int]]]:
    """(order, one (H, W) per batch) for rectangular batches: images sorted by h/w; a batch
    whose images are all wide gets height ``img * max(h/w)`` rounded up to the stride (and the
    reverse for tall ones); ``pad`` adds that many strides of border (the official evaluation
    uses 0.5)."""
    ar = np.array([h / w for h, w in shapes], dtype=np.float64)
    order = np.argsort(ar, kind="stable").tolist()
    out = []
    for s in range(0, len(order), batch_size):
        a = ar[order[s:s + batch_size]]
        lo, hi = float(a.min()), float(a.max())
        hw = (hi, 1.0) if hi < 1 else (1.0, 1 / lo) if lo > 1 else (1.0, 1.0)
        out.append(tuple(int(math.ceil(v * img / stride + pad)) * stride for v in hw))
    return order, out


def preprocess(image: np.ndarray, img: int, shape: tuple[int, int]
               ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize so the long side is ``img`` (as the official loader does), then letterbox into
    ``shape`` without enlarging further; returns (H, W, 3) uint8, total ratio, pads."""
    h, w = image.shape[:2]
    r0 = img / max(h, w)
    if r0 != 1:
        image = resize(image, (max(1, int(round(h * r0))), max(1, int(round(w * r0)))))
    out, r, pads = letterbox(image, shape, scaleup=False)
    return out, r0 * r, pads


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 list → float32 (B, 3, H, W) in [0, 1]."""
    arr = np.stack(images).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)


def val_batches(dataset: DetectionDataset, img: int, batch_size: int = VAL_BATCH,
                stride: int = 32, *,
                rect: bool = True, pad: float = 0.0,
                fixed_shape: tuple[int, int] | None = None) -> Iterator[Batch]:
    """Batches over ``dataset`` in evaluation order (by aspect ratio when ``rect``)."""
    n = len(dataset)
    if fixed_shape is not None:
        order, shapes = list(range(n)), [tuple(fixed_shape)] * math.ceil(n / batch_size)
    elif rect:
        order, shapes = batch_shapes(dataset.shapes, img, batch_size, stride, pad)
    else:
        order, shapes = list(range(n)), [(img, img)] * math.ceil(n / batch_size)
    for b, shape in enumerate(shapes):
        idx = order[b * batch_size:(b + 1) * batch_size]
        ims, ratios, pads, hws = [], [], [], []
        for i in idx:
            im = dataset[i].image
            x, r, p = preprocess(im, img, shape)
            ims.append(x)
            ratios.append(r)
            pads.append(p)
            hws.append(im.shape[:2])
        yield Batch(idx, to_tensor(ims), ratios, pads, hws)
