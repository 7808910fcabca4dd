"""`yolov7c` command line: one argparse sub-command per verb, each a thin call into the API.

Command groups live in sibling modules (``core``, ``passes``, ``scale``, ``backends``,
``report``); each exposes ``register(subparsers)`` that adds its verbs with a ``func``
default. Every verb prints a human table by default and one JSON object with ``--json``.
User errors (``UserError``) print one line on stderr and exit 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Sequence

from ..errors import UserError

COMMAND_MODULES = ("core", "passes", "scale", "backends", "report")


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(obj, indent=1, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolov7c", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:  # a command group not written yet
            if e.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"yolov7c {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
