"""Training graph (eval mode) vs deploy-pipeline module: CPU latency, batch 1, side by side.

    python benchmarks/deploy_speed.py [--cases yolov7-tiny@416,yolov7@640] [--repeats 20]

Both models carry the same random weights (BN statistics randomized, so the deploy module
is numerically the same network: the script checks it); each is timed alternately after a
warm-up, and the median is reported. Writes benchmarks/results/deploy_speed.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from yolov7c.api.models import resolve  # noqa: E402
from yolov7c.passes import example_input, run_passes  # noqa: E402
from yolov7c.io_util import write_text_atomic  # noqa: E402


def _time(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x)
    return (time.perf_counter() - t0) * 1e3


@torch.no_grad()
def bench(name: str, img: int, repeats: int, warmup: int = 3) -> dict:
    model = resolve(name)  # the API's one weights rule: seeded random weights, real BN stats
    result = run_passes(model, "deploy", img=128)
    train, deploy = model.eval(), result.module.eval()
    x = example_input(model, img)
    for _ in range(warmup):
        train(x), deploy(x)
    t_train, t_deploy = [], []
    for _ in range(repeats):  # alternate so load drift hits both alike
        t_train.append(_time(train, x))
        t_deploy.append(_time(deploy, x))
    a, b = statistics.median(t_train), statistics.median(t_deploy)
    return {"model": name, "img": img, "batch": 1, "repeats": repeats,
            "train_eval_ms": round(a, 2), "deploy_ms": round(b, 2), "speedup": round(a / b, 3),
            "params_train": sum(p.numel() for p in train.parameters()),
            "params_deploy": result.params, "max_rel_err": result.max_rel_err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="yolov7-tiny@416,yolov7@640")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deploy_speed.json"))
    args = ap.parse_args()
    rows = [bench(c.split("@")[0], int(c.split("@")[1]), args.repeats)
            for c in args.cases.split(",")]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "loadavg_1m": os.getloadavg()[0]}
    write_text_atomic(args.out, json.dumps({"machine": machine, "results": rows}, indent=1))
    print(f"CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
          f"{machine['threads']} threads, load {machine['loadavg_1m']:.1f}; fp32, batch 1, "
          f"median of {args.repeats}")
    print("| model | img | train graph (eval) ms | deploy ms | speedup | params train → deploy |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['img']} | {r['train_eval_ms']:.1f} | {r['deploy_ms']:.1f} | "
              f"{r['speedup']:.2f}× | {r['params_train']:,} → {r['params_deploy']:,} |")


if __name__ == "__main__":
    main()
