"""Small integer helpers for loop and tensor shapes, shared by the graph rewrites, the
seeded tilings and the Winograd kernels (one definition each)."""
from __future__ import annotations

from typing import Any, Iterable


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def ints(values: Iterable[Any] | None) -> list[int] | None:
    """``values`` as Python ints (TVM ``IntImm``s, numpy ints ...), or None when one of
    them is not a constant integer (a symbolic dimension)."""
    try:
        return [int(v) for v in values]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None


__all__ = ["divisors", "ints"]
