"""Tuning pipelines side by side at an equal time budget: latency vs tuning minutes.

    python benchmarks/tune_convergence.py --model yolov7-tiny --img 416 --minutes 10 \
        [--configs old,new] [--out benchmarks/results]

``old`` = the pipeline before issue 11 (TVM's "zero" pipeline: weights stay OIHW;
round-robin over tasks; TVM's popen builder). ``new`` = the default now ("prepack": weight
layout rewrite at tune and build time; rounds weighted by latency share, heaviest kernels
first; in-process builds and timing). Each config tunes a fresh database for ``--minutes``,
then the library built from it is timed against onnxruntime (same threads, same input,
fp32, batch 1; timed interleaved, so every backend sees the same load). Writes ``tune_convergence_<model>_<img>.json`` and a plot of the
kernel-sum estimate vs minutes, with the measured end-to-end points and onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = {
    "old": {"pipeline": "zero", "schedule": "round-robin", "builder": "popen"},
    "new": {"pipeline": "prepack", "schedule": "weighted", "builder": "inprocess"},
}


def _median_ms(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))


def _load1() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-tiny")
    ap.add_argument("--img", type=int, default=416)
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="tuning per config; 0 = only measure the --keep-db databases")
    ap.add_argument("--configs", default="old,new")
    ap.add_argument("--per-round", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--keep-db", help="folder to keep the databases in (default: temp)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    import onnxruntime as ort

    from yolov7c.api.models import deploy
    from yolov7c.backends import common
    from yolov7c.backends import tvm as btvm
    from yolov7c.backends.onnx import export_onnx
    from yolov7c.backends.tvm.targets import host_cpu, physical_cores

    threads = physical_cores()
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    model = deploy(a.model).eval()
    x = common.example_input(model, a.img, seed=0)
    xn = x.numpy()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"model": a.model, "img": a.img, "threads": threads, "cpu": host_cpu(),
                 "minutes_per_config": a.minutes, "per_round": a.per_round, "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, a.img, Path(tmp) / "m.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        ref = sess.run(None, {name: xn})[0]
        runners = {"onnxruntime": lambda: sess.run(None, {name: xn})}
        for cfg in a.configs.split(","):
            kw = CONFIGS[cfg]
            db = Path(a.keep_db or tmp) / f"db_{cfg}"
            t0 = time.perf_counter()
            entry = dict(kw)
            if a.minutes > 0:
                rep = btvm.tune(model, "llvm", a.img, db, trials=100000,
                                per_round=a.per_round, max_seconds=a.minutes * 60, **kw)
                entry.update(tune_seconds=time.perf_counter() - t0, records=rep.records_after,
                             curve=[{"s": s, "records": n, "estimate_ms": e, "untuned": u}
                                    for s, n, e, u in rep.curve])
            else:  # measure databases tuned earlier (--keep-db): keep their first curves
                from yolov7c.backends.tvm.database import validate
                prev = json.loads((out / f"tune_convergence_{a.model}_{a.img}.json")
                                  .read_text())["configs"].get(cfg, {})
                entry.update({k: prev[k] for k in ("tune_seconds", "curve") if k in prev})
                entry["records"] = validate(db).records  # includes later resumes
            lib = Path(tmp) / f"{cfg}.so"
            meta = btvm.compile_model(model, "llvm", a.img, lib, db_dir=db, verbose=False)
            runner = btvm.load(lib)
            entry.update(tasks=meta.tasks, tasks_tuned=meta.tasks_tuned,
                         max_abs_err_vs_onnxruntime=float(np.abs(runner(xn)[0] - ref).max()))
            runners[cfg] = (lambda r: lambda: r(xn))(runner)
            res["configs"][cfg] = entry
        # interleaved timing: every backend sees the same machine load
        times: dict[str, list[float]] = {k: [] for k in runners}
        for fn in runners.values():
            fn()
        res["load1_before_timing"] = _load1()
        for _ in range(a.repeat):
            for k, fn in runners.items():
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) * 1e3)
        res["load1_after_timing"] = _load1()
        res["onnxruntime_ms"] = float(np.median(times.pop("onnxruntime")))
        for k, ts in times.items():
            res["configs"][k]["latency_ms"] = float(np.median(ts))
        (out / f"tune_convergence_{a.model}_{a.img}.json").write_text(json.dumps(res, indent=1))
    _plot(res, out / f"tune_convergence_{a.model}_{a.img}.png")
    print(f"onnxruntime {res['onnxruntime_ms']:.1f} ms ({threads} threads)")
    for cfg, r in res["configs"].items():
        print(f"{cfg:4s} {r['pipeline']:8s} {r['schedule']:11s} {r.get('records', 0):5d} records"
              f" {r['tasks_tuned']}/{r['tasks']} tasks tuned in "
              f"{r.get('tune_seconds', 0) / 60:.1f} min"
              f" -> {r['latency_ms']:.1f} ms ({r['latency_ms'] / res['onnxruntime_ms']:.2f}x "
              "onnxruntime)")
    return 0


def _plot(res: dict, path: Path) -> None:
    """Left: measured candidates vs tuning minutes (how fast each config tunes); right:
    the end-to-end latency each database gives, against onnxruntime (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from yolov7c.io_util import atomic_path
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for cfg, r in res["configs"].items():
        pts = [(c["s"] / 60, c["records"]) for c in r.get("curve", [])]
        if pts:
            ax.plot(*zip(*([(0.0, 0)] + pts)), marker=".", label=f"{cfg} ({r['pipeline']}, "
                    f"{r['schedule']}, {r['builder']})")
    ax.set_xlabel("tuning minutes")
    ax.set_ylabel("candidates measured")
    ax.legend(fontsize=8)
    names = list(res["configs"]) + ["onnxruntime"]
    vals = [r["latency_ms"] for r in res["configs"].values()] + [res["onnxruntime_ms"]]
    bx.bar(names, vals, color=["C0", "C1", "C2", "C3"][:len(vals) - 1] + ["k"])
    for i, r in enumerate(res["configs"].values()):
        bx.text(i, vals[i], f"{r['tasks_tuned']}/{r['tasks']} tasks", ha="center",
                va="bottom", fontsize=8)
    bx.set_yscale("log")
    bx.set_ylabel("end-to-end ms (batch 1, fp32, interleaved)")
    fig.suptitle(f"{res['model']} @ {res['img']}, {res['threads']} threads, "
                 f"load1 {res.get('load1_before_timing', float('nan')):.1f}")
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
