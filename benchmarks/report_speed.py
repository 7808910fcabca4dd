"""How long `yolov7c report` takes for the largest model (yolov7-e6e @ 1280) in every format.

Acceptance (issue 6): any format in < 3 s. Each format runs in a fresh interpreter (the
user's experience: imports of matplotlib and sympy included), ``--repeat`` times; we print
the median wall time and CPU time (CPU time is what the report costs when the machine is
shared). Writes JSON (default benchmarks/results/report_speed.json).

    python benchmarks/report_speed.py [--model yolov7-e6e] [--img 1280] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "text": ["--by", "stage"],
    "text-layers": [],
    "json": ["--json"],
    "md": ["--format", "md"],
    "html": ["--format", "html"],
    "compare-deploy": ["--compare-deploy"],
}


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall s, child CPU s) of one `python -m yolov7c report ...` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "yolov7c", "report", *argv], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-e6e")
    ap.add_argument("--img", type=int, default=1280)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "report_speed.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = dict(CASES, zoo_html=None)
        for name, extra in cases.items():
            if extra is None:
                argv = ["--zoo", "--format", "html", "--out", os.path.join(tmp, "zoo.html")]
            else:
                argv = [args.model, "--img", str(args.img), *extra]
            runs = [run_once(argv) for _ in range(args.repeat)]
            rows.append({"case": name, "argv": argv if extra is not None else argv[:3],
                         "wall_s": statistics.median(r[0] for r in runs),
                         "cpu_s": statistics.median(r[1] for r in runs),
                         "wall_runs": [r[0] for r in runs]})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"yolov7c report speed: {args.model} @ {args.img}, fresh process per run, "
          f"median of {args.repeat}; {os.cpu_count()} CPUs, load avg {load}")
    print(f"{'case':<16} {'wall s':>8} {'cpu s':>8}  < 3 s")
    for r in rows:
        print(f"{r['case']:<16} {r['wall_s']:>8.3f} {r['cpu_s']:>8.3f}  "
              f"{'yes' if r['wall_s'] < 3 else 'NO'}")
    result = {"model": args.model, "img": args.img, "repeat": args.repeat,
              "machine": {"cpus": os.cpu_count(), "load_avg_1m": load,
                          "python": platform.python_version(), "platform": platform.platform()},
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpf = out.with_name(f".{out.name}.tmp")
    tmpf.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmpf, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
