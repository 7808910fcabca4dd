"""TVM libraries built from tuning databases, side by side with onnxruntime, on this CPU.

    python benchmarks/tvm_builds.py --model yolov7-tiny --img 416 \
        --db new=benchmarks/tune_db/yolov7-tiny_416_emeraldrapids.tar.gz --db old=DIR \
        [--no-defaults] [--out benchmarks/results/tvm_builds_<model>_<img>.json]

Each ``--db label=path`` is built (with the database's own pipeline; with ``--no-defaults``
also a second time without the default schedules of kernels the database does not cover).
Then all libraries and onnxruntime are timed in one loop of alternating blocks with a pause
between them: same process, same input, same threads, fp32, batch 1, the same machine load
for every row (``backends.bench.alternating_ms``: not call by call, see there). Prints a
table and writes JSON.
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
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    labels = [item.partition("=")[0] for item in a.db]
    if len(set(labels)) < len(labels) or "onnxruntime" in labels:
        ap.error(f"--db labels {labels}: give each database its own label (not onnxruntime)")
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
    rows, fns = [], {"onnxruntime": lambda: sess.run(None, {name: x})}
    xt = tvm.runtime.tensor(x)
    for item in a.db:
        label, _, path = item.partition("=")
        for defaults in ([True, False] if a.no_defaults else [True]):
            t0 = time.perf_counter()
            ex, facts = tc.build(mod, spec, path, default_schedules=defaults)
            build_s = time.perf_counter() - t0
            fn = relax.VirtualMachine(ex, tvm.cpu())["main"]
            out = fn(xt)
            got = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
            key = f"{label}{'' if defaults else ' (no defaults)'}"
            fns[key] = lambda fn=fn: fn(xt)
            rows.append({"label": label, "key": key, "db": path, "pipeline": facts.pipeline,
                         "tasks_tuned": facts.tuned, "tasks": facts.tasks,
                         "default_schedules": defaults,
                         "max_rel_err": float(np.abs(got - ref).max() / np.abs(ref).max()),
                         "build_s": build_s})
    # every library and onnxruntime in one alternating loop: all see the same machine load
    ms = alternating_ms(fns, a.rounds)
    for r in rows:
        r.update(tvm_ms=ms[r["key"]], onnxruntime_ms=ms["onnxruntime"],
                 ratio=ms[r["key"]] / ms["onnxruntime"], load1=os.getloadavg()[0])
        print(f"{r['key']:22s} {r['pipeline']:12s} {r['tasks_tuned']}/{r['tasks']} tasks  "
              f"tvm {r['tvm_ms']:7.1f} ms  onnxruntime {r['onnxruntime_ms']:6.1f} ms  "
              f"{r['ratio']:.2f}x  err {r['max_rel_err']:.1e}", flush=True)
    res = {"model": a.model, "img": a.img, "threads": threads, "cpu": host_cpu(), "rows": rows}
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"tvm_builds_{a.model}_{a.img}.json")
    write_json_atomic(out, res)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
