"""Apache TVM 0.27 (Relax) backend: compile, tune (MetaSchedule), load and run.

Every TVM-version-specific call of the project lives in this subpackage. Importing it does
not import TVM (nor torch); each function does on first use, so the rest of yolov7c works
without TVM. The functions here have the signatures of the ones they call (a test keeps
them equal), so ``help`` and editors show the real parameters.

- ``compile_model(model, target, img, out, db_dir=None)``  → library ``out`` + ``out.json``
- ``compile_onnx(path, target, out, img=None, db_dir=None)`` → the same from an ONNX file
- ``tune(model, target, img, db_dir, trials, rpc=None)``    → resumable MetaSchedule database
- ``load(path)``                                             → ``Runner``: ``runner(x) -> [np]``
- ``targets.resolve(name)``                                  → named targets

Modules: ``targets`` (named targets, CPU identity), ``frontend`` (torch/ONNX → Relax),
``pipeline`` (the pass lists tuning and building share, run as one ``Sequential``),
``rewrites`` (graph rewrites, each a named module pass), ``winograd`` (3×3 convolutions as
Winograd kernels), ``seeds`` (first candidates), ``database`` (open, validate, lock, pack,
coverage), ``search`` (dedup search, task scheduling, cost model), ``tuning`` (driver),
``compile``, ``runtime``, ``rpc``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from torch import nn

    from .compile import CompileResult
    from .runtime import Runner
    from .tuning import TuneReport


def compile_model(model: nn.Module, target: str, img: int | Sequence[int],
                  out: str | os.PathLike, *, arch: str | None = None, mcpu: str | None = None,
                  db_dir: str | os.PathLike | None = None, raw: bool = False,
                  frontend: str = "torch", nvcc: bool | None = None,
                  verbose: bool = True, db_any_cpu: bool = False,
                  name: str = "MODEL", pipeline: str | None = None) -> CompileResult:
    """:func:`.compile.compile_model`: ``model`` compiled for ``target`` into ``out``."""
    from .compile import compile_model as f
    return f(model, target, img, out, arch=arch, mcpu=mcpu, db_dir=db_dir, raw=raw,
             frontend=frontend, nvcc=nvcc, verbose=verbose, db_any_cpu=db_any_cpu, name=name,
             pipeline=pipeline)


def compile_onnx(path: str | os.PathLike, target: str, out: str | os.PathLike, *,
                 img: int | Sequence[int] | None = None, arch: str | None = None,
                 mcpu: str | None = None, db_dir: str | os.PathLike | None = None,
                 nvcc: bool | None = None, verbose: bool = True,
                 db_any_cpu: bool = False) -> CompileResult:
    """:func:`.compile.compile_onnx`: an ONNX file compiled for ``target`` into ``out``."""
    from .compile import compile_onnx as f
    return f(path, target, out, img=img, arch=arch, mcpu=mcpu, db_dir=db_dir, nvcc=nvcc,
             verbose=verbose, db_any_cpu=db_any_cpu)


def tune(model: nn.Module, target: str, img: int | Sequence[int], db_dir: str | os.PathLike,
         trials: int, *, rpc: str | None = None, op_names: Sequence[str] | None = None,
         per_round: int = 16, arch: str | None = None, mcpu: str | None = None,
         frontend: str = "torch", seed: int = 0, max_seconds: float | None = None,
         cost_model: str = "xgb", progress: bool = True, pipeline: str | None = None,
         schedule: str = "weighted", builder: str = "inprocess",
         verbose_tvm: bool = False) -> TuneReport:
    """:func:`.tuning.tune`: ``model``'s kernels tuned into ``db_dir`` (resumable)."""
    from .tuning import tune as f
    return f(model, target, img, db_dir, trials, rpc=rpc, op_names=op_names,
             per_round=per_round, arch=arch, mcpu=mcpu, frontend=frontend, seed=seed,
             max_seconds=max_seconds, cost_model=cost_model, progress=progress,
             pipeline=pipeline, schedule=schedule, builder=builder, verbose_tvm=verbose_tvm)


def load(path: str | os.PathLike, device: str | None = None,
         threads: int | None = None) -> Runner:
    """:func:`.runtime.load`: a compiled library, ready to run on its device."""
    from .runtime import load as f
    return f(path, device, threads)


__all__ = ["compile_model", "compile_onnx", "load", "tune"]
