"""IR-level deploy transforms: what the weight-carrying passes do, on architecture alone.

They let reports give deploy-form numbers without weights, and give the FX passes the graph
their output must match. Each function matches structure (op names), never layer indices,
and returns a new graph.

- ``prune_aux``      IAuxDetect → IDetect on the lead inputs; aux-only nodes removed
- ``fold_implicit``  IDetect → Detect      (ImplicitA/M folded into the head convs)
- ``fuse_repconv``   RepConv → Conv 3×3 with bias, no BN
- ``fold_bn``        Conv/DownC/SPPCSPC with BN → the same with conv bias, no BN
- ``dce``            drop nodes the head does not depend on; renumber contiguously
"""
from __future__ import annotations

from typing import Callable

from .graph import GRAPH_INPUT, Graph, Node

BN_OPS = ("Conv", "DownC", "SPPCSPC")


def dce(graph: Graph) -> Graph:
    """Keep the head and its ancestors; renumber so indices stay 0..n-1 in the old order
    (the numbering of the official deploy cfgs)."""
    keep = graph.ancestors([graph.head.index])
    kept = [n for n in graph.nodes if n.index in keep]
    if len(kept) == len(graph.nodes):
        return graph
    new_index = {n.index: i for i, n in enumerate(kept)}
    new_index[GRAPH_INPUT] = GRAPH_INPUT
    return graph.replace_nodes([n.replace(index=new_index[n.index],
                                          inputs=tuple(new_index[i] for i in n.inputs))
                                for n in kept])


def detach_aux(graph: Graph) -> Graph:
    """IAuxDetect(lead..., aux...) → IDetect(lead...), nodes kept: the graph the official
    fused forward executes (the aux convs still exist, nothing reads them)."""
    head = graph.head
    if head.op != "IAuxDetect":
        return graph
    nl = len(head.attrs["anchors"])
    return graph.replace_nodes([n.replace(op="IDetect", inputs=n.inputs[:nl])
                                if n.index == head.index else n for n in graph.nodes])


def prune_aux(graph: Graph) -> Graph:
    """Detach the aux head, then dead-code elimination removes the auxiliary convs and
    anything that fed only them (E6E's partial taps stay: the lead uses them)."""
    return dce(detach_aux(graph))


def _map_nodes(graph: Graph, fn: Callable[[Node], Node]) -> Graph:
    nodes = [fn(n) for n in graph.nodes]
    return graph if nodes == list(graph.nodes) else graph.replace_nodes(nodes)


def fold_implicit(graph: Graph) -> Graph:
    """IDetect → Detect: b' = b + W·a (ImplicitA before the conv), then W' = W·m, b' = b·m
    (ImplicitM after) — the weights change, the architecture loses the implicit vectors."""
    return _map_nodes(graph, lambda n: n.replace(op="Detect") if n.op == "IDetect" else n)


def fuse_repconv(graph: Graph) -> Graph:
    """RepConv → one k×k Conv with bias (the 1×1 kernel is padded to k×k and the identity is
    a k×k kernel with a centred 1; all three BNs fold into weights and bias)."""
    def fuse(n: Node) -> Node:
        if n.op != "RepConv":
            return n
        a = n.attrs
        return n.replace(op="Conv", attrs={"c": a["c"], "k": a.get("k", 3), "s": a.get("s", 1),
                                           "act": a.get("act", "silu"), "bn": False,
                                           "bias": True, **({"g": a["g"]} if "g" in a else {})})
    return _map_nodes(graph, fuse)


def fold_bn(graph: Graph) -> Graph:
    """conv → BN  ⇒  conv with W' = W·γ/σ, b' = β − μ·γ/σ  (σ = √(var + ε))."""
    def fold(n: Node) -> Node:
        if n.op not in BN_OPS or not n.attrs.get("bn", True):
            return n
        attrs = dict(n.attrs, bn=False)
        if n.op == "Conv":
            attrs["bias"] = True
        return n.replace(attrs=attrs)
    return _map_nodes(graph, fold)


IR_PASSES: dict[str, Callable[[Graph], Graph]] = {
    "prune-aux": prune_aux, "fold-implicit": fold_implicit, "fuse-repconv": fuse_repconv,
    "fold-bn": fold_bn, "dce": dce}


def to_deploy(graph: Graph, fuse: bool = True) -> Graph:
    """The deploy form. ``fuse=False`` gives the official deploy cfg's architecture (aux head
    and implicit layers gone, BN and RepConv kept); ``fuse=True`` the fully fused model."""
    g = fold_implicit(prune_aux(graph))
    if fuse:
        g = fold_bn(fuse_repconv(g))
    return g.replace_nodes(g.nodes, form="deploy")

