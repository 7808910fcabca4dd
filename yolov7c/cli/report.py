"""The ``report`` verb: params / FLOPs / activations of a model, training vs deploy, the zoo.

A thin layer over ``yolov7c.report``: it resolves the model and options, picks the content
(model, ``--compare-deploy`` or ``--zoo``) and the format, and prints or writes it.
"""
from __future__ import annotations

import argparse
import sys

from .. import zoo
from ..errors import UserError
from ..ir.deploy import to_deploy
from ..ir.graph import Graph
from ..report import (FORMATS, GROUP_KEYS, compare_report, load_latency, model_report,
                      write_output, zoo_report)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="params, FLOPs and activations per layer / block / "
                                      "stage / op; training vs deploy; the zoo table")
    p.add_argument("model", nargs="?", help="a zoo model name (or an official cfg .yaml)")
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
    p.add_argument("--bench", metavar="JSON", help="benchmark JSON with latencies (zoo plot)")
    p.add_argument("--format", choices=FORMATS, default=None, help="output format "
                                                                   "(default text)")
    p.add_argument("--json", action="store_true", help="print one JSON object (= --format json)")
    p.add_argument("--out", help="write the report to this file (atomically)")
    p.set_defaults(func=cmd_report)


def _graph(args: argparse.Namespace) -> Graph:
    if not args.model:
        raise UserError("report: name a model (e.g. `yolov7c report yolov7`) or use --zoo")
    if args.nc is not None and args.nc < 1:
        raise UserError(f"--nc {args.nc}: the number of classes must be a positive integer")
    if args.model.endswith((".yaml", ".yml")):
        from .core import load_graph
        if args.nc is not None:
            raise UserError(f"--nc: {args.model} sets its own nc; drop --nc for a cfg file")
        return load_graph(args.model)
    return zoo.get(args.model, nc=80 if args.nc is None else args.nc)


def _by(values: list[str] | None) -> list[str]:
    out = [v.strip() for item in values or () for v in item.split(",") if v.strip()]
    for v in out:
        if v not in GROUP_KEYS:
            raise UserError(f"--by {v!r}: expected one of {', '.join(GROUP_KEYS)}")
    return out


def cmd_report(args: argparse.Namespace) -> int:
    fmt = "json" if args.json else (args.format or "text")
    if args.json and args.format not in (None, "json"):
        raise UserError(f"--json conflicts with --format {args.format}; use one of them")
    if args.zoo:
        if args.model or args.compare_deploy or args.deploy:
            raise UserError("--zoo reports every model; drop the model name / --deploy / "
                            "--compare-deploy")
        text = zoo_report(fmt, load_latency(args.bench) if args.bench else None)
    else:
        if args.bench:
            raise UserError("--bench is for the zoo plot; use it with --zoo")
        graph = _graph(args)
        if args.compare_deploy:
            if args.deploy:
                raise UserError("--compare-deploy already shows both forms; drop --deploy")
            text = compare_report(graph, args.img, fmt)
        else:
            form = None
            if args.deploy:
                graph, form = to_deploy(graph), "deploy"
            text = model_report(graph, args.img, fmt, _by(args.by), form)
    if args.out:
        write_output(args.out, text)
        msg = f"wrote {args.out} ({fmt}, {len(text.encode())} bytes)"
        if fmt == "json":
            from . import emit_json
            emit_json({"out": args.out, "format": fmt, "bytes": len(text.encode())})
        else:
            print(msg)
    else:
        sys.stdout.write(text)
    return 0
