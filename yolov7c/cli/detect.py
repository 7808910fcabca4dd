"""Using a model: ``detect`` (images → boxes), ``val`` (COCO metrics on a dataset) and
``data synth`` (a small learnable dataset): argparse and printing over ``yolov7c.api``."""
from __future__ import annotations

import argparse
import sys

from ..eval_settings import VAL_BATCH
from ..nms_settings import DETECT, EVAL, NmsSettings
from . import emit_json

MODEL_HELP = ("zoo name (random weights), checkpoint (.ckpt, official .pt), DSL .py, cfg .yaml, "
              "an exported .onnx or a TVM library (.so)")


def _model_args(p: argparse.ArgumentParser, nms: NmsSettings, recorded: bool = False) -> None:
    """The model and post-processing flags. ``recorded`` (val): a flag not given is None, so
    the settings a training checkpoint records win over the defaults shown."""
    conf, iou, max_det = nms.conf, nms.iou, nms.max_det
    ck = "; a run's checkpoint: the settings it validated with" if recorded else ""
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--img", type=int, default=None,
                   help="input size; rounded up to the model's stride (default: the size a "
                   "checkpoint of ours was trained at, else 640)")
    p.add_argument("--conf", type=float, default=None if recorded else conf,
                   help=f"score threshold ({conf}{ck})")
    p.add_argument("--iou", type=float, default=None if recorded else iou,
                   help=f"NMS IoU threshold ({iou}{ck})")
    p.add_argument("--max-det", type=int, default=None if recorded else max_det,
                   help=f"boxes per image at most ({max_det}{ck})")
    p.add_argument("--backend", choices=["torch", "deploy", "onnxruntime", "tvm"],
                   help="how to run a torch source (default: torch; .onnx and .so files pick "
                   "their own)")
    p.add_argument("--nc", type=int, help="classes of a model without weights (val: the data's)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights")
    p.add_argument("--project", default=None, help="parent folder of the run folders")
    p.add_argument("--name", default="exp", help="run folder name (exp, exp2, ... never "
                   "overwritten)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect objects in images: drawn copies, .txt, COCO json")
    _model_args(p, DETECT)
    p.add_argument("--source", required=True, nargs="+",
                   help="image file(s), folder(s) or glob(s) ('dir/*.png')")
    p.add_argument("--classes", type=int, nargs="+", help="keep only these class indices")
    p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    p.add_argument("--names", help="data YAML whose class names label the boxes")
    p.add_argument("--save-txt", action="store_true", help="YOLO labels/*.txt with scores")
    p.add_argument("--save-json", action="store_true", help="COCO predictions.json")
    p.add_argument("--nosave", action="store_true", help="do not write annotated images")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("val", help="COCO mAP (pycocotools) of a model on a dataset, any backend")
    _model_args(p, EVAL, recorded=True)
    p.add_argument("--data", required=True, help="data YAML (YOLO layout) or COCO instances .json")
    p.add_argument("--images", help="image folder of a COCO .json (default: beside it)")
    p.add_argument("--split", default="val", help="data YAML split (val)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per batch ({VAL_BATCH}; a run's checkpoint: the batch it "
                   f"validated with)")
    p.add_argument("--no-plots", action="store_true", help="skip the PR and confusion plots")
    p.add_argument("--no-save", action="store_true", help="write no run folder")
    p.set_defaults(func=cmd_val)

    p = sub.add_parser("data", help="datasets: `data synth` writes a small learnable one "
                       "(shapes on textured backgrounds, YOLO + COCO layouts)")
    p.add_argument("action", choices=["synth"], help="synth: write a synthetic dataset")
    p.add_argument("--out", required=True, help="new (or empty) folder")
    p.add_argument("--train", type=int, default=400, help="training images (400)")
    p.add_argument("--val", type=int, default=100, help="validation images (100)")
    p.add_argument("--img", type=int, default=320, help="image size (320)")
    p.add_argument("--nc", type=int, default=3, help="classes, 1..8 shapes (3)")
    p.add_argument("--seed", type=int, default=0, help="seed (0): same seed, same files")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_synth)


def cmd_detect(args: argparse.Namespace) -> int:
    from ..api.evaluate import detect
    res = detect(args.model, args.source, img=args.img, conf=args.conf, iou=args.iou,
                 max_det=args.max_det, classes=args.classes, agnostic=args.agnostic,
                 backend=args.backend, nc=args.nc, seed=args.seed,
                 out=args.project or "runs/detect", name=args.name,
                 save_img=not args.nosave, save_txt=args.save_txt, save_json=args.save_json,
                 data=args.names, progress=True)
    if args.json:
        emit_json(res)
        return 0
    names = res["names"] or []
    for r in res["results"]:
        counts: dict[str, int] = {}
        for d in r["detections"]:
            nm = names[int(d[5])] if int(d[5]) < len(names) else str(int(d[5]))
            counts[nm] = counts.get(nm, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no detections"
        print(f"{r['path']}: {summary}")
    sp = res["speed"]
    print(f"{res['images']} images on {res['backend']} at {res['img']}: "
          f"{sp['preprocess']:.1f} ms pre-process, {sp['inference']:.1f} ms inference, "
          f"{sp['nms']:.1f} ms NMS per image" +
          (f"; results in {res['out_dir']}" if res["out_dir"] else ""))
    return 0


def cmd_val(args: argparse.Namespace) -> int:
    from ..api.evaluate import val
    res = val(args.model, args.data, images=args.images, split=args.split, img=args.img,
              batch_size=args.batch_size, conf=args.conf, iou=args.iou, max_det=args.max_det,
              backend=args.backend, nc=args.nc, seed=args.seed,
              out=None if args.no_save else (args.project or "runs/val"), name=args.name,
              plots=not args.no_plots, progress=True)
    if args.json:
        emit_json(res)
        return 0
    print(f"{'class':<16} {'labels':>7} {'mAP@.5':>8} {'mAP@.5:.95':>11}")
    print(f"{'all':<16} {res['labels']:>7} {res['map50']:>8.4f} {res['map']:>11.4f}")
    for c in res["per_class"]:
        if c["map"] is None:
            print(f"{c['name'][:16]:<16} {c['labels']:>7} {'-':>8} {'-':>11}")
        else:
            print(f"{c['name'][:16]:<16} {c['labels']:>7} {c['map50']:>8.4f} {c['map']:>11.4f}")
    sp = res["speed"]
    print(f"P {res['precision']:.4f}  R {res['recall']:.4f} (at conf {res['conf_at_best_f1']:.3f}"
          f")  {res['images']} images on {res['backend']} at {res['img']}"
          f"{' (rect)' if res['rect'] else ''}")
    print(f"speed ms/img: pre-process {sp['preprocess']:.1f}, inference {sp['inference']:.1f}, "
          f"NMS {sp['nms']:.1f}, metric {sp['metric']:.1f}; {sp['images_per_s']:.1f} images/s")
    if res.get("out_dir"):
        print(f"results in {res['out_dir']}", file=sys.stderr)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from ..data.synth import make_synthetic
    path = make_synthetic(args.out, train=args.train, val=args.val, img=args.img, nc=args.nc,
                          seed=args.seed)
    res = {"data": str(path), "train": args.train, "val": args.val, "img": args.img,
           "nc": args.nc, "seed": args.seed,
           "coco": {s: str(path.parent / "annotations" / f"instances_{s}.json")
                    for s in ("train", "val")}}
    if args.json:
        emit_json(res)
    else:
        print(f"wrote {args.train} train + {args.val} val images ({args.img}px, {args.nc} "
              f"classes) to {path.parent}; data YAML {path}")
    return 0
