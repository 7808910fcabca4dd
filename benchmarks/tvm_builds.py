"""TVM libraries built from tuning databases, side by side with onnxruntime, on this CPU.

    python benchmarks/tvm_builds.py --model yolov7-tiny --img 416 \
        --db new=benchmarks/tune_db/yolov7-tiny_416_emeraldrapids.tar.gz --db old=DIR \
        [--no-defaults] [--out benchmarks/results/tvm_builds_<model>_<img>.json]

Each ``--db label=path`` is built (with the database's own pipeline; with ``--no-defaults``
also a second time without the default schedules of kernels the database does not cover)
and timed against onnxruntime in alternating blocks with a pause between them: same
process, same input, same threads, fp32, batch 1 (``backends.bench.alternating_ms``: not
call by call, see there). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-tiny")
    ap.add_argument("--img", type=int, default=416)
    ap.add_argument("--db", action="append", required=True, help="label=path (repeatable)")
    ap.add_argument("--no-defaults", action="store_true",
                    help="also build each without the default schedules")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from yolov7c.backends.tvm.targets import cpu_threads, host_cpu
    threads = cpu_threads()
    import tvm
    from tvm import relax

    from yolov7c.api.models import deploy
    from yolov7c.backends import common
    from yolov7c.backends.bench import alternating_ms
    from yolov7c.backends.onnx import export_onnx, ort_session
    from yolov7c.backends.tvm import compile as tc
    from yolov7c.backends.tvm import targets as T
    from yolov7c.backends.tvm.frontend import to_relax
    from yolov7c.io_util import write_json_atomic

    model = deploy(a.model).eval()
    x = common.example_input(model, a.img, seed=0).numpy()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(export_onnx(model, a.img, Path(tmp) / "m.onnx"), threads)
    name = sess.get_inputs()[0].name
    ref = sess.run(None, {name: x})[0]
    mod = to_relax(model, a.img)
    spec = T.resolve("llvm")
    rows = []
    for item in a.db:
        label, _, path = item.partition("=")
        for defaults in ([True, False] if a.no_defaults else [True]):
            facts = tc.DbCoverage()
            t0 = time.perf_counter()
            ex = tc.build(mod, spec, path, facts, default_schedules=defaults)
            build_s = time.perf_counter() - t0
            fn = relax.VirtualMachine(ex, tvm.cpu())["main"]
            xt = tvm.runtime.tensor(x)
            out = fn(xt)
            got = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
            ms = alternating_ms({"tvm": lambda: fn(xt),
                                 "ort": lambda: sess.run(None, {name: x})}, a.rounds)
            rows.append({"label": label, "db": path, "pipeline": facts.pipeline,
                         "tasks_tuned": facts.tuned, "tasks": facts.tasks,
                         "default_schedules": defaults, "tvm_ms": ms["tvm"],
                         "onnxruntime_ms": ms["ort"], "ratio": ms["tvm"] / ms["ort"],
                         "max_rel_err": float(np.abs(got - ref).max() / np.abs(ref).max()),
                         "build_s": build_s, "load1": os.getloadavg()[0]})
            r = rows[-1]
            print(f"{label:10s} {r['pipeline']:8s} defaults={'on ' if defaults else 'off'} "
                  f"{r['tasks_tuned']}/{r['tasks']} tasks  tvm {r['tvm_ms']:7.1f} ms  "
                  f"onnxruntime {r['onnxruntime_ms']:6.1f} ms  {r['ratio']:.2f}x  "
                  f"err {r['max_rel_err']:.1e}", flush=True)
    res = {"model": a.model, "img": a.img, "threads": threads, "cpu": host_cpu(), "rows": rows}
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"tvm_builds_{a.model}_{a.img}.json")
    write_json_atomic(out, res)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
