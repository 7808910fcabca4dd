"""The ``report`` verb: params / FLOPs / activations of a model, training vs deploy, the zoo.

Argparse and printing over ``yolov7c.api.report``, which takes every model source.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import UserError
from ..report import FORMATS, GROUP_KEYS
from . import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="params, FLOPs and activations per layer / block / "
                                      "stage / op; training vs deploy; the zoo table")
    p.add_argument("model", nargs="?", help="zoo name, cfg .yaml, DSL .py, our checkpoint or "
                   "an official .pt")
    p.add_argument("--img", type=int, help="square input size (default: the model's, "
                                           "640 for P5, 1280 for P6)")
    p.add_argument("--nc", type=int, default=None, help="number of classes (default 80)")
    p.add_argument("--deploy", action="store_true",
                   help="report the fused deploy form (aux pruned, implicit/BN/RepConv folded)")
    p.add_argument("--by", action="append", metavar="|".join(GROUP_KEYS),
                   help="grouped sums (repeat or comma-separate for several)")
    p.add_argument("--compare-deploy", action="store_true",
                   help="training vs deploy, node by node")
    p.add_argument("--zoo", action="store_true",
                   help="every zoo model: ours / official implementation / paper")
    p.add_argument("--bench", metavar="JSON", help="result file of `yolov7c bench --out` "
                   "(latencies for the zoo plot)")
    p.add_argument("--format", choices=FORMATS, default=None, help="output format "
                                                                   "(default text)")
    p.add_argument("--json", action="store_true", help="print one JSON object (= --format json)")
    p.add_argument("--out", help="write the report to this file (atomically)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..api.reports import report
    if args.json and args.format not in (None, "json"):
        raise UserError(f"--json conflicts with --format {args.format}; use one of them")
    fmt = "json" if args.json else (args.format or "text")
    text = report(args.model, img=args.img, nc=args.nc, deploy=args.deploy, by=args.by,
                  compare_deploy=args.compare_deploy, zoo=args.zoo, bench=args.bench,
                  fmt=fmt, out=args.out)
    if not args.out:
        emit_json(json.loads(text)) if fmt == "json" else sys.stdout.write(text)
    elif fmt == "json":
        emit_json({"out": args.out, "format": fmt, "bytes": len(text.encode())})
    else:
        print(f"wrote {args.out} ({fmt}, {len(text.encode())} bytes)")
    return 0
