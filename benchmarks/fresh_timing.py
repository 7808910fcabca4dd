"""Time a compiled TVM library against onnxruntime in a fresh process; prints one JSON line.

    python benchmarks/fresh_timing.py LIB.so MODEL.onnx INPUT.npy [--rounds 3]

Why a separate process: a process that has just tuned keeps MetaSchedule's and XGBoost's
worker threads and memory around. Timed inside the tuning process, the same yolov7-tiny
library measured 29.5 ms; in a fresh process 24.2 ms (onnxruntime 23.9 and 23.8 ms).
``tune_convergence.py`` times every checkpoint through this script. Same threads for both
runtimes (``TVM_NUM_THREADS``, onnxruntime's intra-op threads = physical cores), same
input, alternating blocks (``backends.bench.alternating_ms``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def time_in_fresh_process(lib: Path, onnx_path: Path, x_npy: Path, rounds: int) -> dict:
    """Run this script in a child process; returns its JSON (tvm_ms, onnxruntime_ms,
    max_abs_err)."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(lib),
                          str(onnx_path), str(x_npy), "--rounds", str(rounds)],
                         check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lib")
    ap.add_argument("onnx")
    ap.add_argument("input")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    from yolov7c.backends.tvm.targets import cpu_threads
    threads = cpu_threads()
    import numpy as np

    from yolov7c.backends import tvm as btvm
    from yolov7c.backends.bench import alternating_ms
    from yolov7c.backends.onnx import ort_session
    x = np.load(a.input)
    sess = ort_session(a.onnx, threads)
    name = sess.get_inputs()[0].name
    ref = sess.run(None, {name: x})[0]
    runner = btvm.load(a.lib)
    err = float(np.abs(runner(x)[0] - ref).max())
    ms = alternating_ms({"tvm": lambda: runner(x), "ort": lambda: sess.run(None, {name: x})},
                        a.rounds)
    print(json.dumps({"tvm_ms": ms["tvm"], "onnxruntime_ms": ms["ort"], "max_abs_err": err,
                      "threads": threads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
