"""Time symbolic scaling of every zoo model: scale(g, d, w) with sympy symbols, then the
closed forms params(d, w) and FLOPs(d, w, img) (analysis + sympy.expand), and one numeric
scale + analysis for comparison. Target: < 1 s per model for the symbolic path.

    python benchmarks/scaling_speed.py [--repeat 3] [--out benchmarks/results/scaling_speed.json]

Prints a table and writes JSON (best of ``--repeat`` runs, seconds, one CPU process).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolov7c import zoo  # noqa: E402
from yolov7c.ir.analysis import analyze  # noqa: E402
from yolov7c.ir.scaling import D, W, closed_form, scale  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/scaling_speed.json")
    args = ap.parse_args()
    rows = []
    for name in zoo.names():
        g = zoo.get(name)
        t = time.perf_counter()
        closed_form(g)  # the first call pays sympy's cold caches: the number a user sees
        first = time.perf_counter() - t
        rows.append({
            "model": name, "closed_form_first_s": first,
            "symbolic_scale_s": best(lambda: scale(g, depth=D, width=W), args.repeat),
            "closed_form_s": best(lambda: closed_form(g), args.repeat),
            "numeric_scale_analyze_s": best(lambda: analyze(scale(g, 1.5, 1.25)), args.repeat),
        })
    print(f"{'model':<18} {'closed forms (1st)':>18} {'symbolic scale':>15} {'closed forms':>13} "
          f"{'numeric':>9}  (s; last three: best of {args.repeat})")
    for r in rows:
        print(f"{r['model']:<18} {r['closed_form_first_s']:>18.3f} {r['symbolic_scale_s']:>15.3f} {r['closed_form_s']:>13.3f} "
              f"{r['numeric_scale_analyze_s']:>9.3f}")
    res = {"benchmark": "scaling_speed", "python": platform.python_version(),
           "machine": platform.machine(), "cpus": os.cpu_count(), "repeat": args.repeat,
           "closed_form": "scale with sympy d, w + analysis at symbolic img + expand",
           "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
