"""The predict pipeline, written once: letterboxed batch → predictor → NMS → boxes in original
image pixels. ``val`` (the evaluator) and ``detect`` both call :func:`predict`, so the same
image gives the same boxes in both, and both time the same three phases with one
:class:`Stopwatch`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..data.letterbox import scale_boxes
from .nms import nms

PHASES = ("preprocess", "inference", "nms")


@dataclass
class Stopwatch:
    """Seconds spent per named phase, summed over calls (``with watch("nms"): ...``)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0

    def per_image_ms(self, images: int) -> dict[str, float]:
        """Milliseconds per image for each phase (the ``speed`` field of val and detect)."""
        n = max(images, 1)
        return {k: 1000 * v / n for k, v in self.seconds.items()}

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def predict(predictor: Any, images: torch.Tensor, ratios: Sequence[float],
            pads: Sequence[tuple[float, float]], shapes: Sequence[tuple[int, int]], *,
            conf: float, iou: float, max_det: int, multi_label: bool = False,
            classes: Sequence[int] | None = None, agnostic: bool = False,
            watch: Stopwatch | None = None) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Run ``predictor`` on a letterboxed batch and return (its decoded output, one (n, 6)
    float32 array per image: x1, y1, x2, y2 in original pixels, score, class).

    Boxes are clipped to the image; a box that clipping leaves with no area (it lay in the
    letterbox padding) is dropped, so it reaches neither drawn images nor predictions.json.
    """
    watch = watch if watch is not None else Stopwatch()
    with watch("inference"):
        out = predictor(images)
    with watch("nms"):
        dets = nms(out, conf, iou, classes=classes, agnostic=agnostic,
                   multi_label=multi_label, max_det=max_det)
        per_image = []
        for d, r, pad, shape in zip(dets, ratios, pads, shapes):
            box = scale_boxes(d[:, :4], r, pad, shape)
            keep = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
            per_image.append(torch.cat((box, d[:, 4:]), 1)[keep].numpy())
    return out, per_image
