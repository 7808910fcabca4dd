"""The re-parameterization planner (paper §4.1): which 3×3 conv gets RepConv, RepConvN, or
stays a plain conv, and why.

``plan_reparam(graph, policy)`` returns a new graph; ``plan(...)`` also returns one
``Decision`` per candidate (node, position, choice, reason) for tables. Positions come from
``gradient_path`` (plain / residual / concat). Policies are data (``POLICIES``):

- ``planned``             plain → RepConv (identity where c_in == c_out, s == 1);
                          residual / concat → RepConvN (``identity=False``) — the paper's rule
- ``repconv-everywhere``  RepConv at every candidate, identity wherever shapes allow — the
                          placement the paper shows hurts residual and concat networks
- ``none``                a plain 3×3 Conv+BN at every candidate (the base model)

Every choice fuses to one 3×3 conv with bias, so the deploy form of any plan has exactly the
parameters and FLOPs of the plain base (``fuse-repconv`` then ``fold-bn``); only training
changes. Non-candidate nodes are never touched; names, indices and blocks are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ..errors import UserError
from . import ops
from .gradient_path import Position, candidates as all_candidates, classify, is_candidate
from .graph import Graph, Node

CHOICES = ("Conv", "RepConv", "RepConvN")  # RepConvN: 3×3 + 1×1, no identity branch


def _planned(p: Position) -> tuple[str, str]:
    if p.kind == "plain":
        if p.identity_possible:
            return "RepConv", "plain chain: full RepConv (its identity duplicates no path)"
        return "RepConv", (f"plain chain: RepConv, but no identity is possible (c_in {p.c_in}"
                           f" ≠ c_out {p.c_out}" + (f", stride {p.s}" if p.s != 1 else "")
                           + "), so 3×3 + 1×1 only")
    return "RepConvN", f"{p.kind}: {p.reason()}; an identity would duplicate that path (§4.1)"


def _everywhere(p: Position) -> tuple[str, str]:
    if not p.identity_possible:
        return "RepConv", f"every candidate: c_in {p.c_in} ≠ c_out {p.c_out}, no identity"
    why = "" if p.kind == "plain" else f"; it duplicates the {p.kind} path (§4.1: hurts)"
    return "RepConv", "every candidate: identity as shapes allow" + why


def _none(p: Position) -> tuple[str, str]:
    return "Conv", "plain 3×3 Conv + BN (the base)"


# policy → (what it does, rule: Position → (target op spelling, reason))
POLICIES: dict[str, tuple[str, Callable[[Position], tuple[str, str]]]] = {
    "planned": ("RepConv where plain, RepConvN where a residual or concat spans the conv",
                _planned),
    "repconv-everywhere": ("RepConv at every candidate, identity wherever c_in == c_out",
                           _everywhere),
    "none": ("plain 3×3 Conv+BN at every candidate", _none),
}


@dataclass(frozen=True)
class Decision:
    """One candidate conv: where it sits, what it was, what it becomes, why."""

    position: Position
    before: str
    choice: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        p = self.position
        return {"index": p.index, "node": p.name, "position": p.kind, "merge": p.merge_name,
                "c_in": p.c_in, "c_out": p.c_out, "before": self.before,
                "choice": self.choice, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """The planned graph, the policy and one decision per candidate (node order)."""

    base: Graph
    graph: Graph
    policy: str
    decisions: tuple[Decision, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.base.name, "policy": self.policy,
                "rule": POLICIES[self.policy][0],
                "candidates": [d.as_dict() for d in self.decisions]}


def choice_of(graph: Graph, index: int) -> str:
    """What a conv node effectively is: ``Conv``, ``RepConv`` (with an identity branch) or
    ``RepConvN`` (RepConv without one, whether by choice or by shape)."""
    n = graph[index]
    if n.op != "RepConv":
        return n.op
    has = ops.get("RepConv").has_identity(n.attrs, graph.c_in(index))
    return "RepConv" if has else "RepConvN"


def _rewrite(n: Node, target: str, graph: Graph) -> Node:
    """``n`` as a plain Conv, a RepConv (identity automatic) or a RepConvN; the node itself
    when it already is exactly that. The algebra is unchanged at deploy: all three fuse to
    W = W3 + pad(W1) [+ I], one 3×3 conv with bias."""
    spec = ops.get(n.op)
    a = spec.complete(n.attrs)
    attrs: dict[str, Any] = {"c": a["c"], "k": a["k"], "s": a["s"], "act": a["act"]}
    if a["g"] != 1:
        attrs["g"] = a["g"]
    if target == "Conv":
        new = n.replace(op="Conv", attrs=attrs)
    else:
        if target == "RepConvN":
            attrs["identity"] = False
        new = n.replace(op="RepConv", attrs=attrs)
    same = (new.op == n.op and spec.complete(n.attrs) == ops.get(new.op).complete(new.attrs))
    return n if same else new


def _select(graph: Graph, chosen: Iterable[Any] | str | None) -> list[int]:
    every = all_candidates(graph)
    if not every:
        raise UserError(f"graph {graph.name!r} has no 3×3 stride-1 convolutions (Conv with BN "
                        f"or RepConv) to plan; give a training-form model that has some")
    if chosen is None or chosen == "all":
        return every
    if isinstance(chosen, str):
        chosen = [c for c in chosen.split(",") if c.strip()]
    by_name = {n.name: n.index for n in graph.nodes}
    order = {n.index: p for p, n in enumerate(graph.nodes)}
    listed = ", ".join(graph[i].name for i in every[:4]) + (", …" if len(every) > 4 else "")
    out: list[int] = []
    for c in chosen:
        key = c.strip() if isinstance(c, str) else c
        idx = by_name.get(key) if isinstance(key, str) else key
        if idx is None or not isinstance(idx, int) or idx not in order:
            raise UserError(f"candidates: no node {key!r} in {graph.name!r}; name 3×3 "
                            f"stride-1 convs such as {listed}", arg="candidates")
        if not is_candidate(graph[idx]):
            raise UserError(f"candidates: {graph[idx].where()} is not a 3×3 stride-1 "
                            f"convolution; name convs such as {listed}", arg="candidates")
        if idx not in out:
            out.append(idx)
    if not out:
        raise UserError("candidates: an empty list; name at least one conv, or 'all'",
                        arg="candidates")
    return sorted(out, key=order.__getitem__)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise UserError(f"policy {policy!r}: expected one of {', '.join(POLICIES)}",
                        arg="policy")
    return policy


def plan(graph: Graph, policy: str = "planned",
         candidates: Sequence[Any] | str | None = None) -> Plan:
    """Plan ``graph`` under ``policy`` for ``candidates`` (None / "all": every 3×3 stride-1
    conv; else node names or indices, a comma-separated string allowed)."""
    rule = POLICIES[check_policy(policy)][1]
    if graph.form != "training":
        raise UserError(f"graph {graph.name!r} is in deploy form (BN folded, RepConv fused); "
                        f"plan the training form, then deploy it")
    chosen = _select(graph, candidates)
    positions = {i: classify(graph, i) for i in chosen}
    nodes, decisions = [], []
    for n in graph.nodes:
        p = positions.get(n.index)
        if p is None:
            nodes.append(n)
            continue
        target, reason = rule(p)
        nodes.append(_rewrite(n, target, graph))
        shown = "RepConvN" if target == "RepConv" and not p.identity_possible else target
        decisions.append(Decision(p, choice_of(graph, n.index), shown, reason))
    return Plan(graph, graph.replace_nodes(nodes), policy, tuple(decisions))


def plan_reparam(graph: Graph, policy: str = "planned",
                 candidates: Sequence[Any] | str | None = None) -> Graph:
    """A new graph with RepConv / RepConvN / plain convs placed by ``policy`` (see module
    docstring); ``plan`` gives the per-node decisions too."""
    return plan(graph, policy, candidates).graph


__all__ = ["CHOICES", "POLICIES", "Decision", "Plan", "check_policy", "choice_of", "plan",
           "plan_reparam"]
