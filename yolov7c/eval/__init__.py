"""Detection post-processing and evaluation: NMS, predictors over every backend, COCO metrics
(pycocotools), plots, drawing and run folders."""
from __future__ import annotations

from .evaluator import evaluate
from .nms import box_iou, nms, xywh2xyxy
from .predictor import OnnxPredictor, Predictor, TorchPredictor, TvmPredictor

__all__ = ["OnnxPredictor", "Predictor", "TorchPredictor", "TvmPredictor", "box_iou",
           "evaluate", "nms", "xywh2xyxy"]
