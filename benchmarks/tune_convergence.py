"""Tuning pipelines side by side at an equal time budget: latency vs tuning minutes.

    python benchmarks/tune_convergence.py --model yolov7-tiny --img 416 --minutes 10 \
        [--configs old,new] [--out benchmarks/results]

``old`` = the pipeline before issue 11 (TVM's "zero" pipeline: weights stay OIHW;
round-robin over tasks; TVM's popen builder). ``new`` = the default now ("prepack": weight
layout rewrite at tune and build time; rounds weighted by latency share, heaviest kernels
first; in-process builds and timing). Each config tunes a fresh database for ``--minutes``,
then the library built from it is timed against onnxruntime (same threads, same input,
fp32, batch 1). Writes ``tune_convergence_<model>_<img>.json`` and a plot of the
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
    ap.add_argument("--minutes", type=float, default=10.0)
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
        res["onnxruntime_ms"] = _median_ms(lambda: sess.run(None, {name: xn}), a.repeat)
        res["onnxruntime_load1"] = _load1()
        for cfg in a.configs.split(","):
            kw = CONFIGS[cfg]
            db = Path(a.keep_db or tmp) / f"db_{cfg}"
            t0 = time.perf_counter()
            rep = btvm.tune(model, "llvm", a.img, db, trials=100000, per_round=a.per_round,
                            max_seconds=a.minutes * 60, **kw)
            tune_s = time.perf_counter() - t0
            lib = Path(tmp) / f"{cfg}.so"
            meta = btvm.compile_model(model, "llvm", a.img, lib, db_dir=db, verbose=False)
            runner = btvm.load(lib)
            got = runner(xn)[0]
            ms = _median_ms(lambda: runner(xn), a.repeat)
            res["configs"][cfg] = {
                **kw, "tune_seconds": tune_s, "records": rep.records_after,
                "tasks": rep.tasks, "tasks_tuned": meta.tasks_tuned,
                "latency_ms": ms, "load1": _load1(),
                "max_abs_err_vs_onnxruntime": float(np.abs(got - ref).max()),
                "curve": [{"s": s, "records": n, "estimate_ms": e, "untuned": u}
                          for s, n, e, u in rep.curve]}
            (out / f"tune_convergence_{a.model}_{a.img}.json").write_text(
                json.dumps(res, indent=1))
    _plot(res, out / f"tune_convergence_{a.model}_{a.img}.png")
    print(f"onnxruntime {res['onnxruntime_ms']:.1f} ms ({threads} threads)")
    for cfg, r in res["configs"].items():
        print(f"{cfg:4s} {r['pipeline']:8s} {r['schedule']:11s} {r['records']:5d} records "
              f"{r['tasks_tuned']}/{r['tasks']} tasks tuned in {r['tune_seconds'] / 60:.1f} min"
              f" -> {r['latency_ms']:.1f} ms ({r['latency_ms'] / res['onnxruntime_ms']:.2f}x "
              "onnxruntime)")
    return 0


def _plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from yolov7c.io_util import atomic_path
    fig, ax = plt.subplots(figsize=(7, 4))
    for cfg, r in res["configs"].items():
        pts = [(c["s"] / 60, c["estimate_ms"]) for c in r["curve"] if c["estimate_ms"]]
        if pts:
            ax.plot(*zip(*pts), label=f"{cfg}: kernel-sum estimate (tuned tasks)")
        ax.scatter([r["tune_seconds"] / 60], [r["latency_ms"]], marker="x",
                   label=f"{cfg}: measured end-to-end")
    ax.axhline(res["onnxruntime_ms"], color="k", ls="--", label="onnxruntime")
    ax.set_xlabel("tuning minutes")
    ax.set_ylabel("latency ms (batch 1, fp32)")
    ax.set_yscale("log")
    ax.set_title(f"{res['model']} @ {res['img']}, {res['threads']} threads")
    ax.legend(fontsize=8)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
