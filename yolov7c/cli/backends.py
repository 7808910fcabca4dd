"""Backend verbs: ``export`` (ONNX), ``compile`` / ``tune`` (TVM), ``bench``: argparse and
printing over ``yolov7c.api``."""
from __future__ import annotations

import argparse
import contextlib
from typing import Iterator

from . import emit_json

MODEL_HELP = ("zoo name (see `yolov7c list`), DSL .py, cfg .yaml, checkpoint (.ckpt) or "
              "official .pt")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--img", type=int, default=None, help="input size (square), a multiple of "
                   "the model's max stride (default: the model's, 640 P5 / 1280 P6)")
    p.add_argument("--nc", type=int, default=None, help="classes of a model without weights "
                   "(default 80)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights of a model "
                   "without weights")
    p.add_argument("--no-deploy", action="store_true",
                   help="skip the deploy pass pipeline (use the eval-mode training graph)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="llvm",
                   help="llvm (this CPU; aliases cpu, host), aarch64 (alias arm64), cuda, mali "
                        "(OpenCL + aarch64 host), opencl, vulkan")
    p.add_argument("--arch", help="CUDA SM architecture for --target cuda (default sm_90)")
    p.add_argument("--mcpu", help="build for another CPU model of this architecture (LLVM "
                                  "name, e.g. znver4; default: this CPU, with its own ISA "
                                  "flags)")


ANY_CPU_HELP = ("use a tuning database of another CPU class (e.g. tuned on AVX-512, used on "
                "AVX2): correct, slower than one tuned here")


@contextlib.contextmanager
def _flags_in_messages() -> Iterator[None]:
    """The library names its boolean argument ``db_any_cpu=True``; a CLI user types
    ``--db-any-cpu``."""
    from ..errors import UserError
    try:
        yield
    except UserError as e:
        if "db_any_cpu=True" not in str(e):
            raise
        raise UserError(str(e).replace("db_any_cpu=True", "--db-any-cpu"),
                        arg=e.arg) from None


