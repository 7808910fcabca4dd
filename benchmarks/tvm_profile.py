"""Where a tuned TVM library spends its time, kernel by kernel, next to onnxruntime's operators.

    python benchmarks/tvm_profile.py --model yolov7 --img 640 \
        --db benchmarks/tune_db/yolov7_640_emeraldrapids.tar.gz [--reps 10] [--out DIR]

Why: a database's kernel-sum estimate (each task's best record x its calls) reads 9-15 %
below the library built from it, and end-to-end numbers alone cannot say which kernels pay
that, nor whether onnxruntime is faster at convolutions or elsewhere. This prints, for the
library built from ``--db`` (its own pipeline), per kernel: calls per image, time inside the
model (the Relax VM's instrument hook; ~35 us per call of hook overhead, reported), the
database record x calls, their ratio, and GFLOP/s inside the model against the measured
matmul peak. Then onnxruntime's time per operator type (its own profiler, same threads and
input). Writes ``tvm_profile_<model>_<img>.json`` and ``.png`` (in-model vs record, per
kernel) into ``--out`` (default ``benchmarks/results``).
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PREPACKED = "_prepacked"     # suffix the weight pre-packing gives a kernel's function name


def kernel_tasks(mod, target, pipeline: str) -> tuple[list, dict[str, int]]:
    """The tuning tasks of ``mod`` and, for every kernel function of the fused module, the
    index of the task it dispatches to (structurally equal, as the database matches it)."""
    import tvm
    import tvm_ffi

    from yolov7c.backends.tvm import pipeline as pl
    fused = pl.tuning_module(mod, target, pipeline)
    tasks = pl.extract_tasks(mod, target, pipeline, fused)
    owner: dict[str, int] = {}
    for gv, func in fused.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        key = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        for j, t in enumerate(tasks):
            if tvm_ffi.structural_equal(key, t.dispatched[0]):
                owner[gv.name_hint] = j
                break
    return tasks, owner


def instrumented_ms(vm, x, reps: int) -> tuple[dict[str, float], dict[str, int]]:
    """(ms per image, calls per image) of every function the VM calls, over ``reps`` runs."""
    acc: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    started: dict[str, float] = {}

    def hook(func, name, before, ret, *args) -> int:
        if before:
            started[name] = time.perf_counter()
        else:
            acc[name] += time.perf_counter() - started[name]
            calls[name] += 1
        return 0          # VMInstrumentReturnKind.NO_OP

    vm["main"](x)
    vm.set_instrument(hook)
    vm["main"](x)         # warm, with the hook on
    acc.clear()
    calls.clear()
    for _ in range(reps):
        vm["main"](x)
    return ({k: v / reps * 1e3 for k, v in acc.items()},
            {k: v // reps for k, v in calls.items()})


def ort_ops_ms(onnx_path: Path, x, threads: int, reps: int, tmp: Path) -> dict[str, float]:
    """onnxruntime's own per-node profile, summed per operator type (ms per image)."""
    from yolov7c.backends.onnx import ort_session
    sess = ort_session(onnx_path, threads, profile_prefix=str(tmp / "ort"))
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(2):
        sess.run(None, feed)
    for _ in range(reps):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"].get("op_name", "?")] += e["dur"] / 1e3 / (reps + 2)
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-tiny")
    ap.add_argument("--img", type=int, default=416)
    ap.add_argument("--db", required=True, help="tuning database (folder or .tar.gz)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--top", type=int, default=30, help="kernels listed in the table")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args(argv)
    from yolov7c.backends.tvm.targets import cpu_threads, host_cpu
    threads = cpu_threads()
    import tvm
    from tvm import relax
    from tvm.s_tir.analysis import estimate_tir_flops

    from yolov7c.api.models import deploy
    from yolov7c.backends import common
    from yolov7c.backends.bench import measure_peak_gflops
    from yolov7c.backends.onnx import export_onnx
    from yolov7c.backends.tvm import compile as tc
    from yolov7c.backends.tvm import database as dbm
    from yolov7c.backends.tvm import targets as T
    from yolov7c.backends.tvm.frontend import to_relax
    from yolov7c.backends.tvm.tuning import _best_ms
    from yolov7c.io_util import write_json_atomic

    model = deploy(a.model).eval()
    x = common.example_input(model, a.img, seed=0).numpy()
    mod = to_relax(model, a.img)
    spec = T.resolve("llvm")
    target = spec.tvm_target()
    d = dbm.resolve_dir(a.db)
    pipeline = dbm.read_meta(d).get("pipeline", "zero")
    db = dbm.open_database(d)
    tasks, owner = kernel_tasks(mod, target, pipeline)
    record = [(_best_ms(db, db.commit_workload(t.dispatched[0]))
               if db.has_workload(t.dispatched[0]) else None) for t in tasks]
    flops = [float(estimate_tir_flops(t.dispatched[0])) for t in tasks]
    vm = relax.VirtualMachine(tc.build(mod, spec, a.db)[0], tvm.cpu())
    xt = tvm.runtime.tensor(x)
    t0 = time.perf_counter()
    for _ in range(a.reps):
        vm["main"](xt)
    e2e = (time.perf_counter() - t0) / a.reps * 1e3
    in_model, calls = instrumented_ms(vm, xt, a.reps)
    peak = measure_peak_gflops(threads)

    kernels = []
    for name, ms in in_model.items():
        j = owner.get(name.removesuffix(PREPACKED))
        if j is None:
            continue              # VM builtins (allocation, tuples): summed below
        rec = record[j]
        n = calls[name]
        kernels.append({"kernel": name, "task": tasks[j].task_name, "calls": n, "model_ms": ms,
                        "record_ms": None if rec is None else rec * n,
                        "gflops_in_model": flops[j] * n / ms / 1e6 if ms else None})
    kernels.sort(key=lambda k: -k["model_ms"])
    builtins = sum(v for k, v in in_model.items() if k.removesuffix(PREPACKED) not in owner)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export_onnx(model, a.img, Path(tmp) / "m.onnx")
        ort_ops = ort_ops_ms(onnx, x, threads, a.reps, Path(tmp))

    tot_model = sum(k["model_ms"] for k in kernels)
    tot_rec = sum(k["record_ms"] or 0.0 for k in kernels)
    print(f"{a.model} @ {a.img}, {threads} threads, {pipeline} pipeline; matmul peak "
          f"{peak:.0f} GFLOP/s; end-to-end {e2e:.1f} ms (no hook)")
    print(f"{'kernel':44s} {'calls':>5s} {'model ms':>9s} {'record ms':>9s} {'ratio':>6s} "
          f"{'GFLOP/s':>8s}")
    for k in kernels[:a.top]:
        rec, g, ms = k["record_ms"], k["gflops_in_model"], k["model_ms"]
        print(f"{k['kernel'][:44]:44s} {k['calls']:5d} {ms:9.3f} "
              f"{'-' if rec is None else f'{rec:9.3f}':>9s} "
              f"{'-' if not rec else f'{ms / rec:6.2f}':>6s} "
              f"{'-' if g is None else f'{g:8.0f}':>8s}")
    print(f"{'all ' + str(len(kernels)) + ' kernels':44s} {'':5s} {tot_model:9.2f} "
          f"{tot_rec:9.2f} {tot_model / tot_rec if tot_rec else float('nan'):6.2f}")
    print(f"VM builtins (allocation, tuples): {builtins:.2f} ms")
    print("\nonnxruntime, ms per image by operator type (its profiler):")
    for op, ms in ort_ops.items():
        if ms >= 0.05:
            print(f"  {op:24s} {ms:8.2f}")
    print(f"  {'all':24s} {sum(ort_ops.values()):8.2f}")

    res = {"model": a.model, "img": a.img, "db": a.db, "pipeline": pipeline, "threads": threads,
           "cpu": host_cpu(), "reps": a.reps, "peak_gflops": peak, "tvm_e2e_ms": e2e,
           "tvm_kernels_ms": tot_model, "tvm_records_ms": tot_rec, "tvm_builtins_ms": builtins,
           "kernels": kernels, "onnxruntime_ops_ms": ort_ops}
    out = Path(a.out)
    stem = f"tvm_profile_{a.model}_{a.img}"
    write_json_atomic(out / f"{stem}.json", res)
    _plot(res, out / f"{stem}.png")
    print(f"wrote {out / stem}.json and .png", file=sys.stderr)
    return 0


