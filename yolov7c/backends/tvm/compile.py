"""Compile a model for a named target and export a shared library, atomically.

The library is written next to a small JSON sidecar (``<out>.json``: target, input shape,
dtype and layout, output names, how much of it is tuned) that :mod:`.runtime` reads to run
it. Both appear only when everything succeeded.

An untuned CPU build uses the default CPU pipeline with default schedules for every kernel
(:func:`.pipeline.build`: each conv a register-blocked seed tiling for the target's vector
unit, the rest in parallel): on yolov7-tiny at 416 it ran at 1.1-2.1x onnxruntime's latency
(``benchmarks/tvm_untuned.py``, AVX2, loaded machine; before, without them, 26-36x), and it
says in one line how far from tuned it is likely to be and the command that tunes it. A tuning database is checked
against this CPU before anything is built (:func:`check_database`).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from ...errors import UserError, one_line
from ...io_util import atomic_path
from ..common import check_img_size, output_names
from . import database as dbm
from . import pipeline as pl
from . import targets as T
from .database import DbCoverage
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
    device: str = "cpu"         # the TVM device type it runs on (TargetSpec.device)


# How much faster a tuned CPU build of yolov7-tiny at 416 is than the untuned one, as
# measured (benchmarks/results/tvm_untuned_yolov7-tiny_416.json: untuned 1.1-2.1x
# onnxruntime on an AVX2 Zen 3, under load; tuned 0.93x onnxruntime on AVX-512 after 30
# min): the compile-time hint quotes it.
TUNED_SPEEDUP = "1.2-2x"
TUNE_MINUTES = "15-30"


def check_database(db_dir: str | os.PathLike, spec: T.TargetSpec,
                   any_cpu: bool = False) -> str | None:
    """Check a tuning database before any work: a missing, malformed (:func:`.database.
    validate`) or hostile one, or one of another vector class than the CPU ``spec`` builds
    for, is a one-line UserError (the latter naming the differing features and
    ``db_any_cpu``); returns a note when the CPUs differ within a class (None when alike or
    not a CPU target)."""
    if not dbm.exists(db_dir):
        raise UserError(f"db_dir {db_dir}: no tuning database there; tune into it first or "
                        "leave db_dir out", arg="db_dir")
    d = dbm.resolve_dir(db_dir)
    meta = dbm.read_meta(d)
    dbm.validate(d)     # every line, bounded: a broken file is refused here, not in TVM
    if spec.target.get("kind") != "llvm":
        return None
    return dbm.check_cpu(db_dir, meta, T.cpu_facts(spec.target), any_cpu)


def build(mod, spec: T.TargetSpec, db_dir: str | os.PathLike | None = None,
          default_schedules: bool = True, any_cpu: bool = False, pipeline: str | None = None,
          instruments: Sequence[Any] = ()) -> tuple[Any, DbCoverage]:
    """Relax IRModule → (VMExecutable, what the database brought: :class:`.database.
    DbCoverage`); with ``db_dir``, tuned schedules from that database (after
    :func:`check_database`). Without one, the target's default pipeline (or ``pipeline``:
    "zero" builds 3-4x faster and runs ~25x slower on CPU) with default schedules for every
    kernel (see the module doc). ``instruments``: TVM pass instruments for the build's
    ``PassContext`` (:func:`.pipeline.build`)."""
    target = spec.tvm_target()
    if db_dir is None:
        name = pl.check(pipeline) if pipeline else pl.default_for(spec.target.get("kind"))
        ex, seeded = pl.build(mod, target, name, default_schedules=default_schedules,
                              instruments=instruments)
        return ex, DbCoverage(pipeline=name, seeded=seeded)
    note = check_database(db_dir, spec, any_cpu)
    d = dbm.resolve_dir(db_dir)
    name = dbm.read_meta(d).get("pipeline", "zero")
    db = dbm.open_database(d)
    cov = dbm.coverage(mod, target, db, name)
    ex, seeded = pl.build(mod, target, name, db, default_schedules, instruments=instruments)
    return ex, replace(cov, seeded=seeded, cpu_note=note)


def untuned_hint(spec: T.TargetSpec, model: str, img: Sequence[int], seeded: int) -> str:
    """The one line an untuned CPU build prints: how far from tuned, and how to tune."""
    size = img[0] if img[0] == img[-1] else f"{img[0]},{img[-1]}"
    return (f"untuned: default schedules ({seeded} convs with seeded {spec.vector.isa} "
            f"tilings); a tuned build is likely {TUNED_SPEEDUP} faster here. Tune "
            f"({TUNE_MINUTES} min on 2 cores): yolov7c tune {model} --img {size} --db "
            f"tune_db, then add --db tune_db to this command")


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
                  verbose: bool = True, db_any_cpu: bool = False,
                  name: str = "MODEL", pipeline: str | None = None) -> CompileResult:
    """Compile ``model`` (eval/deploy form) for ``target`` at ``img`` and write ``out``.

    ``nvcc`` (default: when nvcc is on PATH) compiles CUDA kernels ahead of time as a check.
    Raises UserError for an unknown target, missing cross compiler, bad image size, a missing
    database or one tuned for another CPU class (``db_any_cpu``: use it anyway), before any
    work; nothing is written unless the build succeeded. ``name``: the model as the user
    named it, for the untuned build's hint. ``pipeline``: an untuned build's pipeline
    (default: the target's; "zero" is the quick build of a library run a few times).
    """
    spec, _ = _check(target, arch, mcpu, db_dir, out, db_any_cpu)
    h, w = check_img_size(model, img)
    say = log.info if verbose else log.debug
    t0 = time.perf_counter()
    say("[compile] import %s at %dx%d via %s", type(model).__name__, h, w, frontend)
    mod = to_relax(model, (h, w), raw=raw, frontend=frontend)
    secs = {"import": time.perf_counter() - t0}
    return _finish(mod, spec, [1, 3, h, w], output_names(model, raw), out, db_dir, nvcc, secs,
                   say, db_any_cpu, name, pipeline)


def compile_onnx(path: str | os.PathLike, target: str, out: str | os.PathLike, *,
                 img: int | Sequence[int] | None = None, arch: str | None = None,
                 mcpu: str | None = None, db_dir: str | os.PathLike | None = None,
                 nvcc: bool | None = None, verbose: bool = True,
                 db_any_cpu: bool = False) -> CompileResult:
    """Compile an ONNX file (TVM's ONNX frontend) for users who only have the ``.onnx``.

    The input shape is the file's; ``img`` fills dynamic height/width (or must agree with
    the static ones). Batch is 1 where the file leaves it dynamic."""
    spec, _ = _check(target, arch, mcpu, db_dir, out, db_any_cpu)
    say = log.info if verbose else log.debug
    t0 = time.perf_counter()
    shape, outputs, dynamic = onnx_input_shape(path, img)
    say("[compile] import %s at %s via onnx", Path(path).name, "x".join(map(str, shape)))
    mod = from_onnx_file(path, shape)
    secs = {"import": time.perf_counter() - t0}
    try:
        return _finish(mod, spec, list(shape), outputs, out, db_dir, nvcc, secs, say,
                       db_any_cpu, "MODEL")   # tune takes the model's source, not its .onnx
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - TVM's errors on shape-computing graphs
        if not dynamic:
            raise
        raise UserError(f"model {path}: TVM cannot build this ONNX graph with dynamic "
                        f"dimensions ({one_line(str(e).splitlines()[-1], 120)}); export it "
                        "with a static batch (no dynamic_batch)", arg="model") from None


def _check(target: str, arch: str | None, mcpu: str | None,
           db_dir: str | os.PathLike | None, out: str | os.PathLike,
           any_cpu: bool) -> tuple[T.TargetSpec, str | None]:
    """Everything that can be refused before the (slow) import and build."""
    spec = T.resolve(target, arch=arch, mcpu=mcpu)
    T.check_toolchain(spec)
    if Path(out).suffix not in (".so", ".tar"):
        raise UserError(f"out {out}: library name must end in .so (or .tar)", arg="out")
    note = check_database(db_dir, spec, any_cpu) if db_dir is not None else None
    return spec, note


def _finish(mod, spec: T.TargetSpec, shape: list[int], outputs: list[str],
            out: str | os.PathLike, db_dir: str | os.PathLike | None, nvcc: bool | None,
            secs: dict[str, float], say: Callable[..., None], any_cpu: bool = False,
            name: str = "MODEL", pipeline: str | None = None) -> CompileResult:
    """Build ``mod`` (tuned from ``db_dir`` if given), export ``out`` and its sidecar."""
    out = Path(out)
    notes: list[str] = []
    t0 = time.perf_counter()
    say("[compile] build for %s: %s", spec.name, json.dumps(spec.target))
    ex, facts = build(mod, spec, db_dir, any_cpu=any_cpu, pipeline=pipeline)
    secs["build"] = time.perf_counter() - t0
    if db_dir is None and spec.target.get("kind") == "llvm" and spec.runs_here \
            and pl.get(facts.pipeline).seeds:
        msg = untuned_hint(spec, name, shape[2:], facts.seeded)
        say("[compile] %s", msg)       # the CLI prints the notes (verbose=False here)
        notes.append(msg)
    if facts.cpu_note:
        say("[compile] %s", facts.cpu_note)
        notes.append(facts.cpu_note)
    if db_dir is not None:
        if facts.tuned == 0:
            msg = (f"untuned: the database covers none of the {facts.tasks} tasks (it was "
                   "tuned for other shapes or models); tune this model at this size first")
            log.warning("[compile] %s", msg)
        else:
            msg = (f"tuned: the database covers {facts.tuned} of {facts.tasks} tasks "
                   f"({facts.records} records, {facts.pipeline} pipeline)")
            if facts.tuned < facts.tasks:
                msg += (f"; {facts.tasks - facts.tuned} tasks use the untuned default schedule"
                        f" ({facts.seeded} convs seeded)")
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
                         facts.pipeline, device=spec.device)

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
