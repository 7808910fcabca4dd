"""The model registry: every variant is one registered function (timm-style), so tests and
reports parametrized over ``names()`` cover a new entry automatically."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import UserError
from ..ir.graph import Graph


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: its builder, the input size it is reported at, and the official
    cfgs (``training/NAME``, ``deploy/NAME`` keys of the reference figures) it must equal."""

    name: str
    build: Callable[..., Graph]
    img: int
    official_training: str | None
    official_deploy: str | None
    description: str


_REGISTRY: dict[str, ZooEntry] = {}
_ABLATIONS: dict[str, ZooEntry] = {}   # the paper's ablation variants (zoo/ablations.py)


def register(name: str, img: int, description: str, training: bool = True,
             deploy: bool = True) -> Callable[[Callable[..., Graph]], Callable[..., Graph]]:
    def wrap(fn: Callable[..., Graph]) -> Callable[..., Graph]:
        _REGISTRY[name] = ZooEntry(name, fn, img, f"training/{name}" if training else None,
                                   f"deploy/{name}" if deploy else None, description)
        return fn
    return wrap


def register_ablation(name: str, img: int, description: str
                      ) -> Callable[[Callable[..., Graph]], Callable[..., Graph]]:
    """Register an ablation variant: resolvable by name like a zoo model, listed apart
    (``ablation_names``), with no official cfg to equal."""
    def wrap(fn: Callable[..., Graph]) -> Callable[..., Graph]:
        _ABLATIONS[name] = ZooEntry(name, fn, img, None, None, description)
        return fn
    return wrap


def ablation_names() -> list[str]:
    """Registered ablation variants, in registration (figure) order."""
    return list(_ABLATIONS)


def names() -> list[str]:
    """Registered model names, in registration (paper) order."""
    return list(_REGISTRY)


def entry(name: str) -> ZooEntry:
    try:
        return _REGISTRY[name] if name in _REGISTRY else _ABLATIONS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; the zoo has: {', '.join(_REGISTRY)}") from None


def get(name: str, nc: int = 80, anchors: Sequence[Sequence[float]] | None = None) -> Graph:
    """The IR graph (training form) of zoo model ``name`` with ``nc`` classes."""
    e = entry(name)
    if not isinstance(nc, int) or nc < 1:
        raise UserError(f"nc={nc!r}: the number of classes must be a positive integer")
    return e.build(nc=nc) if anchors is None else e.build(nc=nc, anchors=anchors)
