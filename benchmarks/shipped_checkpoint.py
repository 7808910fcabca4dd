"""Re-make the shipped checkpoint (yolov7c/zoo/weights/yolov7-tiny-n_synth.ckpt): yolov7-tiny-n
(yolov7-tiny at a quarter width, yolov7c/zoo/narrow.py) trained by ``yolov7c train`` on the
project's synthetic shapes set, seeded; then stripped to the EMA weights and the facts of the
run (no optimizer state), and checked: it loads with ``torch.load(weights_only=True)`` and its
mAP through ``val`` is printed.

    python benchmarks/shipped_checkpoint.py                 # writes the shipped file
    python benchmarks/shipped_checkpoint.py --out /tmp/x.ckpt --epochs 2   # a quick look
    python benchmarks/shipped_checkpoint.py --from-run runs/ckpt/tiny_n     # strip a run

The two commands it runs (printed, and in docs/training.md) are the reproducible recipe.
Same machine, same seed → the same weights (one torch thread, one loader process).
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yolov7c.zoo.narrow import SHIPPED  # noqa: E402

NARROW = ROOT / "yolov7c" / "zoo" / "narrow.py"


def run(cmd: list[str]) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/ckpt", help="data and run folder (runs/ckpt)")
    ap.add_argument("--out", default=str(SHIPPED), help="the checkpoint to write (the shipped one)")
    ap.add_argument("--img", type=int, default=128)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--data-seed", type=int, default=1,
                    help="seed of the data (1: e2e draws its own images with seed 0)")
    ap.add_argument("--seed", type=int, default=0, help="seed of weights, order, augmentation")
    ap.add_argument("--from-run", metavar="RUN", help="only strip this finished run folder "
                    "(made by the same two commands) into --out")
    a = ap.parse_args()
    if a.from_run:
        strip(Path(a.from_run), Path(a.out))
        return 0
    work = Path(a.work)
    data = work / f"synth{a.img}"
    exe = [sys.executable, "-m", "yolov7c"]
    if not (data / "data.yaml").is_file():
        run([*exe, "data", "synth", "--out", str(data), "--train", str(a.train), "--val",
             str(a.val), "--img", str(a.img), "--nc", "3", "--seed", str(a.data_seed)])
    name = f"tiny_n_{time.strftime('%Y%m%d_%H%M%S')}"
    t0 = time.perf_counter()
    run([*exe, "train", str(NARROW.relative_to(ROOT)), "--data", str(data / "data.yaml"),
         "--img", str(a.img), "--epochs", str(a.epochs), "--batch", "16", "--nominal-batch", "16",
         "--warmup-iters", "100", "--workers", "1", "--threads", "1", "--seed", str(a.seed),
         "--project", str(work), "--name", name])
    wall = time.perf_counter() - t0
    strip(work / name, Path(a.out), wall)
    return 0


def strip(run_dir: Path, out: Path, wall: float | None = None) -> None:
    """best.ckpt of ``run_dir`` → ``out``: the EMA weights and the run's facts in ``meta``."""
    import torch

    from yolov7c.api.evaluate import val
    from yolov7c.api.models import resolve, save
    from yolov7c.backends.torch.checkpoint import read

    best = run_dir / "weights" / "best.ckpt"
    ck = read(best)
    settings = ck["extra"]["settings"]
    rows = list(csv.DictReader(open(run_dir / "results.csv")))
    row = max(rows, key=lambda r: float(r["mAP50-95"]))
    meta = {"source": "yolov7c/zoo/narrow.py (yolov7-tiny-n)", "img": int(settings["img"]),
            "data": "yolov7c data synth --train 1000 --val 100 --img 128 --nc 3 --seed 1",
            "trained": json.dumps({k: v for k, v in settings.items() if k != "hyp"}),
            "hyp": json.dumps(settings["hyp"]), "epoch": int(row["epoch"]),
            "epochs": len(rows), "map50": float(row["mAP50"]), "map": float(row["mAP50-95"]),
            "train_seconds": float(rows[-1]["time_s"])}
    out.parent.mkdir(parents=True, exist_ok=True)
    save(resolve(best), out, **meta)
    torch.load(out, weights_only=True)  # the format's promise
    r = val(out, settings["data"], img=int(settings["img"]), out=None, progress=False)
    took = f" in {wall / 60:.1f} min" if wall else ""
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) from {best} (epoch {row['epoch']} "
          f"of {len(rows)}{took}): val mAP@0.5 {r['map50']:.4f}  mAP@0.5:0.95 {r['map']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
