"""SGD with the official YOLOv7 recipe: three parameter groups, a nominal batch by gradient
accumulation, linear warmup then a cosine decay to ``lrf``.

Every learning rate and momentum is a pure function of (iteration, epoch), so a resumed run
recomputes exactly the values the uninterrupted run would have used; no scheduler object
carries hidden state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..backends.torch.modules import ImplicitA, ImplicitM
from ..train_defaults import TRAIN

NOMINAL_BATCH = TRAIN.nominal_batch        # the official recipe's (declared once there)
MIN_WARMUP_ITERS = TRAIN.min_warmup_iters
GROUP_NAMES = ("no_decay", "decay", "bias")  # the official pg0, pg1, pg2


def accumulate_steps(total_batch: int, nominal: int = NOMINAL_BATCH) -> int:
    """Batches per optimizer step so one step sees about ``nominal`` images."""
    return max(round(nominal / total_batch), 1)


def scaled_weight_decay(weight_decay: float, total_batch: int,
                        nominal: int = NOMINAL_BATCH) -> float:
    """Decay per step grows with the images per step: wd × batch × accumulate / nominal."""
    return weight_decay * total_batch * accumulate_steps(total_batch, nominal) / nominal


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Split parameters the official way: BatchNorm weights and implicit vectors (no decay),
    conv/linear weights (decay), every bias (no decay, its own warmup lr).

    Raises if a parameter falls in no group or in two, so a new module type cannot be
    silently left out of training."""
    groups: dict[str, list[nn.Parameter]] = {k: [] for k in GROUP_NAMES}
    seen: set[int] = set()
    for mod in model.modules():
        for pname, p in mod.named_parameters(recurse=False):
            if pname == "bias":
                key = "bias"
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm) or isinstance(
                    mod, (ImplicitA, ImplicitM)):
                key = "no_decay"
            elif pname == "weight":
                key = "decay"
            else:
                raise ValueError(f"parameter {type(mod).__name__}.{pname} has no optimizer "
                                 f"group; extend train.optim.param_groups")
            if id(p) in seen:
                continue  # shared parameter: one group only
            seen.add(id(p))
            groups[key].append(p)
    return groups


def build_optimizer(model: nn.Module, hyp: dict, total_batch: int,
                    nominal: int = NOMINAL_BATCH) -> torch.optim.SGD:
    """SGD Nesterov with groups 0 = no decay, 1 = decay (scaled), 2 = biases."""
    g = param_groups(model)
    opt = torch.optim.SGD(g["no_decay"], lr=hyp["lr0"], momentum=hyp["momentum"], nesterov=True)
    opt.add_param_group({"params": g["decay"],
                         "weight_decay": scaled_weight_decay(hyp["weight_decay"], total_batch,
                                                         nominal)})
    opt.add_param_group({"params": g["bias"]})
    for group in opt.param_groups:
        group["initial_lr"] = hyp["lr0"]
    return opt


def one_cycle(epoch: float, epochs: int, lrf: float) -> float:
    """Cosine factor from 1 at epoch 0 to ``lrf`` at ``epochs``."""
    return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1


@dataclass(frozen=True)
class Schedule:
    """Learning rate, momentum and accumulation at any iteration.

    ``ni`` counts batches since the start of training (epoch × batches_per_epoch + i).
    Warmup lasts ``max(round(warmup_epochs × nb), 1000)`` batches: group lrs rise linearly
    from 0 (the bias group falls from ``warmup_bias_lr``) to ``lr0 × cos_factor(epoch)``,
    momentum rises from ``warmup_momentum``, and accumulation grows from 1 to its nominal
    value. After warmup the lr is ``lr0 × cos_factor(epoch)``, constant within an epoch."""

    lr0: float
    lrf: float
    momentum: float
    warmup_epochs: float
    warmup_momentum: float
    warmup_bias_lr: float
    epochs: int
    batches_per_epoch: int
    total_batch: int
    min_warmup_iters: int = MIN_WARMUP_ITERS
    nominal_batch: int = NOMINAL_BATCH

    @classmethod
    def from_hyp(cls, hyp: dict, epochs: int, batches_per_epoch: int, total_batch: int,
                 min_warmup_iters: int = MIN_WARMUP_ITERS,
                 nominal_batch: int = NOMINAL_BATCH) -> "Schedule":
        return cls(float(hyp["lr0"]), float(hyp["lrf"]), float(hyp["momentum"]),
                   float(hyp["warmup_epochs"]), float(hyp["warmup_momentum"]),
                   float(hyp["warmup_bias_lr"]), int(epochs), int(batches_per_epoch),
                   int(total_batch), int(min_warmup_iters), int(nominal_batch))

    @property
    def warmup_iters(self) -> int:
        return max(round(self.warmup_epochs * self.batches_per_epoch), self.min_warmup_iters)

    def epoch_lr(self, epoch: int) -> float:
        return self.lr0 * one_cycle(epoch, self.epochs, self.lrf)

    def at(self, ni: int, epoch: int) -> tuple[list[float], float, int]:
        """(lr per group [no_decay, decay, bias], momentum, accumulate) for batch ``ni``."""
        target = self.epoch_lr(epoch)
        nw = self.warmup_iters
        nominal = accumulate_steps(self.total_batch, self.nominal_batch)
        if ni > nw:
            return [target] * 3, self.momentum, nominal
        xi = [0, nw]
        acc = max(1, int(np.interp(ni, xi, [1, self.nominal_batch / self.total_batch]).round()))
        lrs = [float(np.interp(ni, xi, [self.warmup_bias_lr if j == 2 else 0.0, target]))
               for j in range(3)]
        mom = float(np.interp(ni, xi, [self.warmup_momentum, self.momentum]))
        return lrs, mom, acc

    def apply(self, optimizer: torch.optim.Optimizer, ni: int, epoch: int) -> int:
        """Set the optimizer's lr and momentum for batch ``ni``; return the accumulation."""
        lrs, mom, acc = self.at(ni, epoch)
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
            group["momentum"] = mom
        return acc
