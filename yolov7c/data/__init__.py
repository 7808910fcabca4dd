"""Datasets for detection: YOLO layout and COCO JSON readers, letterbox, a synthetic generator,
and evaluation batches (rectangular where the backend allows)."""
from __future__ import annotations

from .batching import Batch, val_batches
from .dataset import DetectionDataset, Sample, load_dataset, read_image
from .letterbox import letterbox, scale_boxes
from .synth import make_synthetic

__all__ = ["Batch", "DetectionDataset", "Sample", "letterbox", "load_dataset", "make_synthetic",
           "read_image", "scale_boxes", "val_batches"]
