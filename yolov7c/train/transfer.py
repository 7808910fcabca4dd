"""Fine-tuning: start a model from another model's weights.

Every tensor whose name and shape match is copied; the rest keep their fresh initialisation.
With a different number of classes that is exactly the detection convs (and IDetect's
multiplicative implicit vectors), whose output width is na × (5 + nc): they start from the
standard initialisation (prior biases included), everything else is transferred. The report
says what was and was not transferred, so a silent mismatch cannot pass for fine-tuning.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

log = logging.getLogger("yolov7c.train")


@dataclass
class TransferReport:
    transferred: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)   # same name, other shape
    missing: list[str] = field(default_factory=list)          # not in the source at all
    unused: list[str] = field(default_factory=list)           # source tensors with no target
    total: int = 0

    def summary(self) -> str:
        def head(names: list[str]) -> str:
            return ", ".join(names[:6]) + (f" … (+{len(names) - 6})" if len(names) > 6 else "")
        parts = [f"transferred {len(self.transferred)}/{self.total} tensors"]
        if self.reinitialised:
            parts.append(f"re-initialised (shape differs) {len(self.reinitialised)}: "
                         f"{head(self.reinitialised)}")
        if self.missing:
            parts.append(f"not in the source {len(self.missing)}: {head(self.missing)}")
        if self.unused:
            parts.append(f"unused from the source {len(self.unused)}: {head(self.unused)}")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {"transferred": len(self.transferred), "total": self.total,
                "reinitialised": self.reinitialised, "missing": self.missing,
                "unused": self.unused}


def transfer(source: nn.Module | dict[str, torch.Tensor], target: nn.Module) -> TransferReport:
    """Copy matching tensors (name and shape) from ``source`` into ``target`` in place."""
    src = source.state_dict() if isinstance(source, nn.Module) else source
    dst = target.state_dict()
    rep = TransferReport(total=len(dst))
    keep = {}
    for k, v in dst.items():
        if k not in src:
            rep.missing.append(k)
        elif tuple(src[k].shape) != tuple(v.shape):
            rep.reinitialised.append(k)
        else:
            keep[k] = src[k].detach().to(v.dtype)
            rep.transferred.append(k)
    rep.unused = [k for k in src if k not in dst]
    target.load_state_dict(keep, strict=False)
    log.info("fine-tuning: %s", rep.summary())
    return rep
