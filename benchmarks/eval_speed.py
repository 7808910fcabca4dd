"""NMS time and `val` throughput per backend, side by side.

    python benchmarks/eval_speed.py [--images 16] [--sizes 320,640] [--threads 1] [--repeats 7]

1. NMS on 25,200 candidates × 80 classes (a 640 P5 head) at the evaluation settings (conf
   0.001, IoU 0.65, multi-label, 300 boxes) and the detection settings (0.25 / 0.45), on two
   inputs: uniform random scores (worst case: ~2 M class scores pass 0.001) and model-like
   scores (objectness and class logits ~ N(-5, 2)). Median ms over ``--repeats``.
2. `val` of yolov7-tiny (random weights, 3 classes) on a synthetic set (``--images`` images
   of 320 px) at each size, per backend: torch (training graph, eval), deploy (verified deploy
   pipeline), onnxruntime (dynamic-batch export), tvm (llvm, untuned: run at 320 only — an
   untuned 640 build is minutes per batch). Images/s end to end, and ms/img per stage.

Writes benchmarks/results/eval_speed.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from yolov7c.api.evaluate import make_predictor  # noqa: E402
from yolov7c.api.models import resolve  # noqa: E402
from yolov7c.data import load_dataset, make_synthetic  # noqa: E402
from yolov7c.eval import evaluate, nms  # noqa: E402
from yolov7c.io_util import write_text_atomic  # noqa: E402

N_CAND, NC = 25200, 80


def nms_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(1, N_CAND, 2, generator=g) * 640
    wh = torch.rand(1, N_CAND, 2, generator=g) * 120 + 4
    uniform = torch.cat((xy, wh, torch.rand(1, N_CAND, 1 + NC, generator=g)), -1)
    logits = torch.randn(1, N_CAND, 1 + NC, generator=g) * 2 - 5
    model_like = torch.cat((xy, wh, logits.sigmoid()), -1)
    return {"uniform": uniform, "model-like": model_like}


def bench_nms(repeats: int) -> list[dict]:
    rows = []
    settings = {"eval": dict(conf=0.001, iou=0.65, multi_label=True, max_det=300),
                "detect": dict(conf=0.25, iou=0.45)}
    for inp_name, x in nms_inputs().items():
        for set_name, kw in settings.items():
            nms(x, **kw)  # warm-up
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = nms(x, **kw)
                ts.append((time.perf_counter() - t0) * 1e3)
            rows.append({"input": inp_name, "settings": set_name,
                         "median_ms": round(statistics.median(ts), 2),
                         "kept": int(len(out[0]))})
    return rows


def bench_val(images: int, sizes: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic(Path(tmp) / "ds", train=0, val=images, img=320, nc=3, seed=0)
        ds = load_dataset(data)
        model = resolve("yolov7-tiny", nc=3, seed=0)
        for img in sizes:
            for backend in ("torch", "deploy", "onnxruntime", "tvm"):
                if backend == "tvm" and img > 320:
                    rows.append({"backend": backend, "img": img, "skipped":
                                 "untuned TVM at this size is minutes per batch; tune first"})
                    continue
                t0 = time.perf_counter()
                pred = make_predictor(model, backend=backend, img=img)
                build_s = time.perf_counter() - t0
                evaluate(pred, ds, img=img, batch_size=8, progress=False, plots=False)  # warm
                r = evaluate(pred, ds, img=img, batch_size=8, progress=False, plots=False)
                sp = r["speed"]
                rows.append({"backend": backend, "img": img, "images": r["images"],
                             "batch": r["batch_size"], "images_per_s": round(sp["images_per_s"], 2),
                             **{f"{k}_ms": round(sp[k], 2) for k in
                                ("preprocess", "inference", "nms", "metric")},
                             "map": round(r["map"], 5), "build_s": round(build_s, 1)})
                print(f"  val {backend} @ {img}: {sp['images_per_s']:.2f} images/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--sizes", default="320,640")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: "
                    "steady numbers on a shared machine)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"NMS on {N_CAND} x {NC} candidates ({args.repeats} repeats, {args.threads} thread)",
          flush=True)
    nms_rows = bench_nms(args.repeats)
    val_rows = bench_val(args.images, [int(s) for s in args.sizes.split(",")])
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "threads": args.threads, "load1_at_start": load, "torch": torch.__version__,
            "model": "yolov7-tiny (random weights, nc=3)",
            "note": "random weights: ~300 boxes/img reach NMS, a worst case for post-processing"}
    write_text_atomic(args.out, json.dumps({"meta": meta, "nms": nms_rows, "val": val_rows},
                                           indent=1))
    print(f"\n{'NMS input':<12} {'settings':<8} {'median ms':>10} {'kept':>5}")
    for r in nms_rows:
        print(f"{r['input']:<12} {r['settings']:<8} {r['median_ms']:>10.2f} {r['kept']:>5}")
    print(f"\n{'backend':<12} {'img':>4} {'img/s':>7} {'pre ms':>7} {'infer ms':>9} "
          f"{'nms ms':>7} {'metric ms':>9}")
    for r in val_rows:
        if "skipped" in r:
            print(f"{r['backend']:<12} {r['img']:>4}   skipped: {r['skipped']}")
            continue
        print(f"{r['backend']:<12} {r['img']:>4} {r['images_per_s']:>7.2f} "
              f"{r['preprocess_ms']:>7.1f} {r['inference_ms']:>9.1f} {r['nms_ms']:>7.1f} "
              f"{r['metric_ms']:>9.1f}")
    print(f"\n{meta['cpus']} CPUs, load average at start {load}; wrote {args.out}")


if __name__ == "__main__":
    main()
