"""`passes` and `import-official` verbs: argparse and printing over ``yolov7c.api``."""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any, Iterator

from . import emit_json


def register(sub: Any) -> None:
    p = sub.add_parser("passes", help="run a pass pipeline (verified) on a model or checkpoint")
    p.add_argument("model", help="zoo name, DSL .py or cfg .yaml (seeded random weights), our "
                   "checkpoint or an official .pt")
    p.add_argument("--pipeline", default="deploy",
                   help="pipeline name (deploy, fuse) or comma-separated passes "
                        "(prune-aux,fold-implicit,fuse-repconv,fold-bn,dce)")
    p.add_argument("--img", type=int, default=None, help="verification image side (default "
                   "4 × the model's largest stride)")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="compare outputs with the input model's after every pass (default; "
                        "--no-verify skips it, and the error columns show '-')")
    p.add_argument("--rtol", type=float, default=None, help="relative error bound (1e-4)")
    p.add_argument("--print-after", action="store_true", help="print the module after each pass")
    p.add_argument("--out", help="write the resulting module as a checkpoint")
    p.add_argument("--nc", type=int, default=None, help="classes of a model without weights "
                   "(default 80)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and input")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run_passes_cmd)

    q = sub.add_parser("import-official", help="import an official YOLOv7 .pt safely")
    q.add_argument("path", help="official training or deploy .pt (pickled models.yolo.Model)")
    q.add_argument("--out", help="write our checkpoint here (loadable with yolov7c.load)")
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")
    q.set_defaults(func=import_official_cmd)


def run_passes_cmd(args: argparse.Namespace) -> int:
    from ..api.models import model_name
    from ..api.transforms import passes
    from ..passes import PassError
    name = model_name(args.model)
    try:
        with _modules_shown(sys.stderr if args.json else sys.stdout, args.print_after):
            result = passes(args.model, args.pipeline, img=args.img, verify=args.verify,
                            rtol=args.rtol, seed=args.seed, nc=args.nc, out=args.out,
                            print_after=args.print_after)
    except PassError as e:
        _report(e.result.as_dict(name) | {"failed": e.record.name}, args.json)
        print(f"yolov7c passes: {e}", file=sys.stderr)
        return 1
    _report(result.as_dict(name) | ({"out": args.out} if args.out else {}), args.json)
    return 0


class _ModuleCode(logging.Filter):
    """Keeps the pass manager's "module after <pass>" records, rendered as a code header."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("module after") or len(record.args or ()) != 2:
            return False
        name, code = record.args  # type: ignore[misc]
        record.msg, record.args = f"# ---- after {name} ----\n{code}", None
        return True


@contextlib.contextmanager
def _modules_shown(out: Any, on: bool) -> Iterator[None]:
    """With --print-after: the module code after each pass on ``out`` (stderr with --json)."""
    if not on:
        yield
        return
    logger = logging.getLogger("yolov7c.passes")
    handler = logging.StreamHandler(out)
    handler.addFilter(_ModuleCode())
    old = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _report(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(obj)
        return
    verified = any(r["max_rel_err"] is not None for r in obj["passes"])
    print(f"{obj['model']}: pipeline {','.join(obj['pipeline'])} "
          + (f"(verified at img {obj['img']})" if verified else "(not verified: --no-verify)"))
    print(f"{'pass':<14} {'modified':<9} {'params before':>14} {'params after':>14} "
          f"{'max abs err':>12} {'max rel err':>12}")
    for r in obj["passes"]:
        print(f"{r['name']:<14} {str(r['modified']):<9} {r['params_before']:>14,} "
              f"{r['params_after']:>14,} {_fmt(r['max_abs_err']):>12} {_fmt(r['max_rel_err']):>12}")
    print(f"params {obj['params_before']:,} → {obj['params']:,}; worst relative error "
          f"{_fmt(obj['max_rel_err'])}" + (f"; wrote {obj['out']}" if obj.get("out") else ""))


def import_official_cmd(args: argparse.Namespace) -> int:
    from ..api.transforms import import_official
    _, info = import_official(args.path, args.out)
    if args.json:
        emit_json(info)
    else:
        print(f"{args.path}: {info['layers']} layers, head {info['head']} (nc={info['nc']}, "
              f"{info['anchors']} anchors × {info['levels']} levels), {info['params']:,} params"
              + (f"; wrote {args.out}" if args.out else ""))
    return 0
