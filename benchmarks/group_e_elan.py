"""E6E's deploy graph vs the same graph after ``group-e-elan``, on onnxruntime and TVM.

    python benchmarks/group_e_elan.py [--model yolov7-e6e] [--img 320] [--rounds 3]
        [--block 3] [--no-tvm] [--out benchmarks/results/group_e_elan_<model>_<img>.json]

One process, one input, one random-weight model: the deploy pipeline's module ("unfused":
E6E's two summed ELAN branches as they are) and that module after the verified
``group-e-elan`` pass. Both go to onnxruntime (exported ONNX) and to TVM (Relax via
torch.export, built *untuned*: TVM's default schedules, pipeline "zero"; a tuned build of
E6E takes hours on 2 cores). All four run in one loop of alternating blocks
(``backends.bench.alternating_ms``), so every row sees the same machine load — and the
load average is recorded, because this machine is shared with other work. fp32, batch 1.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _convs(gm) -> int:
    from torch import nn
    return sum(1 for n in gm.graph.nodes if n.op == "call_module"
               and isinstance(gm.get_submodule(str(n.target)), nn.Conv2d))


def _onnx_ops(path: Path) -> dict[str, int]:
    import onnx
    ops: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-e6e")
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--no-tvm", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args(argv)

    from yolov7c.api.models import resolve
    from yolov7c.backends import common
    from yolov7c.backends.bench import alternating_ms
    from yolov7c.backends.onnx import export_onnx, ort_session
    from yolov7c.backends.tvm.targets import cpu_threads, host_cpu
    from yolov7c.io_util import write_json_atomic
    from yolov7c.passes import run_passes

    threads, load0 = cpu_threads(), os.getloadavg()
    model = resolve(a.model, img=a.img)
    base = run_passes(model, "deploy", verify=False).module
    res = run_passes(base, ["group-e-elan"], img=a.img)  # verified at the measured size
    mods = {"deploy": base.eval(), "deploy+group-e-elan": res.module.eval()}
    x = common.example_input(base, a.img, seed=0)
    import torch
    with torch.no_grad():
        ref = base(x)[0].numpy()
    xn = x.numpy()
    rows: dict[str, dict] = {}
    fns, outs = {}, {}

    def errs(backend: str, label: str, got: np.ndarray) -> None:
        """vs PyTorch's unfused output, and vs the unfused graph on the same backend."""
        r = rows[label]
        r[f"{backend}_rel_err"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        base = outs.setdefault(backend, got)
        r[f"{backend}_vs_unfused_rel_err"] = float(np.abs(got - base).max()
                                                   / np.abs(base).max())
    with tempfile.TemporaryDirectory() as tmp:
        for label, m in mods.items():
            p = export_onnx(m, a.img, Path(tmp) / f"{len(rows)}.onnx")
            sess = ort_session(p, threads)
            name = sess.get_inputs()[0].name
            got = sess.run(None, {name: xn})[0]
            fns[f"onnxruntime {label}"] = lambda s=sess, n=name: s.run(None, {n: xn})
            rows[label] = {"params": sum(t.numel() for t in m.parameters()),
                           "conv_nodes": _convs(m), "onnx_ops": _onnx_ops(p)}
            errs("onnxruntime", label, got)
    if not a.no_tvm:
        import tvm
        from tvm import relax

        from yolov7c.backends.tvm import compile as tc
        from yolov7c.backends.tvm import targets as T
        from yolov7c.backends.tvm.frontend import to_relax
        xt = tvm.runtime.tensor(xn)
        for label, m in mods.items():
            t0 = time.perf_counter()
            ex, _ = tc.build(to_relax(m, a.img), T.resolve("llvm"))  # untuned: defaults
            rows[label]["tvm_build_s"] = round(time.perf_counter() - t0, 1)
            fn = relax.VirtualMachine(ex, tvm.cpu())["main"]
            out = fn(xt)
            got = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
            errs("tvm", label, got)
            fns[f"tvm {label}"] = lambda fn=fn: fn(xt)
    ms = alternating_ms(fns, a.rounds, a.block)
    for key, v in ms.items():
        backend, _, label = key.partition(" ")
        rows[label][f"{backend}_ms"] = round(v, 1)
    result = {"model": a.model, "img": a.img, "batch": 1, "dtype": "float32",
              "threads": threads, "cpu": host_cpu(), "tvm": "untuned (default schedules)",
              "rounds": a.rounds, "block": a.block, "pass_max_rel_err": res.max_rel_err,
              "loadavg_before": load0, "loadavg_after": os.getloadavg(),
              "note": "shared machine: other work ran during the measurement",
              "rows": rows}
    print(f"{a.model} @ {a.img}, batch 1, fp32, {threads} threads; load average "
          f"{load0[0]:.1f} → {result['loadavg_after'][0]:.1f} (shared machine)")
    backends = ["onnxruntime"] + ([] if a.no_tvm else ["tvm"])
    print(f"{'graph':22s} {'params':>12s} {'convs':>6s} " +
          " ".join(f"{b + ' ms':>15s}" for b in backends))
    for label, r in rows.items():
        print(f"{label:22s} {r['params']:12,d} {r['conv_nodes']:6d} " +
              " ".join(f"{r[b + '_ms']:15.1f}" for b in backends))
    first, second = rows.values()
    print("grouped / unfused: " + ", ".join(
        f"{b} {second[b + '_ms'] / first[b + '_ms']:.3f}x (outputs differ by "
        f"{second[b + '_vs_unfused_rel_err']:.1e} rel.)" for b in backends))
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"group_e_elan_{a.model}_{a.img}.json")
    write_json_atomic(out, result)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
