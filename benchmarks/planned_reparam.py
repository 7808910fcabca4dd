"""Planned re-parameterization ablation (paper §4.1, §5.4.2): base / planned /
repconv-everywhere variants of one model, trained with the same budget and seed, each
deployed through the verified pipeline; one table (params, GFLOPs, deploy latency, mAP) +
JSON. Not a CI test.

    python benchmarks/planned_reparam.py                          # fig6-elan3, synthetic set
    python benchmarks/planned_reparam.py --model fig4-resnet --epochs 10
    python benchmarks/planned_reparam.py --model my_net.py --data data.yaml --img 320

The variants are ``plan_reparam(base, "none" | "planned" | "repconv-everywhere")`` of the
model's graph (any source: zoo or ablation name, DSL .py, cfg .yaml); the base is the
"none" plan, so a model that ships RepConv is compared against its plain form. Each variant
is trained from the same seeded initialisation rule, on the same data, batches and epochs;
its best checkpoint is deployed (every pass verified, the worst relative error reported),
timed on batch 1 (median of ``--repeat`` runs, variants interleaved so machine load hits
them alike) and evaluated (pycocotools mAP on the val split, deploy module).

Default data: the synthetic shapes set made on the fly (small: ``--train`` / ``--val``
images at ``--img``). A CPU budget of minutes cannot resolve the paper's ±0.1 AP
differences: read the mAP column as "it trains and deploys", not as a replication.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from yolov7c.api.evaluate import val  # noqa: E402
from yolov7c.api.models import graph_of  # noqa: E402
from yolov7c.api.training import train  # noqa: E402
from yolov7c.api.transforms import passes  # noqa: E402
from yolov7c.data.synth import make_synthetic  # noqa: E402
from yolov7c.io_util import write_text_atomic  # noqa: E402
from yolov7c.ir.analysis import analyze  # noqa: E402
from yolov7c.ir.deploy import to_deploy  # noqa: E402
from yolov7c.ir.plan_reparam import choice_of, plan_reparam  # noqa: E402

VARIANTS = ("base", "planned", "repconv-everywhere")   # variant → plan_reparam policy
POLICY = {"base": "none", "planned": "planned", "repconv-everywhere": "repconv-everywhere"}


def _counts(graph: Any) -> str:
    kinds = [choice_of(graph, n.index) for n in graph.nodes if n.op in ("Conv", "RepConv")]
    return "/".join(str(kinds.count(k)) for k in ("RepConv", "RepConvN"))


def _latency_ms(modules: dict[str, torch.nn.Module], img: int, repeat: int) -> dict[str, float]:
    """Median batch-1 forward time per module; rounds interleave the modules."""
    x = torch.rand(1, 3, img, img, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {k: [] for k in modules}
    with torch.inference_mode():
        for m in modules.values():
            for _ in range(3):
                m(x)
        for _ in range(repeat):
            for k, m in modules.items():
                t = time.perf_counter()
                m(x)
                times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fig6-elan3",
                    help="base model: zoo or ablation name, DSL .py, cfg .yaml (fig6-elan3)")
    ap.add_argument("--data", default=None,
                    help="data YAML (default: a synthetic shapes set made under --work)")
    ap.add_argument("--img", type=int, default=160)
    ap.add_argument("--train", type=int, default=96, help="synthetic training images (96)")
    ap.add_argument("--val", type=int, default=32, help="synthetic validation images (32)")
    ap.add_argument("--nc", type=int, default=3, help="classes of the synthetic set (3)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per variant (4)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=10, help="min warmup batches (10)")
    ap.add_argument("--hyp", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=30, help="latency runs per variant (30)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    ap.add_argument("--work", default="runs/bench/planned_reparam", help="data + run folder")
    ap.add_argument("--out", default="benchmarks/results/planned_reparam.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    data = Path(a.data) if a.data else work / f"synth{a.img}_{a.train}_{a.val}_{a.nc}/data.yaml"
    if a.data is None and not data.is_file():
        make_synthetic(data.parent, train=a.train, val=a.val, img=a.img, nc=a.nc, seed=0)
    base = plan_reparam(graph_of(a.model, nc=a.nc), "none")
    rows: dict[str, dict[str, Any]] = {}
    deployed: dict[str, torch.nn.Module] = {}
    for v in VARIANTS:
        g = plan_reparam(base, POLICY[v])
        t0 = time.perf_counter()
        s = train(g, data, nc=a.nc, img=a.img, epochs=a.epochs, batch=a.batch, hyp=a.hyp,
                  seed=a.seed, workers=1, device="cpu", out=work / "runs", name=v,
                  nominal_batch=a.batch, min_warmup_iters=a.warmup)
        train_s = time.perf_counter() - t0
        dep = passes(s["best"], "deploy", verify=True, img=a.img, seed=a.seed)
        deployed[v] = dep.module.eval()
        m = val(deployed[v], data, img=a.img, out=None, plots=False, progress=False)
        tr, dp = analyze(g, a.img), analyze(to_deploy(g), a.img)
        rows[v] = {"policy": POLICY[v], "repconv/repconvn": _counts(g),
                   "train_params": int(tr.params),
                   "train_gflops": float(tr.gflops("official")),
                   "deploy_params": int(dep.params),
                   "deploy_params_ir": int(dp.params),
                   "deploy_gflops": float(dp.gflops("official")),
                   "deploy_max_rel_err": float(dep.max_rel_err),
                   "map50": float(m["map50"]), "map": float(m["map"]),
                   "best_epoch": s["best_epoch"], "train_s": round(train_s, 1)}
    for v, ms in _latency_ms(deployed, a.img, a.repeat).items():
        rows[v]["deploy_latency_ms"] = round(ms, 3)
    print(f"\n{a.model} @ {a.img}, {a.epochs} epochs × {a.train} images, seed {a.seed}, "
          f"CPU {a.threads} thread(s); GFLOPs official convention")
    print(f"{'variant':<19} {'Rep/N':>6} {'train params':>12} {'train GF':>8} "
          f"{'deploy params':>13} {'deploy GF':>9} {'rel err':>8} {'latency ms':>10} "
          f"{'mAP@.5':>7} {'mAP':>7}")
    for v, r in rows.items():
        print(f"{v:<19} {r['repconv/repconvn']:>6} {r['train_params']:>12,} "
              f"{r['train_gflops']:>8.3f} {r['deploy_params']:>13,} {r['deploy_gflops']:>9.3f} "
              f"{r['deploy_max_rel_err']:>8.1e} {r['deploy_latency_ms']:>10.2f} "
              f"{r['map50']:>7.4f} {r['map']:>7.4f}")
    same = len({(r["deploy_params"], r["deploy_gflops"]) for r in rows.values()}) == 1
    print(f"deploy params and GFLOPs equal across variants: {same}")
    result = {"model": a.model, "img": a.img, "epochs": a.epochs, "train_images": a.train,
              "val_images": a.val, "nc": a.nc, "batch": a.batch, "seed": a.seed,
              "threads": a.threads, "data": str(data), "deploy_equal": same,
              "torch": torch.__version__, "variants": rows}
    write_text_atomic(a.out, json.dumps(result, indent=1))
    print(f"JSON: {a.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
