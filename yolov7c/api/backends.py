"""Backend verbs as functions: ``export`` (ONNX), ``compile`` / ``tune`` (TVM), ``bench``.

Each resolves the model source (any source, one weights rule), checks its arguments here at
the boundary (errors name the argument), runs the verified deploy pipeline unless told not
to, and hands the eval-mode module to a backend.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import UserError
from .args import (DEFAULT_TRIALS, fraction, image_size, output_dir, output_path,
                   positive_float, positive_int)
from .models import deploy as deploy_model
from .models import model_name, resolve

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger("yolov7c")


def _module(source: Any, nc: int | None, seed: int, deploy: bool,
            img: int | None) -> tuple[nn.Module, int]:
    """The resolved model (deploy form unless told not to) and its checked image size: the
    size is checked before the deploy pipeline runs."""
    model = resolve(source, nc=nc, seed=seed, img=img)
    img = image_size(model, img)
    return (deploy_model(model, seed=seed) if deploy else model), img


def export(source: Any, out: str | os.PathLike, *, img: int | None = None, nc: int | None = None,
           seed: int = 0, deploy: bool = True, dynamic_batch: bool = False, nms: bool = False,
           iou: float = 0.45, score: float = 0.25, max_det: int = 100,
           opset: int | None = None) -> dict[str, Any]:
    """Export ``source`` (deploy form by default) to an ONNX file ``out``; returns facts."""
    from ..backends import onnx as bx
    out = output_path(out)
    if nms:
        fraction(iou, "iou")
        fraction(score, "score")
        positive_int(max_det, "max_det")
    opset = bx.OPSET if opset is None else opset
    top = bx.max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not bx.OPSET <= opset <= top:
        raise UserError(f"opset {opset!r}: use an ONNX opset from {bx.OPSET} to {top}",
                        arg="opset")
    model, img = _module(source, nc, seed, deploy, img)
    log.info("[export] %s at %d → %s", model_name(source), img, out)
    path = bx.export_onnx(model, img, out, dynamic_batch=dynamic_batch, nms=nms, opset=opset,
                          iou_thr=iou, score_thr=score, max_det=max_det)
    return {"model": model_name(source), "format": "onnx", "out": str(path), "img": img,
            "opset": opset, "dynamic_batch": dynamic_batch, "nms": nms,
            "bytes": path.stat().st_size}


def _check_target(target: str, arch: str | None, mcpu: str | None, toolchain: bool,
                  db: str | os.PathLike | None = None, db_any_cpu: bool = False) -> None:
    """A bad target, a missing toolchain or a tuning database that cannot serve this CPU
    fails before the (slow) model build."""
    from ..backends.tvm import targets
    spec = targets.resolve(target, arch=arch, mcpu=mcpu)
    if toolchain:
        targets.check_toolchain(spec)
    if db is not None:
        from ..backends.tvm.compile import check_database
        check_database(db, spec, db_any_cpu)


def compile(source: Any, out: str | os.PathLike, *, target: str = "llvm",  # noqa: A001
            img: int | None = None, nc: int | None = None, seed: int = 0, deploy: bool = True,
            db: str | os.PathLike | None = None, arch: str | None = None,
            mcpu: str | None = None, frontend: str = "torch",
            nvcc: bool | None = None, db_any_cpu: bool = False) -> dict[str, Any]:
    """Compile ``source`` with TVM for ``target``; writes the library ``out`` (+ ``.json``).

    An ``.onnx`` file as ``source`` goes through TVM's ONNX frontend (``frontend="onnx"``).
    ``db``: a tuning database (folder or packed ``.tar.gz``), checked against this CPU
    before anything is built: one tuned for another vector class (avx512 vs avx2 ...) is
    refused unless ``db_any_cpu``. Without ``db`` the build uses default schedules and
    says, in a note, how far from tuned it likely is and how to tune."""
    from ..backends import tvm as btvm
    out = output_path(out)
    if frontend not in ("torch", "onnx"):
        raise UserError(f"frontend {frontend!r}: use torch or onnx", arg="frontend")
    _check_target(target, arch, mcpu, toolchain=True, db=db, db_any_cpu=db_any_cpu)
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".onnx":
        return _compile_onnx_file(Path(source), out, target=target, img=img, db=db, arch=arch,
                                  mcpu=mcpu, nvcc=nvcc, db_any_cpu=db_any_cpu)
    model, img = _module(source, nc, seed, deploy, img)
    log.info("[compile] %s at %d for %s → %s", model_name(source), img, target, out)
    meta = btvm.compile_model(model, target, img, out, arch=arch, mcpu=mcpu, db_dir=db,
                              frontend=frontend, nvcc=nvcc, verbose=False,
                              db_any_cpu=db_any_cpu, name=_cli_model_name(source))
    return {"model": model_name(source), **asdict(meta)}


def _cli_model_name(source: Any) -> str:
    """The model as a command line names it (for the untuned build's tune hint)."""
    return str(source) if isinstance(source, (str, os.PathLike)) else "MODEL"


def _compile_onnx_file(path: Path, out: Path, *, target: str, img: int | None,
                       db: str | os.PathLike | None, arch: str | None, mcpu: str | None,
                       nvcc: bool | None, db_any_cpu: bool = False) -> dict[str, Any]:
    """An ONNX file goes to TVM's ONNX frontend (the file's input shape; ``img`` fills a
    dynamic height/width)."""
    from ..backends import tvm as btvm
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    if img is not None:
        positive_int(img, "img")
    meta = btvm.compile_onnx(path, target, out, img=img, db_dir=db, arch=arch, mcpu=mcpu,
                             nvcc=nvcc, verbose=False, db_any_cpu=db_any_cpu)
    return {"model": path.name, **asdict(meta)}


def tune(source: Any, db: str | os.PathLike, *, target: str = "llvm", img: int | None = None,
         trials: int = DEFAULT_TRIALS, nc: int | None = None, seed: int = 0,
         deploy: bool = True, rpc: str | None = None, op_names: Sequence[str] | None = None,
         per_round: int = 16, arch: str | None = None, mcpu: str | None = None,
         max_seconds: float | None = None, pack: str | os.PathLike | None = None
         ) -> dict[str, Any]:
    """MetaSchedule tuning of ``source`` into the resumable database folder ``db``;
    ``pack``: also write the best record per kernel as one small ``.tar.gz`` (what
    ``compile``/``bench --db`` read, to ship beside a model)."""
    from ..backends import tvm as btvm
    positive_int(trials, "trials")
    positive_int(per_round, "per_round")
    if pack is not None and not str(pack).endswith(".tar.gz"):
        raise UserError(f"pack {pack}: name the packed database *.tar.gz", arg="pack")
    if max_seconds is not None:
        positive_float(max_seconds, "max_seconds")
    dbp = output_dir(db, "db")
    _check_target(target, arch, mcpu, toolchain=False)
    if rpc:
        from ..backends.tvm import rpc as rpcmod
        rpcmod.check(rpcmod.parse(rpc))
    model, img = _module(source, nc, seed, deploy, img)
    log.info("[tune] %s at %d for %s into %s (%d trials)", model_name(source), img, target,
             dbp, trials)
    rep = btvm.tune(model, target, img, dbp, trials, rpc=rpc, op_names=op_names,
                    per_round=per_round, arch=arch, mcpu=mcpu, seed=seed,
                    max_seconds=max_seconds)
    res = {"model": model_name(source), "img": img, **asdict(rep)}
    if pack is not None:
        from ..backends.tvm.database import pack_database
        res["packed"] = {"path": str(pack), "records": pack_database(dbp, pack)}
    return res


def bench(source: Any = "yolov7-tiny", *, img: int | None = None, nc: int | None = None,
          seed: int = 0, backends: Sequence[str] | None = None, threads: int | None = None,
          repeat: int = 20, warmup: int = 3, db: str | os.PathLike | None = None,
          tune_trials: int = 0, deploy: bool = True, slow_s: float = 2.0,
          out: str | os.PathLike | None = None, db_any_cpu: bool = False) -> dict[str, Any]:
    """Side-by-side latency of the backends on one model (same weights everywhere); with
    ``out``, the result is written (merged into an existing result file).

    ``backends`` default: every backend, the optional peers (torch-compile, openvino) where
    available. A ``db`` that is missing (and ``tune_trials`` 0) or tuned for another CPU
    class (unless ``db_any_cpu``) is refused at once, before anything is measured."""
    from ..backends import bench as b
    from ..ir.analysis import analyze
    from ..passes.verify import ir_graph
    names = b.check_backends(list(backends) if backends is not None else b.default_backends())
    positive_int(repeat, "repeat")
    positive_int(warmup, "warmup", minimum=0)
    positive_int(tune_trials, "tune_trials", minimum=0)
    positive_float(slow_s, "slow_s")
    if threads is not None:
        positive_int(threads, "threads")
    if out is not None:
        out = output_path(out)
        if out.is_file():
            b.read_json(out)  # refuse a foreign file before the long run, not after
    if db is not None:
        b.check_db(db, tune_trials, names, db_any_cpu)   # at once, not after the other rows
    from ..backends.tvm.targets import physical_cores
    threads = threads or physical_cores()
    train = resolve(source, nc=nc, seed=seed, img=img)
    img = image_size(train, img)
    # the deploy model carries the same weights: derived from ``train``, never rebuilt
    dep = deploy_model(train, seed=seed) if deploy else train
    g = ir_graph(train)
    flops = float(analyze(g, img).flops("official")) if g is not None else None
    res = b.measure(train, dep, img, model=model_name(source), backends=names, threads=threads,
                    repeat=repeat, warmup=warmup, db=db, tune_trials=tune_trials, flops=flops,
                    slow_s=slow_s, db_any_cpu=db_any_cpu)
    if out is not None:
        b.write_json(res, out)
        res["out"] = str(out)
    return res


__all__ = ["DEFAULT_TRIALS", "bench", "compile", "export", "tune"]
