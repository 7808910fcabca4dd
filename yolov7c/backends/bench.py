"""Side-by-side CPU latency of the backends, in one process, same input, same threads.

    python benchmarks/backends.py --model yolov7-tiny --img 416 [--db DIR] [--json]
    yolov7c bench yolov7-tiny --img 416 --backends torch-train,torch-deploy,onnxruntime,tvm,tvm-tuned

Backends: torch-train (eval-mode training graph), torch-deploy (deploy pass pipeline),
onnxruntime (ORT_ENABLE_ALL), tvm (untuned Relax build), tvm-tuned (MetaSchedule database).
Each: warm-up, then ``repeat`` single-image runs timed one by one; we report the median and
p10/p90, the max error against torch-deploy, and the floor = model FLOPs / measured peak
(a fp32 matmul on the same threads), i.e. the latency at 100 % of the achievable peak.
Writes JSON (``--out``, default benchmarks/results/backends_<model>_<img>.json) and prints a
table. Untuned TVM is ~100x slower here, so backends slower than ``--slow-s`` per run get
fewer repeats (the count is reported).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


DEFAULT_BACKENDS = ("torch-train", "torch-deploy", "onnxruntime", "tvm", "tvm-tuned")


def _cpu_name() -> str:
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


def _max_err(ref, got) -> float:
    import numpy as np
    r, g = np.asarray(ref), np.asarray(got)
    return float(np.abs(r - g).max() / max(np.abs(r).max(), 1e-12))


def run(model: str = "yolov7-tiny", img: int = 416, nc: int = 80,
        backends: list[str] | tuple[str, ...] = DEFAULT_BACKENDS, threads: int | None = None,
        repeat: int = 20, warmup: int = 3, db: str | None = None, tune_trials: int = 0,
        deploy: bool = True, slow_s: float = 2.0) -> dict[str, Any]:
    """Benchmark ``backends`` on ``model`` at ``img``; returns the result dict."""
    from yolov7c.backends.tvm.targets import physical_cores
    threads = threads or physical_cores()
    os.environ["TVM_NUM_THREADS"] = str(threads)   # before TVM's thread pool starts
    import torch

    import yolov7c
    from yolov7c.backends import onnx as bx
    from yolov7c.cli.backends import build_model

    unknown = [b for b in backends if b not in DEFAULT_BACKENDS]
    if unknown:
        raise yolov7c.UserError(f"--backends {','.join(unknown)}: unknown; use "
                                f"{','.join(DEFAULT_BACKENDS)}")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train = build_model(model, nc=nc, deploy=False)
    # the deploy model must carry the same weights: derive it from ``train`` (the pipeline
    # works on a private copy), never from a second random build
    dep = yolov7c.deploy(train).eval() if deploy else train
    x = bx.example_input(dep, img, seed=0)
    xn = x.numpy()
    flops = float(yolov7c.analyze(yolov7c.graph(model, nc=nc), img).flops("official")) \
        if model in yolov7c.zoo.list() else None
    peak = measure_peak_gflops(threads)
    load0 = os.getloadavg()[0]
    with torch.no_grad():
        ref = bx.Outputs(dep)(x)[0].numpy()

    rows: list[dict[str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="yolov7c-bench-")

    def add(name: str, fn: Callable[[], Any] | None, note: str = "", setup_s: float = 0.0):
        if fn is None:
            rows.append({"backend": name, "skipped": note})
            print(f"[bench] {name}: skipped ({note})", file=sys.stderr, flush=True)
            return
        out = fn()
        err = _max_err(ref, out)
        print(f"[bench] {name}: timing ...", file=sys.stderr, flush=True)
        r = {"backend": name, **time_fn(fn, repeat, warmup, slow_s), "max_rel_err": err,
             "setup_s": round(setup_s, 1), "note": note}
        rows.append(r)
        print(f"[bench] {name}: median {r['median_ms']:.2f} ms (n={r['n']}), err {err:.1e}",
              file=sys.stderr, flush=True)

    def torch_fn(m):
        def f():
            with torch.no_grad():
                return m(x)[0].numpy()
        return f

    for b in backends:
        t0 = time.perf_counter()
        if b == "torch-train":
            add(b, torch_fn(train), "eval-mode training graph (BN, RepConv, implicit)")
        elif b == "torch-deploy":
            add(b, torch_fn(dep), "deploy pass pipeline" if deploy else "no deploy passes")
        elif b == "onnxruntime":
            p = bx.export_onnx(dep, img, Path(tmp) / "m.onnx")
            sess = bx.ort_session(p, threads)
            name = sess.get_inputs()[0].name
            add(b, lambda: sess.run(None, {name: xn})[0], "ORT_ENABLE_ALL, CPU EP",
                time.perf_counter() - t0)
        elif b == "tvm":
            from yolov7c.backends import tvm as btvm
            lib = Path(tmp) / "untuned.so"
            btvm.compile_model(dep, "llvm", img, lib, verbose=False)
            rn = btvm.load(lib)
            add(b, lambda: rn(xn)[0], "default Relax pipeline, no schedules",
                time.perf_counter() - t0)
        elif b == "tvm-tuned":
            from yolov7c.backends import tvm as btvm
            from yolov7c.backends.tvm.tuning import is_packed
            dbp = Path(db) if db else None
            have_db = lambda: dbp is not None and (  # noqa: E731
                is_packed(dbp) or (dbp / "database_workload.json").exists())
            if not have_db() and tune_trials:
                dbp = dbp or Path(tmp) / "db"
                btvm.tune(dep, "llvm", img, dbp, tune_trials)
            if not have_db():
                add(b, None, "no tuning database (--db) and --tune-trials 0")
                continue
            lib = Path(tmp) / "tuned.so"
            meta = btvm.compile_model(dep, "llvm", img, lib, db_dir=dbp, verbose=False)
            rn = btvm.load(lib)
            add(b, lambda: rn(xn)[0], f"MetaSchedule db {dbp} ({meta.tuned_records} records)",
                time.perf_counter() - t0)
    floor_ms = flops / (peak * 1e9) * 1e3 if flops else None
    for r in rows:
        if floor_ms and "median_ms" in r:
            r["pct_of_peak"] = round(100 * floor_ms / r["median_ms"], 1)
    import onnxruntime
    try:
        import tvm
        tvm_v = tvm.__version__
    except ImportError:
        tvm_v = None
    return {"model": model, "img": img, "deploy": deploy, "threads": threads,
            "repeat": repeat, "warmup": warmup, "input": [1, 3, img, img],
            "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                        "load1_before": round(load0, 2),
                        "load1_after": round(os.getloadavg()[0], 2)},
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                         "tvm": tvm_v, "python": platform.python_version()},
            "flops": flops, "peak_gflops": round(peak, 1),
            "floor_ms": round(floor_ms, 3) if floor_ms else None, "rows": rows}


def table(res: dict[str, Any]) -> str:
    """Markdown table of a result."""
    m = res["machine"]
    head = (f"{res['model']} @ {res['img']}, {res['threads']} threads, {m['cpu']}, "
            f"load1 {m['load1_before']}→{m['load1_after']}; floor "
            f"{res['floor_ms']} ms = {res['flops'] / 1e9 if res['flops'] else '?':.2f} GFLOPs "
            f"/ {res['peak_gflops']} GFLOP/s measured peak")
    lines = [head, "", "| backend | median ms | p10 | p90 | n | % of peak | max rel err | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "median_ms" not in r:
            lines.append(f"| {r['backend']} | — | | | | | | skipped: {r['skipped']} |")
            continue
        lines.append(f"| {r['backend']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['n']} | {r.get('pct_of_peak', '')} | "
                     f"{r['max_rel_err']:.1e} | {r['note']} |")
    return "\n".join(lines)


def write_json(res: dict[str, Any], path: str | os.PathLike) -> None:
    """Atomic JSON write."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, p)
