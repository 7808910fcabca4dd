"""The public API: the one place that composes model sources, passes and backends.

The CLI, ``e2e``, benchmarks and tests call these functions; no backend, pass or IR module
imports this package. Submodules are imported on first use (``yolov7c.api.export`` loads
``api.backends`` only when called), so ``import yolov7c.api`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name → submodule that defines it
_EXPORTS = {
    "resolve": "models", "load_checkpoint": "models", "deploy": "models", "save": "models",
    "random_model": "models", "graph_from_dsl": "models",
    "export": "backends", "compile": "backends", "tune": "backends", "bench": "backends",
    "passes": "transforms", "import_official": "transforms", "scale": "transforms",
    "report": "reports", "plan": "planning",
    "val": "evaluate", "detect": "evaluate",
    "train": "training",
}


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'yolov7c.api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
