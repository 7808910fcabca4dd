"""IR-level deploy transforms: what the weight-carrying passes do, on architecture alone.

They let reports give deploy-form numbers without weights, and give the FX passes the graph
their output must match. Each function matches structure (op names), never layer indices,
and returns a new graph.

``DEPLOY_STEPS`` is the one deploy step list (data): the IR deploy form (``to_deploy``), the
fx ``deploy`` pipeline (``passes.manager.PIPELINES``) and the report's training-vs-deploy
comparison all read it. Like the fx pass manager, ``apply_step`` runs dead-code elimination
after every step, so a step only rewrites and never cleans up after itself.

- ``prune-aux``      IAuxDetect → IDetect on the lead inputs (the aux convs become dead)
- ``fold-implicit``  IDetect → Detect      (ImplicitA/M folded into the head convs)
- ``fuse-repconv``   RepConv → Conv k×k with bias, no BN
- ``fold-bn``        Conv/DownC/SPPCSPC with BN → the same with conv bias, no BN
- ``dce``            drop nodes the head does not depend on; renumber contiguously
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from . import ops
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
    fused forward executes (the aux convs still exist, nothing reads them). This is the
    ``prune-aux`` step; dead-code elimination after it removes the aux-only nodes."""
    head = graph.head
    if head.op != "IAuxDetect":
        return graph
    nl = len(head.attrs["anchors"])
    return graph.replace_nodes([n.replace(op="IDetect", inputs=n.inputs[:nl])
                                if n.index == head.index else n for n in graph.nodes])


def prune_aux(graph: Graph) -> Graph:
    """The aux head detached and the auxiliary convs (and anything that fed only them)
    removed; E6E's partial taps stay: the lead uses them."""
    return apply_step("prune-aux", graph)


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
    rep, conv = ops.get("RepConv"), ops.get("Conv")

    def fuse(n: Node) -> Node:
        if n.op != "RepConv":
            return n
        a = rep.complete(n.attrs)
        attrs = {k: a[k] for k in ("c", "k", "s", "act")}
        if a["g"] != conv.default("g"):
            attrs["g"] = a["g"]
        return n.replace(op="Conv", attrs={**attrs, "bn": False, "bias": True})
    return _map_nodes(graph, fuse)


def fold_bn(graph: Graph) -> Graph:
    """conv → BN  ⇒  conv with W' = W·γ/σ, b' = β − μ·γ/σ  (σ = √(var + ε))."""
    def fold(n: Node) -> Node:
        if n.op not in BN_OPS or not ops.get(n.op).attr(n.attrs, "bn"):
            return n
        attrs = dict(n.attrs, bn=False)
        if n.op == "Conv":
            attrs["bias"] = True
        return n.replace(attrs=attrs)
    return _map_nodes(graph, fold)


@dataclass(frozen=True)
class DeployStep:
    """One step of the deploy form: the pass name (shared with the fx pipeline), how reports
    name it, its IR rewrite, and whether it belongs only to the fully fused form."""

    name: str
    label: str
    rewrite: Callable[[Graph], Graph]
    fused_only: bool


DEPLOY_STEPS: tuple[DeployStep, ...] = (
    DeployStep("prune-aux", "aux pruning", detach_aux, False),
    DeployStep("fold-implicit", "implicit folding", fold_implicit, False),
    DeployStep("fuse-repconv", "RepConv fusion", fuse_repconv, True),
    DeployStep("fold-bn", "BN folding", fold_bn, True),
)

# pass name → IR rewrite, for every pass that has an IR counterpart
IR_PASSES: dict[str, Callable[[Graph], Graph]] = {
    **{s.name: s.rewrite for s in DEPLOY_STEPS}, "dce": dce}


def deploy_steps(fuse: bool = True) -> tuple[DeployStep, ...]:
    """The steps of the fused (``fuse=True``) or the unfused deploy form, in order."""
    return tuple(s for s in DEPLOY_STEPS if fuse or not s.fused_only)


def apply_step(name: str, graph: Graph) -> Graph:
    """The IR counterpart of running pass ``name`` through the pass manager: the rewrite,
    then dead-code elimination."""
    return dce(IR_PASSES[name](graph))


def run_steps(graph: Graph, names: Sequence[str]) -> Graph:
    """``apply_step`` for each name in order."""
    for name in names:
        graph = apply_step(name, graph)
    return graph


def to_deploy(graph: Graph, fuse: bool = True) -> Graph:
    """The deploy form. ``fuse=False`` gives the official deploy cfg's architecture (aux head
    and implicit layers gone, BN and RepConv kept); ``fuse=True`` the fully fused model."""
    g = run_steps(graph, [s.name for s in deploy_steps(fuse)])
    return g.replace_nodes(g.nodes, form="deploy")
