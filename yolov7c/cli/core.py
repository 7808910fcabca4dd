"""Foundation verbs: ``list`` (the zoo) and ``convert-yaml`` (official cfg ⇄ IR)."""
from __future__ import annotations

import argparse
import json
import sys

from .. import zoo
from ..io_util import write_text_atomic
from ..ir.analysis import analyze
from ..ir.deploy import to_deploy
from ..ir.yaml_io import to_yaml
from . import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="the model zoo with parameters and GFLOPs")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: {\"models\": [...]}")
    p.add_argument("--ablations", action="store_true",
                   help="list the paper's re-parameterization ablation models (Figs. 4, 6, 7)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("convert-yaml",
                       help="official cfg → IR → report, or a zoo model / cfg → official YAML")
    p.add_argument("source", help="a cfg file (.yaml), a zoo name, a DSL .py or a checkpoint")
    p.add_argument("--out", help="write the official-format YAML of the graph here")
    p.add_argument("--deploy", action="store_true",
                   help="export the deploy cfg form (no aux head, no implicit layers)")
    p.add_argument("--img", type=int, help="input size for the report (default: the model's)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=cmd_convert_yaml)

    p = sub.add_parser("e2e", help="the main job end to end on a synthetic set: short training → "
                       "report → verified deploy → ONNX/onnxruntime → TVM (each checked "
                       "against torch) → val and detect on every backend")
    p.add_argument("model", nargs="?", default=None,
                   help="any model source: zoo name, DSL .py, cfg .yaml, checkpoint, official "
                        ".pt (default: the shipped yolov7-tiny-n checkpoint trained on the "
                        "synthetic set; its mAP and boxes are checked)")
    p.add_argument("--img", type=int, default=None,
                   help="input size (a checkpoint's training size, else 320)")
    p.add_argument("--nc", type=int, default=None, help="classes of a model without weights "
                   "(default 80)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and image")
    p.add_argument("--out", default="runs/e2e", help="folder for artifacts (runs/e2e)")
    p.add_argument("--no-tvm", action="store_true", help="skip the TVM step")
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs of the short training run on the synthetic set (2; 0: none)")
    p.add_argument("--train-images", type=int, default=32, help="synthetic training images")
    p.add_argument("--val-images", type=int, default=16,
                   help="synthetic validation images (16)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_e2e)


def zoo_rows(ablations: bool = False) -> list[dict]:
    """One row per zoo model (or ablation model): params and GFLOPs (official convention) at
    its report size."""
    rows = []
    for name in (zoo.ablation_names() if ablations else zoo.names()):
        e = zoo.entry(name)
        a = analyze(zoo.get(name), e.img)
        rows.append({"model": name, "params": int(a.params),
                     "gflops": round(float(a.gflops("official")), 4), "img": e.img,
                     "description": e.description})
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.ablations)
    if args.json:
        emit_json({"models": [{k: r[k] for k in ("model", "params", "gflops", "img")}
                              for r in rows],
                   "gflops_convention": "official", "form": "training"})
        return 0
    print(f"{'model':<18} {'params':>13} {'GFLOPs':>9} {'img':>5}  description")
    for r in rows:
        print(f"{r['model']:<18} {r['params']:>13,} {r['gflops']:>9.2f} {r['img']:>5}  "
              f"{r['description']}")
    print("GFLOPs: official convention (thop≥0.1: conv + 4·BN + upsample), training form")
    return 0


def cmd_convert_yaml(args: argparse.Namespace) -> int:
    from ..api.models import graph_of
    graph = graph_of(args.source)
    if args.deploy:
        graph = to_deploy(graph, fuse=False)
    if args.out:
        from ..api.args import output_path
        write_text_atomic(output_path(args.out), to_yaml(graph))
        print(f"wrote {args.out} ({len(graph)} layers, {graph.form} form)", file=sys.stderr)
    elif not args.source.endswith((".yaml", ".yml")):
        sys.stdout.write(to_yaml(graph))  # a model → its cfg on stdout
        return 0
    from ..api.reports import report
    text = report(graph, img=args.img, fmt="json" if args.json else "text")
    emit_json(json.loads(text)) if args.json else sys.stdout.write(text)
    return 0


def cmd_e2e(args: argparse.Namespace) -> int:
    from ..e2e import CheckFailed, run_e2e
    try:
        summary = run_e2e(args.model, args.img, args.nc, args.out, not args.no_tvm,
                          seed=args.seed, epochs=args.epochs, train_images=args.train_images,
                          val_images=args.val_images)
    except CheckFailed as e:
        print(f"yolov7c e2e: check failed: {e}", file=sys.stderr)
        return 1
    if args.json:
        emit_json(summary)
    else:
        steps = summary["steps"]
        print(f"e2e {summary['model']} @ {summary['img']}: all checks passed in "
              f"{summary['seconds']:.0f} s")
        for name, st in steps.items():
            if st.get("skipped"):
                print(f"  {name:<8} skipped")
            elif name == "train":
                print(f"  {name:<8} loss {st['first_loss']:.4f} → {st['last_loss']:.4f} in "
                      f"{st['epochs']} epochs; weights {st['best']}")
            elif name == "val":
                print(f"  {name:<8} mAP spread between backends {st['map_spread']:.1e}")
            elif name == "detect":
                print(f"  {name:<8} drawn images: {st['drawn']}/<backend>/")
            elif "max_rel_err" in st and st["max_rel_err"] is not None:
                print(f"  {name:<8} max relative error {st['max_rel_err']:.1e} "
                      f"(bound 1e-04)" + (f"  {st['path']}" if "path" in st else ""))
        for name, b in summary["backends"].items():
            print(f"  {name:<12} mAP@.5 {b.get('map50', float('nan')):.4f}  mAP@.5:.95 "
                  f"{b.get('map', float('nan')):.4f}  {b.get('latency_ms', float('nan')):7.1f} "
                  f"ms/img  boxes {b.get('boxes', '-')} ({b.get('correct', '-')} correct)")
        print(f"  summary: {summary['summary']}")
    return 0


__all__ = ["register", "zoo_rows"]
