"""Exponential moving average of the weights (parameters AND buffers), the weights that are
validated and saved.

decay(u) = 0.9999 × (1 − exp(−u / 2000)) after u updates: almost no averaging at the start
(so the EMA follows the fast early changes) and a ~10⁴-step window late in training.
BatchNorm running statistics are averaged too, so the EMA model is self-consistent.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

DECAY = 0.9999
TAU = 2000.0


def ema_decay(updates: int, decay: float = DECAY, tau: float = TAU) -> float:
    return decay * (1 - math.exp(-updates / tau))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under a DistributedDataParallel / torch.compile wrapper."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            model = getattr(model, attr)
    return model


class ModelEMA:
    """``ema.module`` is a frozen eval-mode copy updated after every optimizer step."""

    def __init__(self, model: nn.Module, updates: int = 0, decay: float = DECAY,
                 tau: float = TAU) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = updates
        self.decay, self.tau = decay, tau

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = ema_decay(self.updates, self.decay, self.tau)
        current = unwrap(model).state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:  # integer buffers (num_batches_tracked) are copied
                v.mul_(d).add_(current[k].detach().to(v.dtype), alpha=1 - d)
            else:
                v.copy_(current[k])