def _plot(res: dict, path: Path) -> None:
    """Left: each kernel's time in the model against its database record (log-log, y = x
    and +10 % lines). Right: TVM by kernel kind next to onnxruntime by operator type."""
    from yolov7c.figures import pyplot, save_png
    plt = pyplot()
    ks = [k for k in res["kernels"] if k["record_ms"]]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.scatter([k["record_ms"] for k in ks], [k["model_ms"] for k in ks], s=12)
    lo = min(min(k["record_ms"] for k in ks), min(k["model_ms"] for k in ks)) if ks else 0.01
    hi = max(max(k["record_ms"] for k in ks), max(k["model_ms"] for k in ks)) if ks else 1.0
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="model = record")
    ax.plot([lo, hi], [1.1 * lo, 1.1 * hi], "k--", lw=1, label="+10 %")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("database record x calls (ms)")
    ax.set_ylabel("time inside the model (ms)")
    ax.legend(fontsize=8)
    ax.set_title(f"kernels: {res['tvm_kernels_ms']:.1f} ms in the model, "
                 f"{res['tvm_records_ms']:.1f} ms recorded", fontsize=9)
    kinds: dict[str, float] = collections.defaultdict(float)
    for k in res["kernels"]:
        kinds["conv (+epilogue)" if "conv2d" in k["task"] else "other kernels"] += k["model_ms"]
    kinds["VM builtins"] = res["tvm_builtins_ms"]
    ort = res["onnxruntime_ops_ms"]
    top = list(ort)[:5]
    rest = sum(v for op, v in ort.items() if op not in top)
    bottom = 0.0
    for i, (label, v) in enumerate(kinds.items()):
        bx.bar(["TVM"], [v], bottom=[bottom], color=f"C{i}", label=f"TVM: {label}")
        bottom += v
    bottom = 0.0
    for i, op in enumerate([*top, "other"]):
        v = ort[op] if op != "other" else rest
        bx.bar(["onnxruntime"], [v], bottom=[bottom], color=f"C{i + 3}", label=f"ORT: {op}")
        bottom += v
    bx.set_ylabel("ms per image (profiled)")
    bx.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{res['model']} @ {res['img']}, {res['threads']} threads "
                 f"({res['pipeline']} pipeline)")
    save_png(fig, path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    sys.exit(main())
