"""torch.fx plumbing shared by the passes: tracing, module lookup and clean-up.

Tracing choice: the tracer goes *through* our building blocks (Conv, RepConv, DownC,
SPPCSPC ...) so the passes see plain ``Conv2d → BatchNorm2d`` and ``add`` nodes — the same
patterns any user PyTorch model produces, which is what lets fold_bn and fuse_repconv work on
models that are not ours. Only the detection heads stay leaves: their decode builds grids
from runtime shapes and switches on ``training``, and the head passes (prune_aux,
fold_implicit) swap a whole head module for another, keeping the ``(decoded, raw)`` output.
"""
from __future__ import annotations

import operator
import weakref
from typing import Any

import torch
from torch import fx, nn

from ..backends.common import all_finite
from ..backends.torch import modules as M

ADD_TARGETS = (operator.add, torch.add, operator.iadd)


class YoloTracer(fx.Tracer):
    """Standard fx tracer that keeps detection heads (``Detect`` and subclasses) as leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, M.Detect) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` as an fx GraphModule in eval mode (GraphModules are returned as they are)."""
    if isinstance(model, fx.GraphModule):
        return model.eval()
    graph = YoloTracer().trace(model)
    gm = fx.GraphModule(model, graph)
    return gm.eval()


def module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The module a ``call_module`` node calls, else None."""
    if node.op != "call_module":
        return None
    return gm.get_submodule(str(node.target))


def calls_to(gm: fx.GraphModule, node: fx.Node, kind: type | tuple[type, ...]) -> bool:
    """Whether ``node`` calls a module of type ``kind``."""
    return isinstance(module(gm, node), kind)


def call_sites(gm: fx.GraphModule) -> dict[str, int]:
    """How many nodes call each module target (a shared module must not be rewritten)."""
    counts: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            counts[str(n.target)] = counts.get(str(n.target), 0) + 1
    return counts


def is_add(node: fx.Node) -> bool:
    """A two-operand tensor addition with no extra arguments (``a + b``, ``torch.add(a, b)``)."""
    return (node.op == "call_function" and node.target in ADD_TARGETS and len(node.args) == 2
            and not node.kwargs)


def unique_target(gm: fx.GraphModule, base: str) -> str:
    """``base`` or ``base_1``, ``base_2`` ... whichever names no existing attribute."""
    name, k = base, 0
    while _exists(gm, name):
        k += 1
        name = f"{base}_{k}"
    return name


def _exists(gm: fx.GraphModule, target: str) -> bool:
    obj: Any = gm
    for part in target.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def finish(gm: fx.GraphModule) -> fx.GraphModule:
    """Drop submodules no node calls any more, check and recompile the graph."""
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def lint(gm: fx.GraphModule, checked: dict[int, tuple[weakref.ref, int]] | None = None
         ) -> str | None:
    """What is malformed about ``gm``, or None: fx's own graph lint (topological order, node
    targets that exist), one output, no dead node, no unused submodule, finite weights.

    ``checked``: tensors already found finite (id → weak reference and version; skipped
    unless changed in place since, then extended), so a pipeline checks each tensor once
    per change — the ones its passes wrote."""
    try:
        gm.graph.lint()
    except Exception as e:  # fx raises RuntimeError/AssertionError with its own message
        return f"fx lint: {e}"
    nodes = list(gm.graph.nodes)
    outputs = [n for n in nodes if n.op == "output"]
    if len(outputs) != 1:
        return f"{len(outputs)} output nodes (expected 1)"
    dead = [n.name for n in nodes if not n.users and n.op not in ("output", "placeholder")]
    if dead:
        return f"dead nodes left: {', '.join(dead[:5])}"
    called = {str(n.target) for n in nodes if n.op == "call_module"}
    refs = called | {str(n.target) for n in nodes if n.op == "get_attr"}
    containers = {".".join(t.split(".")[:i]) for t in refs for i in range(1, t.count(".") + 1)}

    def used(name: str) -> bool:  # called, holds a called module, or inside a called leaf
        parts = name.split(".")
        return name in containers or any(".".join(parts[:i]) in called
                                         for i in range(1, len(parts) + 1))
    unused = [name for name, _ in gm.named_modules() if name and not used(name)]
    if unused:
        return f"unused submodules left: {', '.join(unused[:5])}"
    checked = {} if checked is None else checked
    for name, t in [*gm.named_parameters(), *gm.named_buffers()]:
        seen = checked.get(id(t))  # (the tensor, its in-place version counter) when checked
        if (seen is not None and seen[0]() is t and seen[1] == t._version) \
                or not t.is_floating_point():
            continue
        if not all_finite(t):
            return f"non-finite values in {name}"
        checked[id(t)] = (weakref.ref(t), t._version)
    return None


def param_count(model: nn.Module) -> int:
    """Parameters as the official model summary counts them (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def new_head(cls: type[M.Detect], like: M.Detect) -> M.Detect:
    """A fresh ``cls`` head with ``like``'s classes, anchors, levels and strides (read from the
    module, so any nc and anchor count work); anchor buffers are copied exactly."""
    anchors = like.anchor_grid.detach().reshape(like.nl, -1).tolist()
    ch = [conv.in_channels for conv in like.m]
    head = cls(like.nc, anchors, ch, [int(s) for s in like.stride.tolist()])
    with torch.no_grad():
        head.anchors.copy_(like.anchors)
        head.anchor_grid.copy_(like.anchor_grid)
    return head.to(like.anchors.device).train(like.training)
