"""Side-by-side CPU latency of the backends, in one process, same input, same threads.

This module measures modules it is given; it never resolves a model (that is the API's
``yolov7c.api.bench``). Backends: torch-train (eval-mode training graph), torch-deploy
(deploy pass pipeline), torch-compile (``torch.compile`` of the deploy graph, inductor),
onnxruntime (ORT_ENABLE_ALL), openvino (the exported ONNX on OpenVINO's CPU plugin, when
the ``openvino`` package is importable: not a dependency), tvm (untuned build: default
schedules), tvm-tuned (MetaSchedule database). torch-compile and openvino are the peers a
CPU user would pick instead: optional rows, measured when available (a requested one that
is not gets a row saying why). Each: warm-up, then ``repeat`` single-image runs timed one by one;
we report the median and p10/p90, the max error against torch-deploy, and the floor = model
FLOPs / measured peak (a fp32 matmul on the same threads), i.e. the latency at 100 % of the
achievable peak. Untuned TVM is ~100x slower here, so backends slower than ``slow_s`` per
run get fewer repeats (the count is reported).

One result format (``FORMAT``), written by ``write_json`` and read by ``latencies`` (the zoo
report's latency axis): ``{"format", "machine", "versions", "results": [row, ...]}``, one row
per (model, img, backend); writing into an existing result file merges by that key, so one
file can collect several models.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence


from ..errors import UserError, one_line

if TYPE_CHECKING:
    from torch import nn
from ..io_util import atomic_path

FORMAT = "yolov7c.bench/1"
BACKENDS = ("torch-train", "torch-deploy", "torch-compile", "onnxruntime", "openvino", "tvm",
            "tvm-tuned")
PEERS = ("torch-compile", "openvino")   # optional rows: in the default list when available
DEFAULT_BACKENDS = BACKENDS


def peer_available(name: str) -> str | None:
    """None if the peer backend ``name`` can run here, else why not (one line)."""
    import importlib.util
    import shutil
    if name == "openvino":
        if importlib.util.find_spec("openvino") is None:
            return "openvino not installed (pip install openvino; not a yolov7c dependency)"
    elif name == "torch-compile":
        if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return "torch.compile (inductor) needs a C++ compiler on PATH"
    return None


def default_backends() -> list[str]:
    """Every backend, the optional peers only where available."""
    return [b for b in BACKENDS if b not in PEERS or peer_available(b) is None]
log = logging.getLogger("yolov7c.bench")


def cpu_name() -> str:
    """The CPU's model name, for the machine line of benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_peak_gflops(threads: int, n: int = 1536, seconds: float = 1.5) -> float:
    """Achievable fp32 peak: best GFLOP/s of an n×n matmul (torch/MKL-DNN) on ``threads``."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def time_fn(fn: Callable[[], Any], repeat: int, warmup: int, slow_s: float) -> dict[str, Any]:
    """Warm up, then time ``repeat`` calls one by one (fewer if one call exceeds slow_s)."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        if time.perf_counter() - t0 > slow_s:
            break
    ts: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
        if len(ts) >= 5 and min(ts) / 1e3 > slow_s:   # only for very slow backends
            break
    ts_sorted = sorted(ts)
    q = lambda p: ts_sorted[min(len(ts) - 1, int(p * len(ts)))]  # noqa: E731
    return {"median_ms": statistics.median(ts), "p10_ms": q(0.1), "p90_ms": q(0.9),
            "n": len(ts)}


