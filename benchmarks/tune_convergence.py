"""Tuning pipelines side by side at an equal time budget: latency vs tuning minutes.

    python benchmarks/tune_convergence.py --model yolov7-tiny --img 416 --minutes 15 \
        [--configs prepack,new] [--checkpoints 3] [--keep-db DIR] [--out benchmarks/results]
        [--earlier benchmarks/results/tune_convergence_yolov7-tiny_416_nhwc.json]

Configs: ``old`` = before issue 11 (TVM's "zero" pipeline, weights OIHW; round-robin over
tasks; TVM's popen builder). ``prepack`` = NCHW with MetaSchedule's weight layout rewrite,
rounds weighted by latency share, in-process builds. ``nhwc`` = convolutions in NHWC, SPP
pools chained, seeded conv tilings, weight layout rewrite. ``new`` = ``nhwc-fastexp``
(``nhwc`` with a vectorizing sigmoid; the default before Winograd). ``winograd`` = the
default now: ``nhwc-winograd`` (``nhwc-fastexp`` with Winograd 3×3 convolutions).
Each config tunes a fresh database (or resumes ``--keep-db``'s) for ``--minutes``, in
``--checkpoints`` pieces; after each piece the library is built and timed against
onnxruntime in a fresh process (``fresh_timing.py``: the tuning process keeps threads and
memory that slowed the library by up to 20 %; same threads, same input, fp32, batch 1,
alternating blocks so both see the same load). ``--earlier`` adds the configs of an
earlier run's JSON (same model, size and CPU; not re-run, marked "earlier run") to the
table and the plot. Writes ``tune_convergence_<model>_<img>.json`` and ``.png`` (measured
latency vs tuning minutes, the kernel-sum estimate, onnxruntime).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = {
    "old": {"pipeline": "zero", "schedule": "round-robin", "builder": "popen"},
    "prepack": {"pipeline": "prepack", "schedule": "weighted", "builder": "inprocess"},
    "nhwc": {"pipeline": "nhwc", "schedule": "weighted", "builder": "inprocess"},
    "new": {"pipeline": "nhwc-fastexp", "schedule": "weighted", "builder": "inprocess"},
    "winograd": {"pipeline": "nhwc-winograd", "schedule": "weighted", "builder": "inprocess"},
}


def _load1() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-tiny")
    ap.add_argument("--img", type=int, default=416)
    ap.add_argument("--minutes", type=float, default=10.0, help="tuning per config")
    ap.add_argument("--checkpoints", type=int, default=3,
                    help="measured points per config (the library is built and timed at "
                         "each; build time is not tuning time)")
    ap.add_argument("--configs", default="prepack,new")
    ap.add_argument("--per-round", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--keep-db", help="folder to keep the databases in (default: temp); an "
                    "existing database there is resumed")
    ap.add_argument("--earlier", action="append", default=[],
                    help="an earlier run's JSON whose configs join the table and plot")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from fresh_timing import time_in_fresh_process

    from yolov7c.api.models import deploy
    from yolov7c.backends import common
    from yolov7c.backends import tvm as btvm
    from yolov7c.backends.onnx import export_onnx
    from yolov7c.backends.tvm.targets import cpu_threads, host_cpu
    from yolov7c.io_util import write_json_atomic

    threads = cpu_threads()
    model = deploy(a.model).eval()
    x = common.example_input(model, a.img, seed=0)
    xn = x.numpy()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"model": a.model, "img": a.img, "threads": threads, "cpu": host_cpu(),
                 "minutes_per_config": a.minutes, "per_round": a.per_round, "configs": {}}
    stem = f"tune_convergence_{a.model}_{a.img}"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, a.img, Path(tmp) / "m.onnx")
        x_npy = Path(tmp) / "x.npy"
        np.save(x_npy, xn)
        for cfg in a.configs.split(","):
            kw = CONFIGS[cfg]
            db = Path(a.keep_db or tmp) / f"db_{cfg}"
            entry: dict = dict(kw, points=[], curve=[])
            tuned_s = 0.0
            for j in range(1, a.checkpoints + 1):
                budget = a.minutes * 60 * j / a.checkpoints - tuned_s
                rep = btvm.tune(model, "llvm", a.img, db, trials=1 << 20,
                                per_round=a.per_round, max_seconds=budget, **kw)
                entry["curve"] += [{"s": tuned_s + s, "records": n, "estimate_ms": e,
                                    "untuned": u} for s, n, e, u in rep.curve]
                tuned_s += rep.seconds
                lib = Path(tmp) / f"{cfg}_{j}.so"
                meta = btvm.compile_model(model, "llvm", a.img, lib, db_dir=db, verbose=False)
                # timed in a fresh process: this one holds the tuner's threads and memory
                ms = time_in_fresh_process(lib, onnx_path, x_npy, max(1, a.repeat // 5))
                err = ms["max_abs_err"]
                pt = {"minutes": tuned_s / 60, "records": rep.records_after,
                      "tasks_tuned": meta.tasks_tuned, "tasks": meta.tasks,
                      "latency_ms": ms["tvm_ms"], "onnxruntime_ms": ms["onnxruntime_ms"],
                      "max_abs_err_vs_onnxruntime": err, "load1": _load1(),
                      "timed": "fresh process"}
                entry["points"].append(pt)
                print(f"[{cfg}] {pt['minutes']:.1f} min: {pt['latency_ms']:.1f} ms "
                      f"(onnxruntime {pt['onnxruntime_ms']:.1f} ms), {meta.tasks_tuned}/"
                      f"{meta.tasks} tasks, {rep.records_after} records, err {err:.2g}",
                      flush=True)
            entry.update(tune_seconds=tuned_s, **{k: entry["points"][-1][k] for k in
                         ("latency_ms", "records", "tasks", "tasks_tuned")})
            res["configs"][cfg] = entry
            write_json_atomic(out / f"{stem}.json", res)   # a later config's crash keeps this
        res["onnxruntime_ms"] = float(np.median([p["onnxruntime_ms"] for e in
                                                 res["configs"].values() for p in e["points"]]))
        for path in a.earlier:
            _add_earlier(res, Path(path))
        write_json_atomic(out / f"{stem}.json", res)
    _plot(res, out / f"{stem}.png")
    print(f"onnxruntime {res['onnxruntime_ms']:.1f} ms ({threads} threads)")
    for cfg, r in res["configs"].items():
        print(f"{cfg:8s} {r['pipeline']:8s} {r['schedule']:11s} {r['records']:5d} records"
              f" {r['tasks_tuned']}/{r['tasks']} tasks tuned in {r['tune_seconds'] / 60:.1f} "
              f"min -> {r['latency_ms']:.1f} ms ({r['latency_ms'] / res['onnxruntime_ms']:.2f}x "
              "onnxruntime)")
    return 0


def _add_earlier(res: dict, path: Path) -> None:
    """Merge ``path``'s configs into ``res`` as "<config> (earlier run)"; refuses a run of
    another model, size or CPU (its numbers would not compare)."""
    import json
    old = json.loads(path.read_text())
    for key in ("model", "img", "threads", "cpu"):
        if old.get(key) != res[key]:
            raise SystemExit(f"{path}: {key} {old.get(key)!r} is not this run's "
                             f"{res[key]!r}; compare runs of one model, size and CPU")
    for cfg, entry in old["configs"].items():
        res["configs"][f"{cfg} (earlier run)"] = dict(entry, earlier=str(path))


def _plot(res: dict, path: Path) -> None:
    """Left: end-to-end ms vs tuning minutes for each config (points), onnxruntime timed
    beside each point (this VM's speed drifts between checkpoints), and the kernel-sum
    estimate (dashed, tuned tasks only). Right: TVM / onnxruntime at each checkpoint (each
    pair timed in one process, so the drift cancels), the first point within 10 % of the
    final ratio circled."""
    from yolov7c.figures import pyplot, save_png
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (cfg, r) in enumerate(res["configs"].items()):
        c = f"C{i}"
        pts = r["points"]
        mins = [p["minutes"] for p in pts]
        ax.plot(mins, [p["latency_ms"] for p in pts], marker="o", color=c,
                label=f"{cfg} ({r['pipeline']}, {r['schedule']}): measured")
        ort = [p.get("onnxruntime_ms") for p in pts]
        if all(ort):
            ax.plot(mins, ort, marker="x", ls=":", color=c, label=f"{cfg}: onnxruntime beside it")
            ratio = [p["latency_ms"] / o for p, o in zip(pts, ort)]
            bx.plot(mins, ratio, marker="o", color=c, label=cfg)
            # "within 10 %" on the ratio: the absolute ms carry the drift between points
            first = next(j for j, q in enumerate(ratio) if q <= 1.1 * ratio[-1])
            bx.plot([mins[first]], [ratio[first]], marker="o", ms=14, mfc="none", color=c,
                    label=f"{cfg}: within 10 % of its final ratio ({mins[first]:.0f} min)")
        est = [(p["s"] / 60, p["estimate_ms"]) for p in r.get("curve", [])
               if p["untuned"] == 0]
        if est:
            ax.plot(*zip(*est), ls="--", lw=1, color=c, label=f"{cfg}: kernel-sum estimate")
    ax.set_xlabel("tuning minutes")
    ax.set_ylabel("end-to-end ms (batch 1, fp32)")
    ax.legend(fontsize=7)
    bx.axhline(1.0, color="k", lw=1, label="onnxruntime")
    bx.set_xlabel("tuning minutes")
    bx.set_ylabel("TVM / onnxruntime (same process, alternating)")
    bx.legend(fontsize=7)
    fig.suptitle(f"{res['model']} @ {res['img']}, {res['threads']} threads, "
                 f"{res['minutes_per_config']:g} min per config")
    save_png(fig, path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    sys.exit(main())
