"""Side-by-side CPU latency of the backends (the logic lives in yolov7c.backends.bench).

    python benchmarks/backends.py --model yolov7-tiny --img 416 [--db DIR] [--json]

Prints a table and writes JSON (default benchmarks/results/backends_<model>_<img>.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from yolov7c.backends.bench import default_backends, table, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-tiny")
    ap.add_argument("--img", type=int, default=416)
    ap.add_argument("--backends", default=",".join(default_backends()))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--db", help="MetaSchedule database for tvm-tuned")
    ap.add_argument("--db-any-cpu", action="store_true",
                    help="use a database tuned for another CPU class")
    ap.add_argument("--tune-trials", type=int, default=0)
    ap.add_argument("--slow-s", type=float, default=2.0,
                    help="runs slower than this get fewer repeats (untuned TVM)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/...)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from yolov7c.api.backends import bench
    from yolov7c.errors import UserError
    try:
        res = bench(a.model, img=a.img, backends=a.backends.split(","),
                    threads=a.threads or None, repeat=a.repeat, warmup=a.warmup, db=a.db,
                    tune_trials=a.tune_trials, slow_s=a.slow_s, db_any_cpu=a.db_any_cpu)
    except UserError as e:
        print(f"benchmarks/backends.py: error: {e}", file=sys.stderr)
        return 2
    out = a.out or ROOT / "benchmarks" / "results" / f"backends_{a.model}_{a.img}.json"
    write_json(res, out)
    print(json.dumps(res, indent=1) if a.json else table(res))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
