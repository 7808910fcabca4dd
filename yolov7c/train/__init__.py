"""Training: the paper's loss (OTA lead, lead-guided coarse aux), hyps, trainer.

Exports resolve lazily, so ``import yolov7c.train`` stays cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "criterion": "loss", "Criterion": "loss",
    "load_hyp": "hyp", "scale_hyp": "hyp", "save_hyp": "hyp", "PRESETS": "hyp",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
