"""Compile a model for a named target and export a shared library, atomically.

The library is written next to a small JSON sidecar (``<out>.json``: target, input shape,
dtype and layout, output names, how much of it is tuned) that :mod:`.runtime` reads to run
it. Both appear only when everything succeeded. Untuned CPU builds use TVM's default fusion
with the default schedule of :mod:`.fallback` (outer loops in parallel, no search: still
far slower than onnxruntime); pass a tuning database for speed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from torch import nn

from ...errors import UserError, one_line
from ...io_util import atomic_path
from ..common import check_img_size, output_names
from . import database as dbm
from . import pipeline as pl
from . import targets as T
from .frontend import from_onnx_file, onnx_input_shape, to_relax

log = logging.getLogger("yolov7c.tvm")


@dataclass
class CompileResult:
    path: str
    target: str
    target_json: str
    input_shape: list[int]
    outputs: list[str]
    tuned_records: int          # database records for this model's tasks (0: untuned)
    seconds: dict[str, float]
    notes: list[str]
    tasks: int = 0              # kernels (tuning tasks) of the model; 0 when no database
    tasks_tuned: int = 0        # of them, how many the database has a schedule for
    pipeline: str = "default"
    dtype: str = "float32"
    layout: str = "NCHW"


@dataclass
class DbCoverage:
    """What a database brings to one build: the model's kernels, how many of them have a
    record, the records matched, and the pipeline the build used (the database's)."""
    tasks: int = 0
    tuned: int = 0
    records: int = 0
    pipeline: str = "default"


def build(mod, spec: T.TargetSpec, db_dir: str | os.PathLike | None = None,
          facts: DbCoverage | None = None, default_schedules: bool = True):
    """Relax IRModule → VMExecutable; with ``db_dir``, tuned schedules from that database
    (after checking it was tuned for this CPU; ``facts`` receives its coverage)."""
    target = spec.tvm_target()
    if db_dir is None:   # TVM's default fusion, with the default schedules of pl.build
        return pl.build(mod, target, "zero", default_schedules=default_schedules)
    from .tuning import coverage
    d = dbm.resolve_dir(db_dir)
    meta = dbm.read_meta(d)
    if spec.target.get("kind") == "llvm":
        dbm.check_cpu(db_dir, meta, spec.target, T.cpu_identity(spec.target),
                      explicit_mcpu=spec.target.get("mcpu") != T.host_cpu()["mcpu"])
    pipeline = meta.get("pipeline", "zero")
    db = dbm.open_database(d)
    f = facts if facts is not None else DbCoverage()
    f.tuned, f.tasks, f.records = coverage(mod, spec, db, pipeline)
    f.pipeline = pipeline
    return pl.build(mod, target, pipeline, db, default_schedules)


def cuda_source(ex) -> str:
    """The CUDA C source the library carries (JIT-compiled on the GPU host at load)."""
    def walk(m):
        if m.kind == "cuda":
            return m.inspect_source("")
        for c in m.imports:
            s = walk(c)
            if s:
                return s
        return ""
    return walk(ex.mod)


def nvcc_check(src: str, spec: T.TargetSpec) -> int:
    """Compile the CUDA source with nvcc for the target arch here; returns fatbin bytes.

    The library itself keeps the source (TVM's loader JIT-compiles it on the GPU host), so
    this proves ahead of time that the code compiles for that architecture.
    """
    from tvm.support import nvcc
    target = spec.tvm_target()
    try:
        with target:  # compile_cuda reads the arch from the current target
            fatbin = nvcc.compile_cuda(src, target_format="fatbin", arch=spec.target["arch"],
                                       compiler="nvcc")
    except Exception as e:  # noqa: BLE001 - nvcc's output can be tens of thousands of lines
        first = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e))
        raise UserError(f"arch {spec.target['arch']}: nvcc could not compile the kernels "
                        f"({one_line(first, 160)}); pick an arch your nvcc supports or pass "
                        "nvcc=False", arg="arch") from None
    return len(fatbin)


def compile_model(model: nn.Module, target: str, img: int | Sequence[int],
                  out: str | os.PathLike, *, arch: str | None = None, mcpu: str | None = None,
                  db_dir: str | os.PathLike | None = None, raw: bool = False,
                  frontend: str = "torch", nvcc: bool | None = None,
                  verbose: bool = True) -> CompileResult:
    """Compile ``model`` (eval/deploy form) for ``target`` at ``img`` and write ``out``.

    ``nvcc`` (default: when nvcc is on PATH) compiles CUDA kernels ahead of time as a check.
    Raises UserError for an unknown target, missing cross compiler, bad image size, a missing
    database or one tuned for another CPU; nothing is written unless the build succeeded.
    """
    spec = _check(target, arch, mcpu, db_dir, out)
    h, w = check_img_size(model, img)
    say = log.info if verbose else log.debug
    t0 = time.perf_counter()
    say("[compile] import %s at %dx%d via %s", type(model).__name__, h, w, frontend)
    mod = to_relax(model, (h, w), raw=raw, frontend=frontend)
    secs = {"import": time.perf_counter() - t0}
    return _finish(mod, spec, [1, 3, h, w], output_names(model, raw), out, db_dir, nvcc, secs,
                   say)


