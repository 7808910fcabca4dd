"""The uniform pass contract (after torch.fx's ``PassBase``/``PassResult``).

A pass is a name, one line saying what it preserves, and a function that rewrites an fx
``GraphModule`` and returns ``PassResult(graph_module, modified, changes)``. Passes rewrite
the module they are given, as torch.fx passes do; the manager hands each pass a private copy
and checks numerical equivalence after it, so no pass carries its own checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import fx


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: the rewritten module, whether anything changed, and what."""

    graph_module: fx.GraphModule
    modified: bool
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pass:
    """A named graph rewrite. ``preserves`` is the one-line contract the manager verifies."""

    name: str
    preserves: str
    run: Callable[[fx.GraphModule], PassResult]

    def __call__(self, gm: fx.GraphModule) -> PassResult:
        return self.run(gm)
