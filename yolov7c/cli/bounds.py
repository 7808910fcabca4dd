"""The one table of ranges for every numeric flag, applied at the parser.

A value outside its range is refused by argparse in one line naming the flag and the range
(``--img 100000: expected an integer in 1..8192``) before any work: no verb ever sees a seed
that overflows a generator, a thread count that exhausts the system or an IoU of 5. Keys are
an option's ``dest``; ``(verb, dest)`` overrides the shared entry for one verb. A numeric
flag without an entry still gets a finite, 64-bit range, and tests/test_cli_core.py fails
until it has a stated one: add it here when you add a flag.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Union

from ..limits import MAX_IMG, MAX_NC

Number = Union[int, float]

BOUNDS: dict[str, tuple[Number, Number]] = {
    # model and input
    "img": (1, MAX_IMG),               # a multiple of the stride is checked by the API
    "nc": (1, MAX_NC),
    "seed": (0, 2**32 - 1),            # numpy's and torch's seeds alike
    "max_memory": (0.01, 4096.0),      # GiB: the model memory cap (limits.memory_limit)
    "classes": (0, MAX_NC - 1),
    # thresholds
    "conf": (0.0, 1.0),
    "iou": (0.0, 1.0),
    "score": (0.0, 1.0),
    "rtol": (1e-12, 1.0),
    "max_det": (1, 100_000),
    # scaling
    "depth": (0.05, 16.0),
    "width": (0.05, 16.0),
    "round_to": (1, 1024),
    "target_gflops": (1e-6, 1e7),
    "target_params": (1.0, 1e12),
    # backends
    "opset": (17, 30),
    "threads": (1, 1024),
    "repeat": (1, 100_000),
    "warmup": (0, 10_000),
    "trials": (0, 10_000_000),
    "tune_trials": (0, 10_000_000),
    "per_round": (1, 100_000),
    "max_seconds": (1e-3, 1e7),
    # data and training
    "batch_size": (1, 4096),
    "batch": (1, 4096),
    "nominal_batch": (1, 65_536),
    "epochs": (1, 100_000),
    "workers": (0, 256),
    "min_warmup_iters": (0, 10_000_000),
    "clip": (1e-6, 1e6),
    "time_limit": (1e-3, 1e8),
    "train": (0, 1_000_000),
    "val": (0, 1_000_000),
    "train_images": (1, 1_000_000),
    "val_images": (1, 1_000_000),
}

PER_VERB: dict[tuple[str, str], tuple[Number, Number]] = {
    ("e2e", "epochs"): (0, 100_000),   # 0: no training step
    ("data", "nc"): (1, 8),            # the synthetic generator draws 8 shapes
    ("data", "img"): (32, 4096),
}

_FALLBACK: dict[type, tuple[Number, Number]] = {int: (-(2**63), 2**63 - 1),
                                                float: (-1e300, 1e300)}


def bound_of(verb: str, dest: str) -> tuple[Number, Number] | None:
    """The stated range of ``verb``'s flag ``dest`` (None: not in the table)."""
    return PER_VERB.get((verb, dest), BOUNDS.get(dest))


def _fmt(x: Number) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def bounded(kind: type, lo: Number, hi: Number) -> Callable[[str], Number]:
    """An argparse ``type``: parse ``kind`` (int or float), refuse non-finite values and
    values outside ``[lo, hi]`` with a message argparse prints after the flag."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(
                f"{text[:40]!r} is not {noun}; expected {noun} in {_fmt(lo)}..{_fmt(hi)}"
            ) from None
        if (kind is float and not math.isfinite(value)) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"{text[:40]}: expected {noun} in {_fmt(lo)}..{_fmt(hi)}")
        return value

    parse.__name__ = kind.__name__
    return parse


def apply_bounds(verb: str, parser: argparse.ArgumentParser) -> list[str]:
    """Wrap the ``type`` of every int/float option of ``parser`` with its range; return the
    dests that had no stated range (they got the 64-bit fallback)."""
    missing = []
    for a in parser._actions:
        kind = a.type if a.type in (int, float) else None
        if kind is None:
            continue
        rng = bound_of(verb, a.dest)
        if rng is None:
            missing.append(a.dest)
            rng = _FALLBACK[kind]
        a.type = bounded(kind, *rng)
    return missing


__all__ = ["BOUNDS", "PER_VERB", "apply_bounds", "bound_of", "bounded"]