def alternating_ms(fns: dict[str, Callable[[], Any]], rounds: int = 4,
                   block: int = 5) -> dict[str, float]:
    """Median ms per callable over ``rounds`` alternating blocks of ``block`` timed calls,
    each block after a 0.2 s pause and two untimed calls: every callable sees the same
    machine load. Not call by call: onnxruntime's and TVM's thread pools spin for a while
    after a call, and the other runtime's next call runs against the spinning threads
    (timed call by call, a TVM library measured 63.8 ms instead of 28.8 ms)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, rounds)):
        for k, fn in fns.items():
            time.sleep(0.2)
            fn()
            fn()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _max_err(ref, got) -> float:
    import numpy as np
    r, g = np.asarray(ref), np.asarray(got)
    return float(np.abs(r - g).max() / max(np.abs(r).max(), 1e-12))


def check_backends(backends: Sequence[str]) -> list[str]:
    """The backend names, validated (argument ``backends``)."""
    names = [b for b in backends if b]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise UserError(f"backends {','.join(unknown) or '(none)'}: unknown; use any of "
                        f"{','.join(BACKENDS)}", arg="backends")
    return names


def check_db(db: str | os.PathLike | None, tune_trials: int, backends: Sequence[str],
             any_cpu: bool = False) -> str | None:
    """Refuse, at once, a ``db`` that tvm-tuned cannot use: a missing path (unless
    ``tune_trials`` will tune into it) or a database of another CPU class (one line with
    the differing features and the flag); returns a note for a usable one of another CPU
    model (None otherwise)."""
    if db is None or "tvm-tuned" not in backends:
        return None
    p = Path(db)
    from .tvm import database as dbm
    if not dbm.exists(p):
        if tune_trials and not dbm.is_packed(p) and not (p.exists() and not p.is_dir()):
            return None
        what = "no such file or folder" if not os.path.lexists(p) else \
            "not a tuning database (no database_workload.json; a packed one ends in .tar.gz)"
        raise UserError(f"db {p}: {what}; give a folder written by `yolov7c tune` or a "
                        ".tar.gz it packed (or --tune-trials N to tune into a new folder)",
                        arg="db")
    from .tvm import compile as tc
    from .tvm import targets as T
    return tc.check_database(p, T.resolve("llvm"), any_cpu)


def measure(train: nn.Module, dep: nn.Module, img: int, *, model: str = "model",
            backends: Sequence[str] = DEFAULT_BACKENDS, threads: int = 1, repeat: int = 20,
            warmup: int = 3, db: str | os.PathLike | None = None, tune_trials: int = 0,
            flops: float | None = None, slow_s: float = 2.0,
            db_any_cpu: bool = False) -> dict[str, Any]:
    """Benchmark ``backends`` on the two given modules (training graph in eval mode and its
    deploy module, same weights) at ``img``; returns the result dict (``FORMAT``). A ``db``
    tvm-tuned cannot use is refused before anything runs (:func:`check_db`)."""
    os.environ["TVM_NUM_THREADS"] = str(threads)   # before TVM's thread pool starts
    backends = check_backends(backends)
    db_note = check_db(db, tune_trials, backends, db_any_cpu)
    import torch

    from . import onnx as bx
    from .common import Outputs, example_input

    torch.set_num_threads(threads)
    x = example_input(dep, img, seed=0)
    xn = x.numpy()
    peak = measure_peak_gflops(threads)
    load0 = os.getloadavg()[0]
    with torch.no_grad():
        ref = Outputs(dep)(x)[0].numpy()

    rows: list[dict[str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="yolov7c-bench-")
    common = {"model": model, "img": img, "threads": threads}

    def add(name: str, fn: Callable[[], Any] | None, note: str = "", setup_s: float = 0.0):
        if fn is None:
            rows.append({**common, "backend": name, "skipped": note})
            log.info("[bench] %s: skipped (%s)", name, note)
            return
        err = _max_err(ref, fn())
        log.info("[bench] %s: timing ...", name)
        r = {**common, "backend": name, **time_fn(fn, repeat, warmup, slow_s),
             "max_rel_err": err, "setup_s": round(setup_s, 1), "note": note}
        rows.append(r)
        log.info("[bench] %s: median %.2f ms (n=%d), err %.1e", name, r["median_ms"], r["n"],
                 err)

    def torch_fn(m):
        def f():
            with torch.no_grad():
                return m(x)[0].numpy()
        return f

    onnx_path: list[Path] = []

    def onnx_file() -> Path:
        if not onnx_path:
            onnx_path.append(bx.export_onnx(dep, img, Path(tmp) / "m.onnx"))
        return onnx_path[0]

    for b in backends:
        t0 = time.perf_counter()
        why = peer_available(b) if b in PEERS else None
        if why is not None:
            add(b, None, why)
            continue
        if b == "torch-compile":
            try:
                fn = torch_fn(torch.compile(dep, dynamic=False))
                fn()   # compiles here (inductor), not in the timed runs
            except Exception as e:  # noqa: BLE001 - a peer's failure is a row, not a crash
                add(b, None, f"torch.compile failed: {one_line(e, 160)}")
                continue
            add(b, fn, "torch.compile (inductor) of the deploy graph", time.perf_counter() - t0)
        elif b == "openvino":
            try:
                fn = _openvino_fn(onnx_file(), threads, xn)
            except Exception as e:  # noqa: BLE001 - a peer's failure is a row, not a crash
                add(b, None, f"openvino failed: {one_line(e, 160)}")
                continue
            add(b, fn, "OpenVINO CPU plugin, exported ONNX, latency hint",
                time.perf_counter() - t0)
        elif b == "torch-train":
            add(b, torch_fn(train), "eval-mode training graph (BN, RepConv, implicit)")
        elif b == "torch-deploy":
            add(b, torch_fn(dep), "deploy pass pipeline" if dep is not train
                else "no deploy passes")
        elif b == "onnxruntime":
            sess = bx.ort_session(onnx_file(), threads)
            name = sess.get_inputs()[0].name
            add(b, lambda: sess.run(None, {name: xn})[0], "ORT_ENABLE_ALL, CPU EP",
                time.perf_counter() - t0)
        elif b == "tvm":
            from . import tvm as btvm
            lib = Path(tmp) / "untuned.so"
            meta = btvm.compile_model(dep, "llvm", img, lib, verbose=False, name=model)
            rn = btvm.load(lib, threads=threads)
            add(b, lambda: rn(xn)[0], f"untuned, {meta.pipeline} pipeline: default schedules "
                "(convs seeded)", time.perf_counter() - t0)
        elif b == "tvm-tuned":
            from . import tvm as btvm
            dbp = Path(db) if db else None
            if (dbp is None or not dbp.exists()) and tune_trials:
                dbp = dbp or Path(tmp) / "db"
                btvm.tune(dep, "llvm", img, dbp, tune_trials)
            if dbp is None or not dbp.exists():
                add(b, None, "no tuning database (--db) and --tune-trials 0")
                continue
            lib = Path(tmp) / "tuned.so"
            meta = btvm.compile_model(dep, "llvm", img, lib, db_dir=dbp, verbose=False,
                                      db_any_cpu=db_any_cpu)
            rn = btvm.load(lib, threads=threads)
            coverage = meta.notes[-1] if meta.notes else f"{meta.tuned_records} records"
            add(b, lambda: rn(xn)[0], f"MetaSchedule db {dbp}: {coverage}"
                + (f"; {db_note}" if db_note else ""), time.perf_counter() - t0)
    floor_ms = flops / (peak * 1e9) * 1e3 if flops else None
    for r in rows:
        r["floor_ms"] = round(floor_ms, 3) if floor_ms else None
        if floor_ms and "median_ms" in r:
            r["pct_of_peak"] = round(100 * floor_ms / r["median_ms"], 1)
    import onnxruntime
    try:
        import tvm
        tvm_v = tvm.__version__
    except ImportError:
        tvm_v = None
    return {"format": FORMAT,
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                        "load1_before": round(load0, 2),
                        "load1_after": round(os.getloadavg()[0], 2),
                        "peak_gflops": round(peak, 1)},
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                         "tvm": tvm_v, "python": platform.python_version()},
            "settings": {"repeat": repeat, "warmup": warmup, "input": [1, 3, img, img],
                         "flops": flops},
            "results": rows}


def _openvino_fn(onnx_file: Path, threads: int, xn) -> Callable[[], Any]:
    """One inference of the ONNX file on OpenVINO's CPU plugin (latency hint, ``threads``)."""
    import openvino as ov
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(onnx_file)), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY",
                                   "INFERENCE_NUM_THREADS": threads})
    req = compiled.create_infer_request()
    out = compiled.output(0)

    def f():
        return req.infer({0: xn})[out]
    return f


