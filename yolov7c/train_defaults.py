"""A training run's defaults, declared once (bottom layer: no torch import).

``train.trainer.Settings`` (the record of a run), ``api.training.train``'s keywords and the
``train`` CLI's flags and their help all read them from here; the CLI parser must start
without importing torch, which the trainer needs, so the values cannot live on ``Settings``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainDefaults:
    """The values a run gets for the flags it is not given."""

    epochs: int = 300              # the official schedule
    batch: int = 16                # total images per step over all processes
    seed: int = 0                  # weights, sample order and augmentation
    workers: int = 2               # data-loading processes
    nominal_batch: int = 64        # images per optimizer step (by accumulation), the official
    min_warmup_iters: int = 1000   # the official floor on warmup batches
    project: str = "runs/train"    # parent folder of the run folders
    name: str = "exp"              # run folder name (exp, exp2, ...)


TRAIN = TrainDefaults()
