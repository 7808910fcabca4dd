"""Apache TVM 0.27 (Relax) backend: compile, tune (MetaSchedule), load and run.

Every TVM-version-specific call of the project lives in this subpackage. Importing it does
not import TVM; each function does on first use, so the rest of yolov7c works without TVM.

- ``compile_model(model, target, img, out, db_dir=None)``  → library ``out`` + ``out.json``
- ``compile_onnx(path, target, out, img=None, db_dir=None)`` → the same from an ONNX file
- ``tune(model, target, img, db_dir, trials, rpc=None)``    → resumable MetaSchedule database
- ``load(path)``                                             → ``Runner``: ``runner(x) -> [np]``
- ``targets.resolve(name)``                                  → named targets

Modules: ``targets`` (named targets, CPU identity), ``frontend`` (torch/ONNX → Relax),
``pipeline`` (pass lists shared by tuning and building), ``rewrites`` (graph rewrites),
``winograd`` (3×3 convolutions as Winograd kernels), ``seeds`` (first candidates),
``database`` (open, validate,
lock, pack), ``search`` (dedup search, task scheduling, cost model), ``tuning`` (driver),
``compile``, ``runtime``, ``rpc``.
"""
from __future__ import annotations

from typing import Any


def compile_model(*args: Any, **kwargs: Any):
    from .compile import compile_model as f
    return f(*args, **kwargs)


def compile_onnx(*args: Any, **kwargs: Any):
    from .compile import compile_onnx as f
    return f(*args, **kwargs)


def tune(*args: Any, **kwargs: Any):
    from .tuning import tune as f
    return f(*args, **kwargs)


def load(*args: Any, **kwargs: Any):
    from .runtime import load as f
    return f(*args, **kwargs)


__all__ = ["compile_model", "compile_onnx", "load", "tune"]
