"""It learns: yolov7-tiny trained on the synthetic shapes set, on this CPU, within a
wall-clock budget; prints the mAP curve and writes JSON (not a CI test).

    python benchmarks/train_learns.py --minutes 20 --img 128 --epochs 40
    python benchmarks/train_learns.py --model ../shared/fixtures/yolov7-tiny-official.pt
    python benchmarks/train_learns.py --step-cost --model yolov7-tiny --img 320   # one batch
    python benchmarks/train_learns.py --step-cost --model yolov7-w6 --img 640 --hyp p6

From scratch by default; ``--model`` a checkpoint fine-tunes it (new 3-class head).

Settings for a small CPU budget (say so in any figure quoted): a small image (``--img``, 160),
few classes (3 shapes, objects 10–45 % of the image), no gradient accumulation
(``nominal_batch`` = batch) and a short warmup (``min_warmup_iters``), since the official
64-image steps and 1000-batch warmup assume hours of GPU time. Everything else is the
official recipe (SGD, tiny hyp, OTA loss, EMA, mosaic / MixUp augmentation).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yolov7c.api.training import train  # noqa: E402
from yolov7c.data.synth import make_synthetic  # noqa: E402
from yolov7c.io_util import write_text_atomic  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget (20)")
    ap.add_argument("--model", default="yolov7-tiny",
                    help="yolov7-tiny (from scratch) or a checkpoint to fine-tune, e.g. the "
                    "official yolov7-tiny.pt (COCO) with a new 3-class head")
    ap.add_argument("--img", type=int, default=160)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--nc", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30, help="cosine schedule length (30)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=100, help="min warmup batches (100)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--hyp", default="tiny")
    ap.add_argument("--device", default="cpu", help="cpu (the goal's machine) or cuda")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a loaded 2-core machine two spinning OpenMP "
                    "threads ran ~10× slower than one; the loader worker uses the other core)")
    ap.add_argument("--work", default="runs/bench/train_learns", help="data + run folder")
    ap.add_argument("--out", default="benchmarks/results/train_learns.json")
    ap.add_argument("--step-cost", action="store_true", help="only time training batches "
                    "(forward, loss, backward, step) of --model at --img and --batch, and "
                    "project what --train images × --epochs cost")
    ap.add_argument("--steps", type=int, default=2, help="batches timed by --step-cost (2)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch
    torch.set_num_threads(a.threads)
    if a.step_cost:
        return step_cost(a)
    work = Path(a.work)
    data = work / f"synth{a.img}_{a.train}_{a.val}_{a.nc}"
    yaml_path = data / "data.yaml"
    if not yaml_path.is_file():
        make_synthetic(data, train=a.train, val=a.val, img=a.img, nc=a.nc, seed=0)
    t0 = time.perf_counter()
    s = train(a.model, yaml_path, nc=a.nc, img=a.img, epochs=a.epochs, batch=a.batch,
              hyp=a.hyp, workers=a.workers, device=a.device, out=work / "runs",
              nominal_batch=a.batch, min_warmup_iters=a.warmup,
              time_limit=a.minutes * 60 - 30)
    wall = time.perf_counter() - t0
    with open(s["results"]) as f:
        rows = list(csv.DictReader(f))
    print(f"\n{'epoch':>5} {'time_s':>8} {'loss':>8} {'mAP@.5':>8} {'mAP@.5:.95':>10}")
    for r in rows:
        print(f"{r['epoch']:>5} {float(r['time_s']):>8.0f} {float(r['train/total']):>8.4f} "
              f"{float(r['mAP50']):>8.3f} {float(r['mAP50-95']):>10.3f}")
    best50 = max(float(r["mAP50"]) for r in rows)
    result = {"model": a.model, "device": a.device, "threads": a.threads, "img": a.img,
              "train_images": a.train, "val_images": a.val, "nc": a.nc, "batch": a.batch,
              "epochs_planned": a.epochs,
              "epochs_run": len(rows), "wall_s": round(wall, 1), "budget_s": a.minutes * 60,
              "best_map50": best50, "best_map": s["map"], "goal_map50": 0.5,
              "reached": best50 >= 0.5, "run": s["run"],
              "curve": [{"epoch": int(r["epoch"]), "time_s": float(r["time_s"]),
                         "loss": float(r["train/total"]), "map50": float(r["mAP50"]),
                         "map": float(r["mAP50-95"])} for r in rows]}
    write_text_atomic(a.out, json.dumps(result, indent=1))
    verdict = "reached" if result["reached"] else "NOT reached"
    print(f"best mAP@0.5 {best50:.3f} (goal 0.5: {verdict}) in {wall / 60:.1f} min; "
          f"JSON: {a.out}")
    return 0


def step_cost(a: argparse.Namespace) -> int:
    """Wall and CPU time of training batches (the first one, which also warms up, is timed
    apart), with the projected cost of an epoch of ``--train`` images and of the run."""
    from yolov7c.train.trainer import Trainer
    work = Path(a.work) / f"step_{a.img}"
    yaml_path = work / "data.yaml"
    if not yaml_path.is_file():
        make_synthetic(work, train=a.batch * a.steps, val=1, img=a.img, nc=a.nc, seed=0)
    times: list[tuple[float, float]] = []
    original_fb, original_step = Trainer.forward_backward, Trainer.step

    def timed_fb(self, *args):
        t, c = time.perf_counter(), time.process_time()
        out = original_fb(self, *args)
        original_step(self)
        times.append((time.perf_counter() - t, time.process_time() - c))
        return out

    Trainer.forward_backward, Trainer.step = timed_fb, lambda self: None
    try:
        train(a.model, yaml_path, nc=a.nc, img=a.img, epochs=1, batch=a.batch, hyp=a.hyp,
              workers=0, device=a.device, out=work / "runs", nominal_batch=a.batch,
              min_warmup_iters=0)
    finally:
        Trainer.forward_backward, Trainer.step = original_fb, original_step
    first, rest = times[0], times[1:] or times[:1]
    wall = sum(t for t, _ in rest) / len(rest)
    cpu = sum(c for _, c in rest) / len(rest)
    epoch = wall * a.train / a.batch
    print(f"{a.model} @ {a.img}, batch {a.batch}, {a.threads} thread(s), hyp {a.hyp}: first "
          f"batch {first[0]:.1f} s (CPU {first[1]:.1f} s); then {wall:.1f} s a batch (CPU "
          f"{cpu:.1f} s) = {a.batch / wall:.2f} img/s → an epoch of {a.train} images "
          f"{epoch / 60:.1f} min, {a.epochs} epochs {epoch * a.epochs / 3600:.1f} h "
          f"(training only, no validation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
