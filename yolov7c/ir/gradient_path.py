"""Gradient-path analysis: where does a 3×3 convolution sit, plain chain, residual or concat?

Paper §4.1 (planned re-parameterized convolution): RepConv adds an identity branch (BN(x)) to
a 3×3 and a 1×1 conv. Read by its gradient propagation paths, that identity duplicates a path
a residual (ResNet) or a concatenation (DenseNet, ELAN) connection already gives, and so
removes the gradient diversity the connection was there for. The paper's rule: a conv that
has a residual or concatenation connection gets RepConv *without* identity (RepConvN); a conv
in a plain chain may take full RepConv.

The rule, from the graph alone (networkx reachability; ``Graph.nx``). For a candidate conv
``v`` (3×3, stride 1) reading tensor ``x``, a *merge* ``M`` (a node that joins two or more
tensors: ``Shortcut`` = add, ``Concat``; table ``MERGES``) **spans** ``v`` when

    M is reachable from v's output,  and  M is reachable from x by a path that avoids v.

Then the identity branch x → v's output → … → M duplicates the path x → … → M. Position:

- ``plain``     no merge spans v: x reaches no merge that v's output reaches, except
                through v;
- ``residual``  the nearest spanning merge (fewest edges from v) is a Shortcut: x, or a
                tensor x is a copy of, is added to v's output downstream;
- ``concat``    the nearest spanning merge is a Concat: x and v's output both reach it,
                as every ELAN tap chain does (ties between the two kinds: residual).

Paths through other layers count (x → 1×1 conv → Concat still spans v: the gradient reaches
x without passing v). A detection head is not a merge: its levels are read apart.

Independently of the position, an identity branch is only *possible* when v's output has x's
shape: c_in == c_out and stride 1 (``RepConvOp.identity_possible``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import networkx as nx

from . import ops
from .graph import GRAPH_INPUT, Graph, Node

MERGES = {"Shortcut": "residual", "Concat": "concat"}   # merge op → the position it makes
KINDS = ("plain", "residual", "concat")
CONV_OPS = ("Conv", "RepConv")
COPIES = ("Concat",)   # ops that, with one input, pass it on unchanged


class PlannedReparamWarning(UserWarning):
    """A RepConv's identity branch duplicates a residual or concatenation path (§4.1)."""


@dataclass(frozen=True)
class Position:
    """Where candidate conv ``index`` sits, and why (``merge``: the nearest spanning merge)."""

    index: int
    name: str
    kind: str                 # one of KINDS
    merge: int | None         # index of the nearest spanning merge (None when plain)
    merge_name: str | None
    c_in: Any
    c_out: Any
    s: int

    @property
    def identity_possible(self) -> bool:
        return bool(self.c_in == self.c_out and self.s == 1)

    def reason(self) -> str:
        """One clause saying why the position is what it is."""
        if self.kind == "plain":
            return "no residual or concat joins its input with its output"
        how = "added to" if self.kind == "residual" else "concatenated with"
        return (f"its input is also {how} its output at {self.merge_name} (node {self.merge}) "
                f"without passing through it")


def is_candidate(n: Node) -> bool:
    """A 3×3 stride-1 conv of the training form (Conv with BN, or RepConv)."""
    if n.op not in CONV_OPS or len(n.inputs) != 1:
        return False
    spec = ops.get(n.op)
    k, s = spec.attr(n.attrs, "k"), spec.attr(n.attrs, "s")
    if k not in (3, (3, 3)) or s != 1:
        return False
    return n.op == "RepConv" or bool(spec.attr(n.attrs, "bn"))


def candidates(graph: Graph) -> list[int]:
    """Indices of every candidate conv, in node order."""
    return [n.index for n in graph.nodes if is_candidate(n)]


def _copied_from(graph: Graph, x: int) -> list[int]:
    """x and the tensors x is an unchanged copy of (a one-input Concat passes its input on)."""
    out = [x]
    while x != GRAPH_INPUT and graph[x].op in COPIES and len(graph[x].inputs) == 1:
        x = graph[x].inputs[0]
        out.append(x)
    return out


def _is_merge(graph: Graph, i: int) -> bool:
    n = graph[i]
    return n.op in MERGES and len(set(n.inputs)) >= 2


def classify(graph: Graph, index: int) -> Position:
    """The position of conv ``index`` (see the module docstring for the rule)."""
    n = graph[index]
    g = graph.nx
    after = nx.single_source_shortest_path_length(g, index)  # v's output → distance
    without_v = nx.restricted_view(g, [index], [])
    around: set[int] = set()  # reachable from x (or what x copies) on paths avoiding v
    for src in _copied_from(graph, n.inputs[0]):
        around |= nx.descendants(without_v, src)
    spanning = [m for m in after if m != index and m in around and _is_merge(graph, m)]
    c_in, c_out = graph.c_in(index)[0], graph.c_out(index)
    s = ops.get(n.op).attr(n.attrs, "s")
    if not spanning:
        return Position(index, n.name, "plain", None, None, c_in, c_out, s)
    # nearest first; at equal distance a residual wins (its identity duplicates exactly)
    m = min(spanning, key=lambda i: (after[i], MERGES[graph[i].op] != "residual", i))
    return Position(index, n.name, MERGES[graph[m].op], m, graph[m].name, c_in, c_out, s)


def positions(graph: Graph, indices: Iterable[int] | None = None) -> dict[int, Position]:
    """``classify`` for each index (default: every candidate), in node order."""
    idx = candidates(graph) if indices is None else list(indices)
    return {i: classify(graph, i) for i in idx}


def lint_identity(graph: Graph) -> list[str]:
    """Warn for every RepConv whose *automatic* identity branch (``identity`` unset and
    c_in == c, s == 1) sits in a residual or concatenation position; returns the messages.
    An explicit ``identity=True`` is a deliberate choice (the paper's ablations) and is not
    warned about. Only RepConv nodes are analysed, so plain graphs cost nothing."""
    rep = ops.get("RepConv")
    out = []
    for n in graph.nodes:
        if n.op != "RepConv" or n.attrs.get("identity") is not None:
            continue
        if not rep.has_identity(n.attrs, graph.c_in(n.index)) or not is_candidate(n):
            continue
        p = classify(graph, n.index)
        if p.kind != "plain":
            msg = (f"{n.where()}: RepConv with an identity branch in a {p.kind} position "
                   f"({p.reason()}), which removes the gradient diversity of that connection "
                   f"(YOLOv7 §4.1); use RepConvN: repconv(..., identity=False), or "
                   f"identity=True to keep it deliberately")
            warnings.warn(msg, PlannedReparamWarning, stacklevel=3)
            out.append(msg)
    return out


__all__ = ["CONV_OPS", "KINDS", "MERGES", "PlannedReparamWarning", "Position", "candidates",
           "classify", "is_candidate", "lint_identity", "positions"]
