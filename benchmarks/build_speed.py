"""Time to build + analyse every zoo model, and to lower each to torch (side by side, one run).

    python benchmarks/build_speed.py [--repeat 5] [--json out.json]

Prints a table and writes JSON (default benchmarks/results/build_speed.json). Target from the
foundation issue: all zoo models built and analysed in < 2 s in total.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yolov7c  # noqa: E402
from yolov7c.ir.analysis import analyze  # noqa: E402


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "build_speed.json"))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for name in yolov7c.zoo.list():
        img = yolov7c.zoo.entry(name).img
        build_analyse = _median_time(lambda: analyze(yolov7c.graph(name), img).params, args.repeat)
        graph = yolov7c.graph(name)
        lower = _median_time(lambda: yolov7c.build(graph), max(1, args.repeat // 2))
        rows.append({"model": name, "nodes": len(graph), "build_analyse_s": build_analyse,
                     "lower_torch_s": lower})
    total = sum(r["build_analyse_s"] for r in rows)
    print(f"{'model':<18} {'nodes':>5} {'build+analyse ms':>17} {'lower→torch ms':>15}")
    for r in rows:
        print(f"{r['model']:<18} {r['nodes']:>5} {r['build_analyse_s'] * 1e3:>17.1f} "
              f"{r['lower_torch_s'] * 1e3:>15.1f}")
    print(f"{'all models':<18} {'':>5} {total * 1e3:>17.1f} "
          f"{sum(r['lower_torch_s'] for r in rows) * 1e3:>15.1f}   (target: build+analyse < 2000 ms)")
    out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "torch": torch.__version__,
           "repeat": args.repeat, "rows": rows, "total_build_analyse_s": total}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
