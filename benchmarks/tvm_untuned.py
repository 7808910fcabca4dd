"""Untuned TVM on this CPU, before and after default schedules for every kernel, beside
onnxruntime.

    python benchmarks/tvm_untuned.py [--model yolov7-tiny] [--img 416] [--rounds 4]
        [--db label=path ...] [--out benchmarks/results/tvm_untuned_<model>_<img>.json]

Rows (all timed in one loop of alternating blocks, same process, input and threads, fp32,
batch 1: ``backends.bench.alternating_ms``, every row sees the same machine load):

- ``untuned-before``: what an untuned ``compile`` built before: TVM's "zero" pipeline
  (NCHW), each kernel only with the parallel-outer-loops default of ``fallback``;
- ``untuned-now``: what it builds now (``compile.build`` without a database): the default
  CPU pipeline, each NHWC conv with its first seeded tiling for this CPU's vector unit, the
  Winograd kernels at their first parameter point, the rest as before;
- ``--db label=path``: a tuning database built the usual way (refused when tuned for
  another CPU class: the row says so; ``--db-any-cpu`` builds it anyway: the nearest
  class's records on this CPU);
- ``onnxruntime``: ORT_ENABLE_ALL, CPU EP.

Prints a Markdown table and writes JSON (and the table beside it, ``.md``) with the machine's
load average before and after: on a shared machine every number is inflated alike.
"""
from __future__ import annotations

import argparse
import os
import platform
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
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--db", action="append", default=[], help="label=path (repeatable)")
    ap.add_argument("--db-any-cpu", action="store_true",
                    help="build the --db databases even when tuned for another CPU class")
    ap.add_argument("--no-before", action="store_true", help="skip the old untuned build")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from yolov7c.backends.tvm.targets import cpu_facts, cpu_threads, host_cpu
    threads = cpu_threads()
    import tvm
    from tvm import relax

    from yolov7c.api.models import deploy
    from yolov7c.backends import common
    from yolov7c.backends.bench import alternating_ms, cpu_name
    from yolov7c.backends.onnx import export_onnx, ort_session
    from yolov7c.backends.tvm import compile as tc
    from yolov7c.backends.tvm import pipeline as pl
    from yolov7c.backends.tvm import targets as T
    from yolov7c.backends.tvm.frontend import to_relax
    from yolov7c.errors import UserError
    from yolov7c.io_util import write_json_atomic, write_text_atomic

    load0 = os.getloadavg()
    model = deploy(a.model).eval()
    x = common.example_input(model, a.img, seed=0).numpy()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(export_onnx(model, a.img, Path(tmp) / "m.onnx"), threads)
    name = sess.get_inputs()[0].name
    ref = sess.run(None, {name: x})[0]
    mod = to_relax(model, a.img)
    spec = T.resolve("llvm")
    target = spec.tvm_target()
    xt = tvm.runtime.tensor(x)
    fns = {"onnxruntime": lambda: sess.run(None, {name: x})}
    rows: dict[str, dict] = {"onnxruntime": {"build_s": None, "note": "ORT_ENABLE_ALL"}}

    def add(key: str, ex, build_s: float, note: str) -> None:
        fn = relax.VirtualMachine(ex, tvm.cpu())["main"]
        out = fn(xt)
        got = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
        fns[key] = lambda fn=fn: fn(xt)
        rows[key] = {"build_s": round(build_s, 1), "note": note,
                     "max_rel_err": float(np.abs(got - ref).max() / np.abs(ref).max())}
        print(f"built {key} in {build_s:.0f} s", flush=True)

    if not a.no_before:
        t0 = time.perf_counter()
        ex, _ = pl.build(mod, target, "zero")   # the untuned build before default schedules
        add("untuned-before", ex, time.perf_counter() - t0,
            "zero pipeline (NCHW), parallel outer loops only")
    t0 = time.perf_counter()
    ex, facts = tc.build(mod, spec, None)
    add("untuned-now", ex, time.perf_counter() - t0,
        f"{facts.pipeline} pipeline, {facts.seeded} convs seeded ({spec.vector.isa}), "
        "rest default schedules")
    for item in a.db:
        label, _, path = item.partition("=")
        t0 = time.perf_counter()
        try:
            ex, facts = tc.build(mod, spec, path, any_cpu=a.db_any_cpu)
        except UserError as e:
            rows[label] = {"skipped": str(e)}
            continue
        add(label, ex, time.perf_counter() - t0,
            f"{path}: {facts.tuned}/{facts.tasks} tasks tuned, {facts.pipeline}"
            + (f"; {facts.cpu_note}" if facts.cpu_note else ""))
    ms = alternating_ms(fns, a.rounds, a.block)
    ort = ms["onnxruntime"]
    for k, r in rows.items():
        if k in ms:
            r.update(median_ms=round(ms[k], 2), vs_onnxruntime=round(ms[k] / ort, 2))
    load1 = os.getloadavg()
    res = {"model": a.model, "img": a.img, "threads": threads, "host": host_cpu(),
           "cpu": cpu_facts(), "cpu_name": cpu_name(),
           "load_before": [round(v, 2) for v in load0],
           "load_after": [round(v, 2) for v in load1],
           "method": f"one alternating loop: {a.rounds} rounds x {a.block} timed calls per "
                     "row, each block after a 0.2 s pause and 2 untimed calls",
           "versions": {"tvm": tvm.__version__, "python": platform.python_version()},
           "rows": rows}
    lines = [f"{a.model} @ {a.img}, {threads} threads, {res['cpu']['mcpu']} "
             f"({res['cpu']['vector']}), load average {load0[0]:.1f} → {load1[0]:.1f} "
             "(a shared machine: other work ran during the loop; rows are comparable with "
             "each other, not with a quiet machine)", "",
             "| build | median ms | × onnxruntime | build s | max rel err | note |",
             "|---|---|---|---|---|---|"]
    for k, r in rows.items():
        if "skipped" in r:
            lines.append(f"| {k} | — | | | | skipped: {r['skipped']} |")
            continue
        err = f"{r['max_rel_err']:.1e}" if "max_rel_err" in r else ""
        lines.append(f"| {k} | {r['median_ms']:.1f} | {r['vs_onnxruntime']:.2f} | "
                     f"{r['build_s'] if r['build_s'] is not None else ''} | {err} | "
                     f"{r['note']} |")
    table = "\n".join(lines)
    print(table)
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"tvm_untuned_{a.model}_{a.img}.json")
    write_json_atomic(out, res)
    write_text_atomic(out.with_suffix(".md"), table + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