def register(sub: argparse._SubParsersAction) -> None:
    from ..api.args import DEFAULT_TRIALS
    from ..backends.bench import DEFAULT_BACKENDS
    p = sub.add_parser("export", help="export the deploy model to ONNX (opset >= 17)")
    _model_args(p)
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--dynamic-batch", action="store_true", help="batch dimension is dynamic")
    p.add_argument("--nms", action="store_true",
                   help="append ONNX NonMaxSuppression: output detections (K, 7)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold in [0, 1]")
    p.add_argument("--score", type=float, default=0.25, help="NMS score threshold in [0, 1]")
    p.add_argument("--max-det", type=int, default=100, help="NMS boxes per class and image")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compile", help="compile with TVM for a target; writes a .so library")
    _model_args(p)
    _target_args(p)
    p.add_argument("--out", required=True, help="output library (.so)")
    p.add_argument("--db", help="MetaSchedule database from `yolov7c tune` (tuned build); "
                                "without it: default schedules, and a line saying how to tune")
    p.add_argument("--db-any-cpu", action="store_true", help=ANY_CPU_HELP)
    p.add_argument("--frontend", default="torch", choices=["torch", "onnx"],
                   help="torch.export (default) or via ONNX (an .onnx model always is)")
    p.add_argument("--no-nvcc", action="store_true", help="skip the nvcc check of CUDA kernels")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("tune", help="MetaSchedule auto-tuning into a resumable database")
    _model_args(p)
    _target_args(p)
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"measured candidates the database should hold (default "
                        f"{DEFAULT_TRIALS}; a rerun tops up)")
    p.add_argument("--db", required=True, help="database directory (created; resumed)")
    p.add_argument("--rpc", help="host:port:key of a TVM RPC tracker to measure on a device")
    p.add_argument("--op-names", help="comma-separated substrings: tune only matching tasks")
    p.add_argument("--per-round", type=int, default=16, help="trials per task per round")
    p.add_argument("--max-seconds", type=float, help="stop after the round crossing this")
    p.add_argument("--pack", help="also write the best record per kernel to this .tar.gz "
                                  "(small, read-only: for compile/bench --db, to ship)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("bench", help="side-by-side latency of the backends (one process)")
    _model_args(p)
    p.add_argument("--backends", default=None,
                   help=f"comma-separated subset of {','.join(DEFAULT_BACKENDS)} (default: all; "
                        "torch-compile and openvino when available)")
    p.add_argument("--threads", type=int, default=None, help="threads for every backend "
                   "(default: physical cores)")
    p.add_argument("--repeat", type=int, default=20, help="timed runs per backend (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--db", help="tuning database for tvm-tuned (a folder from `yolov7c tune`, "
                                "or a packed .tar.gz)")
    p.add_argument("--db-any-cpu", action="store_true", help=ANY_CPU_HELP)
    p.add_argument("--tune-trials", type=int, default=0,
                   help="tune in the run (into --db) when the database is missing")
    p.add_argument("--out", help="write (merge into) this result JSON; `yolov7c report --zoo "
                   "--bench FILE` reads it")
    p.set_defaults(func=cmd_bench)


def cmd_export(args: argparse.Namespace) -> int:
    from ..api.backends import export
    res = export(args.model, args.out, img=args.img, nc=args.nc, seed=args.seed,
                 deploy=not args.no_deploy, dynamic_batch=args.dynamic_batch, nms=args.nms,
                 iou=args.iou, score=args.score, max_det=args.max_det, opset=args.opset)
    if args.json:
        emit_json(res)
    else:
        print(f"wrote {res['out']} ({res['bytes'] / 1e6:.1f} MB, opset {res['opset']}, "
              f"img {res['img']}" + (", NMS" if res["nms"] else "") + ")")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from ..api.backends import compile as compile_
    with _flags_in_messages():
        res = compile_(args.model, args.out, target=args.target, img=args.img, nc=args.nc,
                       seed=args.seed, deploy=not args.no_deploy, db=args.db, arch=args.arch,
                       mcpu=args.mcpu, frontend=args.frontend,
                       nvcc=False if args.no_nvcc else None, db_any_cpu=args.db_any_cpu)
    if args.json:
        emit_json(res)
    else:
        print(f"wrote {res['path']} for {res['target']}{_target_brief(res['target_json'])}")
        for n in res.get("notes", []):
            print(f"  {n}")
    return 0


def _target_brief(target_json: str) -> str:
    """`` (znver3, 2 cores)`` from a target's JSON (its mattr list is long; --json has it)."""
    import json
    try:
        t = json.loads(target_json)
    except ValueError:
        return f" {target_json}"
    parts = [str(t[k]) for k in ("mcpu", "arch", "device") if t.get(k)]
    if t.get("num-cores"):
        parts.append(f"{t['num-cores']} cores")
    return f" ({', '.join(parts)})" if parts else ""


def cmd_tune(args: argparse.Namespace) -> int:
    from ..api.backends import tune
    ops = [s for s in (args.op_names or "").split(",") if s] or None
    res = tune(args.model, args.db, target=args.target, img=args.img, trials=args.trials,
               nc=args.nc, seed=args.seed, deploy=not args.no_deploy, rpc=args.rpc,
               op_names=ops, per_round=args.per_round, arch=args.arch, mcpu=args.mcpu,
               max_seconds=args.max_seconds, pack=args.pack)
    if args.json:
        emit_json(res)
    else:
        print(f"{args.db}: {res.get('records_after')} records ({res.get('measured')} new), "
              f"{res.get('skipped_duplicates')} duplicates skipped, "
              f"{res.get('seconds', 0):.0f} s")
        if res.get("packed"):
            print(f"packed {res['packed']['records']} records into {res['packed']['path']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..api.backends import bench
    from ..backends.bench import table
    backends = None if args.backends is None else [b for b in args.backends.split(",") if b]
    with _flags_in_messages():
        res = bench(args.model, img=args.img, nc=args.nc, seed=args.seed, backends=backends,
                    threads=args.threads, repeat=args.repeat, warmup=args.warmup, db=args.db,
                    tune_trials=args.tune_trials, deploy=not args.no_deploy, out=args.out,
                    db_any_cpu=args.db_any_cpu)
    if args.json:
        emit_json(res)
    else:
        print(table(res))
        if args.out:
            print(f"wrote {args.out}")
    return 0
