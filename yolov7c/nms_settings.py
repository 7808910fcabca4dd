"""Post-processing defaults, declared once: the official evaluation's and detection's NMS
settings. The evaluator, ``val``/``detect`` (API and CLI) and the trainer's in-loop
validation all read them from here, so a run's reported mAP and a later ``val`` agree.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NmsSettings:
    """Score threshold, NMS IoU, boxes per image, and one box per class over ``conf``."""

    conf: float
    iou: float
    max_det: int = 300
    multi_label: bool = False


# the official test.py settings (mAP is computed from every box above 0.001)
EVAL = NmsSettings(conf=0.001, iou=0.65, max_det=300, multi_label=True)
# the official detect.py settings (boxes a person looks at)
DETECT = NmsSettings(conf=0.25, iou=0.45, max_det=300, multi_label=False)
