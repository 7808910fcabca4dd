"""Compile a model for a named target and export a shared library, atomically.

The library is written next to a small JSON sidecar (``<out>.json``: target, input shape,
output names) that :mod:`.runtime` reads to run it. Both appear only when everything
succeeded. Untuned CPU builds use the target's default Relax pipeline (fused, but with no
loop schedules: ~100x slower than onnxruntime here); pass a tuning database for speed.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from torch import nn

from ...errors import UserError
from ...io_util import atomic_path
from ..onnx import check_img_size, output_names
from . import targets as T
from .frontend import to_relax


@dataclass
class CompileResult:
    path: str
    target: str
    target_json: str
    input_shape: list[int]
    outputs: list[str]
    tuned_records: int
    seconds: dict[str, float]
    notes: list[str]


def build(mod, spec: T.TargetSpec, db_dir: str | os.PathLike | None = None):
    """Relax IRModule → VMExecutable; with ``db_dir``, tuned schedules from that database."""
    import tvm
    from tvm import relax

    target = spec.tvm_target()
    if db_dir is not None:
        from tvm.s_tir import meta_schedule as ms
        from .tuning import open_database
        db = open_database(db_dir)
        return ms.relax_integration.compile_relax(db, mod, target, params=None)
    return tvm.compile(mod, target, relax_pipeline=relax.get_default_pipeline(target))


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
    with target:  # compile_cuda reads the arch from the current target
        fatbin = nvcc.compile_cuda(src, target_format="fatbin", arch=spec.target["arch"],
                                   compiler="nvcc")
    return len(fatbin)


def compile_model(model: nn.Module, target: str, img: int | Sequence[int],
                  out: str | os.PathLike, *, arch: str | None = None, mcpu: str | None = None,
                  db_dir: str | os.PathLike | None = None, raw: bool = False,
                  frontend: str = "torch", nvcc: bool | None = None,
                  verbose: bool = True) -> CompileResult:
    """Compile ``model`` (eval/deploy form) for ``target`` at ``img`` and write ``out``.

    ``nvcc`` (default: when nvcc is on PATH) compiles CUDA kernels ahead of time as a check.
    Raises UserError for an unknown target, missing cross compiler, bad image size or a
    missing database; nothing is written unless the whole build succeeded.
    """
    spec = T.resolve(target, arch=arch, mcpu=mcpu)
    T.check_toolchain(spec)
    h, w = check_img_size(model, img)
    from .tuning import is_packed
    if db_dir is not None and not (is_packed(db_dir) or
                                   Path(db_dir, "database_workload.json").exists()):
        raise UserError(f"--db {db_dir}: no tuning database there; run `yolov7c tune` first "
                        "or drop --db")
    out = Path(out)
    if out.suffix not in (".so", ".tar"):
        raise UserError(f"--out {out}: library name must end in .so (or .tar)")
    notes: list[str] = []
    secs: dict[str, float] = {}
    log = (lambda s: print(f"[compile] {s}", file=sys.stderr, flush=True)) if verbose \
        else (lambda s: None)

    t0 = time.perf_counter()
    log(f"import {type(model).__name__} at {h}x{w} via {frontend}")
    mod = to_relax(model, (h, w), raw=raw, frontend=frontend)
    secs["import"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"build for {spec.name}: {json.dumps(spec.target)}" + (" (tuned)" if db_dir else ""))
    ex = build(mod, spec, db_dir)
    secs["build"] = time.perf_counter() - t0

    if spec.name == "cuda":
        src = cuda_source(ex)
        notes.append(f"CUDA source with {src.count('__global__')} kernels, JIT-compiled on the "
                     "GPU host at load (needs TVM with CUDA + NVRTC or nvcc there)")
        if nvcc is None:
            nvcc = shutil.which("nvcc") is not None
        if nvcc:
            t0 = time.perf_counter()
            log(f"nvcc check of the CUDA kernels for {spec.target['arch']}")
            size = nvcc_check(src, spec)
            secs["nvcc"] = time.perf_counter() - t0
            notes.append(f"nvcc compiled the kernels for {spec.target['arch']} "
                         f"({size / 1e6:.2f} MB fatbin)")
    records = _count_records(db_dir) if db_dir else 0
    meta = CompileResult(str(out), spec.name, str(spec.tvm_target()), [1, 3, h, w],
                         output_names(model, raw), records, secs, notes)

    t0 = time.perf_counter()
    log(f"export {out}" + (f" with {spec.cross_cxx}" if spec.cross_cxx else ""))
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


def _count_records(db_dir: str | os.PathLike) -> int:
    from .tuning import is_packed, unpack_database
    if is_packed(db_dir):
        db_dir = unpack_database(db_dir)
    p = Path(db_dir, "database_tuning_record.json")
    return sum(1 for _ in p.open()) if p.exists() else 0