def compile_onnx(path: str | os.PathLike, target: str, out: str | os.PathLike, *,
                 img: int | Sequence[int] | None = None, arch: str | None = None,
                 mcpu: str | None = None, db_dir: str | os.PathLike | None = None,
                 nvcc: bool | None = None, verbose: bool = True) -> CompileResult:
    """Compile an ONNX file (TVM's ONNX frontend) for users who only have the ``.onnx``.

    The input shape is the file's; ``img`` fills dynamic height/width (or must agree with
    the static ones). Batch is 1 where the file leaves it dynamic."""
    spec = _check(target, arch, mcpu, db_dir, out)
    say = log.info if verbose else log.debug
    t0 = time.perf_counter()
    shape, outputs, dynamic = onnx_input_shape(path, img)
    say("[compile] import %s at %s via onnx", Path(path).name, "x".join(map(str, shape)))
    mod = from_onnx_file(path, shape)
    secs = {"import": time.perf_counter() - t0}
    try:
        return _finish(mod, spec, list(shape), outputs, out, db_dir, nvcc, secs, say)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - TVM's errors on shape-computing graphs
        if not dynamic:
            raise
        raise UserError(f"model {path}: TVM cannot build this ONNX graph with dynamic "
                        f"dimensions ({one_line(str(e).splitlines()[-1], 120)}); export it "
                        "with a static batch (no dynamic_batch)", arg="model") from None


def _check(target: str, arch: str | None, mcpu: str | None,
           db_dir: str | os.PathLike | None, out: str | os.PathLike) -> T.TargetSpec:
    spec = T.resolve(target, arch=arch, mcpu=mcpu)
    T.check_toolchain(spec)
    if db_dir is not None and not dbm.exists(db_dir):
        raise UserError(f"db_dir {db_dir}: no tuning database there; tune into it first or "
                        "leave db_dir out", arg="db_dir")
    if Path(out).suffix not in (".so", ".tar"):
        raise UserError(f"out {out}: library name must end in .so (or .tar)", arg="out")
    return spec


def _finish(mod, spec: T.TargetSpec, shape: list[int], outputs: list[str],
            out: str | os.PathLike, db_dir: str | os.PathLike | None, nvcc: bool | None,
            secs: dict[str, float], say: Callable[..., None]) -> CompileResult:
    """Build ``mod`` (tuned from ``db_dir`` if given), export ``out`` and its sidecar."""
    out = Path(out)
    notes: list[str] = []
    t0 = time.perf_counter()
    say("[compile] build for %s: %s", spec.name, json.dumps(spec.target))
    facts = DbCoverage()
    ex = build(mod, spec, db_dir, facts)
    secs["build"] = time.perf_counter() - t0
    if db_dir is not None:
        if facts.tuned == 0:
            msg = (f"untuned: the database covers none of the {facts.tasks} tasks (it was "
                   "tuned for other shapes or models); tune this model at this size first")
            log.warning("[compile] %s", msg)
        else:
            msg = (f"tuned: the database covers {facts.tuned} of {facts.tasks} tasks "
                   f"({facts.records} records, {facts.pipeline} pipeline)")
            if facts.tuned < facts.tasks:
                msg += f"; {facts.tasks - facts.tuned} tasks use the untuned default schedule"
            say("[compile] %s", msg)
        notes.append(msg)

    if spec.name == "cuda":
        src = cuda_source(ex)
        notes.append(f"CUDA source with {src.count('__global__')} kernels, JIT-compiled on the "
                     "GPU host at load (needs TVM with CUDA + NVRTC or nvcc there)")
        if nvcc is None:
            nvcc = shutil.which("nvcc") is not None
        if nvcc:
            t0 = time.perf_counter()
            say("[compile] nvcc check of the CUDA kernels for %s", spec.target["arch"])
            size = nvcc_check(src, spec)
            secs["nvcc"] = time.perf_counter() - t0
            notes.append(f"nvcc compiled the kernels for {spec.target['arch']} "
                         f"({size / 1e6:.2f} MB fatbin)")
    meta = CompileResult(str(out), spec.name, str(spec.tvm_target()), shape, outputs,
                         facts.records, secs, notes, facts.tasks, facts.tuned,
                         facts.pipeline if db_dir is not None else "default")

    t0 = time.perf_counter()
    say("[compile] export %s%s", out, f" with {spec.cross_cxx}" if spec.cross_cxx else "")
    side = Path(str(out) + ".json")
    with atomic_path(out) as tmp, atomic_path(side, ".json") as tmp_side:
        fcompile = spec.fcompile()
        if out.suffix == ".tar":
            from tvm.support import tar
            fcompile = tar.tar
        if fcompile is not None:
            ex.export_library(str(tmp), fcompile=fcompile)
        else:
            ex.export_library(str(tmp))
        secs["export"] = time.perf_counter() - t0
        Path(tmp_side).write_text(json.dumps(asdict(meta), indent=1))
    return meta
