"""TVM CUDA on a real GPU, in one bounded run: compile yolov7-tiny, a short MetaSchedule tune,
and batch-1 latency of TVM (untuned = dlight defaults, tuned) against PyTorch eager (fp32,
fp16) and onnxruntime (CUDA EP when the installed package has it).

    python benchmarks/gpu_tvm.py --img 640 --tune-seconds 150 --out DIR

Writes DIR/gpu_tvm.json and prints a table. Timings are device-resident (inputs on the GPU,
synchronised per call) except onnxruntime, which copies numpy in and out (noted).

Status: written for the lent GPU machine (TVM travels there as carried files: the wheel's
259 MB compiler library compresses to 61-74 MB, over one call's 64 MiB, so it goes in two
parts); NOT yet run: the session's device time was used up before the first command.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _time(fn, sync, repeat: int = 50, warmup: int = 10) -> dict:
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return {"median_ms": ts[len(ts) // 2], "min_ms": ts[0], "repeat": repeat}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7-tiny")
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--tune-seconds", type=float, default=150)
    ap.add_argument("--per-round", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"model": a.model, "img": a.img, "batch": 1, "rows": {}, "notes": []}

    def save() -> None:
        (out / "gpu_tvm.json").write_text(json.dumps(res, indent=1, default=str))

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True)
    res["gpu"] = smi.stdout.strip() or smi.stderr.strip()
    import torch

    from yolov7c.api.models import deploy
    from yolov7c.backends import common
    model = deploy(a.model).eval()
    x = common.example_input(model, a.img, seed=0)
    res["versions"] = {"torch": torch.__version__}
    dev = torch.device("cuda")
    with torch.no_grad():
        m32 = common.Outputs(model).to(dev).eval()
        xg = x.to(dev)
        ref = m32(xg)[0].float().cpu().numpy()
        res["rows"]["torch-eager-fp32"] = _time(lambda: m32(xg), torch.cuda.synchronize)
        m16 = common.Outputs(model).to(dev).half().eval()
        xh = xg.half()
        err16 = float(np.abs(m16(xh)[0].float().cpu().numpy() - ref).max())
        res["rows"]["torch-eager-fp16"] = dict(
            _time(lambda: m16(xh), torch.cuda.synchronize), max_abs_err=err16)
    save()

    try:  # onnxruntime: CUDA EP only if this onnxruntime build has it
        import onnxruntime as ort

        from yolov7c.backends.onnx import export_onnx
        onnx_path = export_onnx(model, a.img, out / "m.onnx")
        provs = ort.get_available_providers()
        res["versions"]["onnxruntime"] = ort.__version__
        res["notes"].append(f"onnxruntime providers: {provs}")
        use = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in provs]
        sess = ort.InferenceSession(str(onnx_path), providers=use[:1])
        xn = x.numpy()
        name = sess.get_inputs()[0].name
        err = float(np.abs(sess.run(None, {name: xn})[0] - ref).max())
        res["rows"][f"onnxruntime-{use[0].replace('ExecutionProvider', '')}"] = dict(
            _time(lambda: sess.run(None, {name: xn}), lambda: None, repeat=30),
            max_abs_err=err, note="numpy in/out (includes host<->device copies)")
        (out / "m.onnx").unlink(missing_ok=True)
    except Exception as e:  # noqa: BLE001 - a benchmark row, not the run
        res["notes"].append(f"onnxruntime failed: {type(e).__name__}: {str(e)[:300]}")
    save()

    import tvm
    from tvm import relax

    from yolov7c.backends import tvm as btvm
    from yolov7c.backends.tvm import targets as T
    res["versions"]["tvm"] = tvm.__version__
    tdev = tvm.cuda(0)
    res["notes"].append(f"tvm.cuda(0).exist={tdev.exist}")

    def tvm_row(label: str, lib: Path) -> None:
        ex = tvm.runtime.load_module(str(lib))
        vm = relax.VirtualMachine(ex, tdev)
        xt = tvm.runtime.tensor(x.numpy(), tdev)
        got = vm["main"](xt)
        got = (got[0] if not hasattr(got, "numpy") else got).numpy()
        row = _time(lambda: vm["main"](xt), tdev.sync)
        row["max_abs_err"] = float(np.abs(got - ref).max())
        res["rows"][label] = row
        save()

    for label, db in (("tvm-cuda-untuned(dlight)", None),):
        t0 = time.perf_counter()
        meta = btvm.compile_model(model, "cuda", a.img, out / "u.so", arch=a.arch, nvcc=False)
        res["notes"].append(f"{label}: compile {time.perf_counter() - t0:.1f} s; {meta.notes}")
        tvm_row(label, out / "u.so")
    if a.tune_seconds > 0:
        try:
            import xgboost  # noqa: F401
            cm = "xgb"
        except ImportError:
            cm = "random"
        db = out / "db"
        t0 = time.perf_counter()
        try:
            rep = btvm.tune(model, "cuda", a.img, db, trials=100000, arch=a.arch,
                            per_round=a.per_round, max_seconds=a.tune_seconds, cost_model=cm)
            res["tune"] = {"seconds": time.perf_counter() - t0, "cost_model": cm,
                           "tasks": rep.tasks, "records": rep.records_after,
                           "tasks_with_record": rep.tasks - len(rep.untuned_tasks),
                           "curve": rep.curve}
            save()
            meta = btvm.compile_model(model, "cuda", a.img, out / "t.so", arch=a.arch,
                                      db_dir=db, nvcc=False)
            res["notes"].append(f"tvm-cuda-tuned: {meta.notes}")
            tvm_row("tvm-cuda-tuned", out / "t.so")
        except Exception as e:  # noqa: BLE001 - keep the rows measured so far
            import traceback
            res["notes"].append(f"tuning failed: {type(e).__name__}: {str(e)[-500:]}")
            res["tune_traceback"] = traceback.format_exc()[-3000:]
            save()
    for f in ("u.so", "t.so", "u.so.json", "t.so.json"):
        (out / f).unlink(missing_ok=True)
    res["host_cpu"] = T.host_cpu()
    save()
    print(f"{'backend':28s} {'median ms':>10s} {'max abs err':>12s}")
    for k, v in res["rows"].items():
        print(f"{k:28s} {v['median_ms']:10.3f} {v.get('max_abs_err', 0):12.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