def table(res: dict[str, Any]) -> str:
    """Markdown table of a result."""
    m = res["machine"]
    lines = [f"{m['cpu']}, load1 {m['load1_before']}→{m['load1_after']}, measured peak "
             f"{m['peak_gflops']} GFLOP/s (floor = model FLOPs / peak)", "",
             "| model | img | backend | median ms | p10 | p90 | n | floor ms | % of peak "
             "| max rel err | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        if "median_ms" not in r:
            lines.append(f"| {r['model']} | {r['img']} | {r['backend']} | — | | | | | | | "
                         f"skipped: {r['skipped']} |")
            continue
        lines.append(f"| {r['model']} | {r['img']} | {r['backend']} | {r['median_ms']:.2f} | "
                     f"{r['p10_ms']:.2f} | {r['p90_ms']:.2f} | {r['n']} | "
                     f"{r.get('floor_ms') or ''} | {r.get('pct_of_peak', '')} | "
                     f"{r['max_rel_err']:.1e} | {r['note']} |")
    return "\n".join(lines)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A result file written by ``write_json`` (validated: one-line errors otherwise)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise UserError(f"bench {p}: cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"bench {p}: not a benchmark result ({type(e).__name__}); write one "
                        f"with yolov7c bench --out") from None
    if (not isinstance(data, dict) or data.get("format") != FORMAT
            or not isinstance(data.get("results"), list)
            or not all(isinstance(r, dict) for r in data["results"])):
        raise UserError(f"bench {p}: not a {FORMAT} benchmark result; write one with "
                        f"yolov7c bench --out")
    return data


def write_json(res: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``res`` atomically; rows of an existing result file for other (model, img,
    backend) keys are kept, so one file collects several models."""
    p = Path(path)
    rows = list(res["results"])
    if p.is_file():
        key = lambda r: (r.get("model"), r.get("img"), r.get("backend"))  # noqa: E731
        new = {key(r) for r in rows}
        rows = [r for r in read_json(p)["results"] if key(r) not in new] + rows
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps({**res, "results": rows}, indent=1))
    return p


def latencies(res: dict[str, Any], backend: str | None = None) -> dict[str, float]:
    """``{model: median ms}`` of one backend (default: torch-deploy where measured, else
    each model's fastest)."""
    best: dict[str, tuple[int, float]] = {}
    for r in res["results"]:
        ms = r.get("median_ms")
        if not isinstance(ms, (int, float)) or not isinstance(r.get("model"), str):
            continue
        if backend is not None and r.get("backend") != backend:
            continue
        rank = 0 if r.get("backend") == "torch-deploy" else 1
        cur = best.get(r["model"])
        if cur is None or (rank, ms) < cur:
            best[r["model"]] = (rank, float(ms))
    return {m: ms for m, (_, ms) in best.items()}
