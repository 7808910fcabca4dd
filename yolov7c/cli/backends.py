"""Backend verbs: ``export`` (ONNX), ``compile`` / ``tune`` / ``run`` (TVM), ``bench``.

Each verb builds the model (zoo name or checkpoint), puts it through the deploy pass
pipeline, and hands the eval-mode module to the backend API in ``yolov7c.backends``.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from . import emit_json


def build_model(name: str, nc: int = 80, deploy: bool = True):
    """Eval-mode model for a zoo name or a checkpoint path, in deploy form when asked."""
    import yolov7c
    if Path(name).suffix in (".pt", ".ckpt", ".pth") or Path(name).is_file():
        if not Path(name).is_file():
            raise UserError(f"{name}: no such checkpoint file")
        model = yolov7c.load(name)
    else:
        if name not in yolov7c.zoo.list():
            raise UserError(f"model {name!r}: not in the zoo; use one of "
                            f"{', '.join(yolov7c.zoo.list())} or a checkpoint path")
        model = yolov7c.build(name, nc=nc)
    model.eval()
    if deploy:
        model = yolov7c.deploy(model)
    return model.eval()


def _model_args(p: argparse.ArgumentParser, img_default: int | None = 640) -> None:
    p.add_argument("model", help="zoo model name (see `yolov7c list`) or checkpoint path")
    p.add_argument("--img", type=int, default=img_default, help="input size (square), "
                   "a multiple of the model's max stride")
    p.add_argument("--nc", type=int, default=80, help="number of classes for zoo models")
    p.add_argument("--no-deploy", action="store_true",
                   help="skip the deploy pass pipeline (export the eval-mode training graph)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="llvm",
                   help="llvm (this CPU), aarch64, cuda, mali (OpenCL + aarch64 host), vulkan")
    p.add_argument("--arch", help="CUDA SM architecture for --target cuda (default sm_90)")
    p.add_argument("--mcpu", help="override the CPU model (default: detected for llvm)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the deploy model to ONNX (opset >= 17)")
    _model_args(p)
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--dynamic-batch", action="store_true", help="batch dimension is dynamic")
    p.add_argument("--nms", action="store_true",
                   help="append ONNX NonMaxSuppression: output detections (K, 7)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--score", type=float, default=0.25, help="NMS score threshold")
    p.add_argument("--max-det", type=int, default=100, help="NMS boxes per class and image")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compile", help="compile with TVM for a target; writes a .so library")
    _model_args(p)
    _target_args(p)
    p.add_argument("--out", required=True, help="output library (.so)")
    p.add_argument("--db", help="MetaSchedule database from `yolov7c tune` (tuned build)")
    p.add_argument("--frontend", default="torch", choices=["torch", "onnx"],
                   help="torch.export (default) or via an ONNX file")
    p.add_argument("--no-nvcc", action="store_true", help="skip the nvcc check of CUDA kernels")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("tune", help="MetaSchedule auto-tuning into a resumable database")
    _model_args(p)
    _target_args(p)
    p.add_argument("--trials", type=int, required=True,
                   help="measured candidates the database should hold (tops up on rerun)")
    p.add_argument("--db", required=True, help="database directory (created; resumed)")
    p.add_argument("--rpc", help="host:port:key of a TVM RPC tracker to measure on a device")
    p.add_argument("--op-names", help="comma-separated substrings: tune only matching tasks")
    p.add_argument("--per-round", type=int, default=16, help="trials per task per round")
    p.add_argument("--max-seconds", type=float, help="stop after the round crossing this")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("run", help="load a compiled library and run it on an image")
    p.add_argument("library", help="a .so from `yolov7c compile`")
    p.add_argument("--image", help="image file (default: a random input)")
    p.add_argument("--score", type=float, default=0.25, help="score threshold for the listing")
    p.add_argument("--top", type=int, default=10, help="detections to list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="side-by-side latency of the backends (one process)")
    _model_args(p, img_default=416)
    p.add_argument("--backends", default="torch-train,torch-deploy,onnxruntime,tvm,tvm-tuned")
    p.add_argument("--threads", type=int, default=0, help="threads for every backend "
                   "(default: physical cores)")
    p.add_argument("--repeat", type=int, default=20, help="timed runs per backend (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--db", help="tuning database for tvm-tuned")
    p.add_argument("--tune-trials", type=int, default=0,
                   help="tune in the run (into --db) when the database is missing")
    p.add_argument("--out", help="write the JSON result here")
    p.set_defaults(func=cmd_bench)


def _model(args):
    return build_model(args.model, nc=args.nc, deploy=not args.no_deploy)


def cmd_export(args) -> int:
    from ..backends.onnx import export_onnx
    model = _model(args)
    path = export_onnx(model, args.img, args.out, dynamic_batch=args.dynamic_batch,
                       nms=args.nms, opset=args.opset, iou_thr=args.iou,
                       score_thr=args.score, max_det=args.max_det)
    res = {"model": args.model, "format": "onnx", "out": str(path), "img": args.img,
           "opset": args.opset, "dynamic_batch": args.dynamic_batch, "nms": args.nms,
           "bytes": path.stat().st_size}
    emit_json(res) if args.json else print(f"wrote {path} ({res['bytes'] / 1e6:.1f} MB, "
                                           f"opset {args.opset})")
    return 0


def _check_target(args) -> None:
    """Reject a bad target / missing toolchain before the (slow) model build."""
    from ..backends.tvm import targets
    targets.check_toolchain(targets.resolve(args.target, arch=args.arch, mcpu=args.mcpu))


def cmd_compile(args) -> int:
    from ..backends.tvm import compile_model
    _check_target(args)
    model = _model(args)
    meta = compile_model(model, args.target, args.img, args.out, arch=args.arch,
                         mcpu=args.mcpu, db_dir=args.db, frontend=args.frontend,
                         nvcc=False if args.no_nvcc else None)
    if args.json:
        emit_json(asdict(meta))
    else:
        print(f"wrote {meta.path} for {meta.target} {meta.target_json}")
        for n in meta.notes:
            print(f"  {n}")
    return 0


def cmd_tune(args) -> int:
    from ..backends.tvm import tune
    from ..backends.tvm import rpc as rpcmod
    from ..backends.tvm import targets
    targets.resolve(args.target, arch=args.arch, mcpu=args.mcpu)
    if args.rpc:
        rpcmod.check(rpcmod.parse(args.rpc))
    model = _model(args)
    ops = [s for s in (args.op_names or "").split(",") if s] or None
    rep = tune(model, args.target, args.img, args.db, args.trials, rpc=args.rpc, op_names=ops,
               per_round=args.per_round, arch=args.arch, mcpu=args.mcpu,
               max_seconds=args.max_seconds)
    if args.json:
        emit_json(asdict(rep))
    else:
        print(f"{args.db}: {rep.records_after} records ({rep.measured} new), "
              f"{rep.skipped_duplicates} duplicates skipped, {rep.seconds:.0f} s")
    return 0


def _load_image(path: str | None, shape) -> "object":
    """Letterboxed (1, 3, H, W) float32 in [0, 1] (grey 114 padding), or random if no path."""
    import numpy as np
    _, _, h, w = shape
    if path is None:
        return np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    if not Path(path).is_file():
        raise UserError(f"--image {path}: no such file")
    from PIL import Image
    try:
        im = Image.open(path).convert("RGB")
    except OSError as e:
        raise UserError(f"--image {path}: not a readable image ({e})") from None
    r = min(w / im.width, h / im.height)
    nw, nh = max(1, round(im.width * r)), max(1, round(im.height * r))
    canvas = Image.new("RGB", (w, h), (114, 114, 114))
    canvas.paste(im.resize((nw, nh), Image.BILINEAR), ((w - nw) // 2, (h - nh) // 2))
    return (np.asarray(canvas, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def cmd_run(args) -> int:
    import time

    import numpy as np

    from ..backends.tvm import load
    runner = load(args.library)
    x = _load_image(args.image, runner.input_shape)
    t0 = time.perf_counter()
    outs = runner(x)
    ms = (time.perf_counter() - t0) * 1e3
    dec = outs[0][0]                                 # (N, 5 + nc)
    score = dec[:, 4:5] * dec[:, 5:]
    cls, best = score.argmax(1), score.max(1)
    order = np.argsort(-best)
    keep = [i for i in order if best[i] > args.score][: args.top]
    dets = [{"box_xywh": [round(float(v), 1) for v in dec[i, :4]], "class": int(cls[i]),
             "score": round(float(best[i]), 4)} for i in keep]
    res = {"library": args.library, "input_shape": list(x.shape), "ms": round(ms, 2),
           "outputs": [list(o.shape) for o in outs],
           "candidates_over_score": int((best > args.score).sum()), "top": dets}
    if args.json:
        emit_json(res)
    else:
        print(f"ran {args.library} on {list(x.shape)} in {ms:.1f} ms; outputs "
              f"{res['outputs']}; {res['candidates_over_score']} boxes over {args.score}")
        for d in dets:
            print(f"  class {d['class']:3d} score {d['score']:.3f} box {d['box_xywh']}")
    return 0


def cmd_bench(args) -> int:
    from ..backends import bench
    res = bench.run(model=args.model, img=args.img, nc=args.nc,
                    backends=[b for b in args.backends.split(",") if b],
                    threads=args.threads or None, repeat=args.repeat, warmup=args.warmup,
                    db=args.db, tune_trials=args.tune_trials, deploy=not args.no_deploy)
    if args.out:
        bench.write_json(res, args.out)
    emit_json(res) if args.json else print(bench.table(res))
    return 0
