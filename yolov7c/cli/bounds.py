"""The one table of ranges for every numeric flag, applied at the parser.

The table itself lives in ``yolov7c.limits`` (bottom layer), so the resume check of
``train/`` reads the same ranges. A value outside its range is refused by argparse in one line naming the flag and the range
(``--img 100000: expected an integer in 1..8192``) before any work: no verb ever sees a seed
that overflows a generator, a thread count that exhausts the system or an IoU of 5. Keys are
an option's ``dest``; ``(verb, dest)`` overrides the shared entry for one verb. A numeric
flag without an entry still gets a finite, 64-bit range, and tests/test_cli_core.py fails
until it has a stated one: add it to ``limits.FLAG_RANGES`` when you add a flag.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Union

from ..limits import FLAG_RANGES, FLAG_RANGES_PER_VERB

Number = Union[int, float]

BOUNDS = FLAG_RANGES
PER_VERB = FLAG_RANGES_PER_VERB

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
