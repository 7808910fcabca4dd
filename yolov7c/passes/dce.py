"""dce: dead-code elimination — nodes no output depends on, identity calls, unused modules."""
from __future__ import annotations

from torch import fx, nn

from . import _fx
from .base import Pass, PassResult


def eliminate_dead(gm: fx.GraphModule) -> tuple[str, ...]:
    """Remove what the output does not need; returns the module targets no longer called."""
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    for n in list(gm.graph.nodes):
        if _fx.calls_to(gm, n, nn.Identity) and len(n.args) == 1 and not n.kwargs:
            n.replace_all_uses_with(n.args[0])  # Identity(x) = x
            gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    _fx.finish(gm)
    left = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    return tuple(sorted(called - left))


def dce(gm: fx.GraphModule) -> PassResult:
    """Run ``eliminate_dead`` as a pass."""
    nodes = len(gm.graph.nodes)
    removed = eliminate_dead(gm)
    changes = tuple(f"removed {t}" for t in removed)
    return PassResult(gm, bool(removed) or len(gm.graph.nodes) != nodes, changes)


PASS = Pass("dce", "outputs (only computations no output reads are removed)", dce)
