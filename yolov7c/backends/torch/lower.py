"""Lower an IR graph to a trainable ``torch.nn.Module``.

Layer ``i`` of the graph becomes ``model.model[i]``, so state_dict keys read
``model.{index}.conv.weight`` like the official checkpoints'. The forward pass walks the
nodes in order and keeps only the outputs that a later node reads; it is plain Python over
a fixed node list, so torch.fx and torch.export trace it into a flat graph.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ...errors import UserError
from ...ir import ops
from ...ir.graph import GRAPH_INPUT, Graph, Node
from . import modules as M

Factory = Callable[[dict[str, Any], tuple[int, ...], Graph], nn.Module]


def _detect(cls: type[M.Detect]) -> Factory:
    def make(a: dict[str, Any], cins: tuple[int, ...], g: Graph) -> nn.Module:
        return cls(int(a["nc"]), a["anchors"], cins, g.strides)
    return make


# op name → module factory (complete attrs, input channels, graph); an explicit table, no
# eval(). Factories get every attribute with the catalog's defaults filled in
# (``ops.OpSpec.complete``), so no default is restated here.
FACTORIES: dict[str, Factory] = {
    "Conv": lambda a, c, g: M.Conv(c[0], a["c"], a["k"], a["s"], a["g"], a["act"], a["bn"],
                                   a["bias"]),
    "RepConv": lambda a, c, g: M.RepConv(c[0], a["c"], a["k"], a["s"], a["g"], a["act"],
                                         a["identity"]),
    "MP": lambda a, c, g: M.MP(a["k"]),
    "SP": lambda a, c, g: M.SP(a["k"], a["s"]),
    "Concat": lambda a, c, g: M.Concat(a["dim"]),
    "Shortcut": lambda a, c, g: M.Shortcut(),
    "Upsample": lambda a, c, g: M.Upsample(a["scale"]),
    "ReOrg": lambda a, c, g: M.ReOrg(),
    "DownC": lambda a, c, g: M.DownC(c[0], a["c"], a["k"], a["act"], a["bn"]),
    "SPPCSPC": lambda a, c, g: M.SPPCSPC(c[0], a["c"], a["k"], a["act"], a["bn"]),
    "ImplicitA": lambda a, c, g: M.ImplicitA(c[0]),
    "ImplicitM": lambda a, c, g: M.ImplicitM(c[0]),
    "Detect": _detect(M.Detect),
    "IDetect": _detect(M.IDetect),
    "IAuxDetect": _detect(M.IAuxDetect),
    # E-ELAN (grouped) ops; ElanChain has no module: it only exists in symbolic-depth graphs,
    # which cannot be lowered (their widths are expressions).
    "Shuffle": lambda a, c, g: M.Shuffle(a["g"], a["parts"]),
    "GroupSum": lambda a, c, g: M.GroupSum(a["g"]),
}

class YoloModel(nn.Module):
    """A lowered graph. ``forward(images)`` returns the head's output: raw per-level outputs in
    training mode, ``(decoded (B, N, 5 + nc), raw)`` in eval mode (the official format)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        if any(not isinstance(c, int) for c in graph.shapes.c_out):
            raise UserError(f"graph {graph.name!r} has symbolic widths; substitute numbers "
                            f"(e.g. scale(..., depth=1.5)) before lowering")
        self.graph = graph
        self.model = nn.Sequential(*(
            _module(n, tuple(int(c) for c in graph.c_in(n.index)), graph)
            for n in graph.nodes))
        # a module of an op that may take several inputs gets them as one list
        self.multi: list[bool] = [ops.get(n.op).arity != (1, 1) for n in graph.nodes]
        positions = {n.index: p for p, n in enumerate(graph.nodes)}
        self.input_pos: list[tuple[int, ...]] = [
            tuple(GRAPH_INPUT if i == GRAPH_INPUT else positions[i] for i in n.inputs)
            for n in graph.nodes]
        last_use: dict[int, int] = {}
        for p, ins in enumerate(self.input_pos):
            for i in ins:
                last_use[i] = p
        # free each intermediate after its last reader: peak memory ~ live tensors only
        self.release: list[tuple[int, ...]] = [
            tuple(i for i, last in last_use.items() if last == p and i != GRAPH_INPUT)
            for p in range(len(self.input_pos))]
        self.register_buffer("stride", torch.tensor(graph.strides, dtype=torch.float32),
                             persistent=False)
        self.nc = graph.nc
        initialize_head_biases(self)

    @property
    def detect(self) -> M.Detect:
        return self.model[-1]

    def forward(self, x: torch.Tensor) -> Any:
        live: dict[int, torch.Tensor] = {GRAPH_INPUT: x}
        y: Any = x
        for p, layer in enumerate(self.model):
            ins = self.input_pos[p]
            y = layer([live[i] for i in ins]) if self.multi[p] else layer(live[ins[0]])
            live[p] = y
            for i in self.release[p]:
                del live[i]
        return y


def _module(n: Node, cins: tuple[int, ...], graph: Graph) -> nn.Module:
    factory = FACTORIES.get(n.op)
    if factory is None:
        raise UserError(f"{n.where()}: op {n.op} has no torch module; it only exists in "
                        f"symbolic graphs (substitute numbers first)")
    return factory(ops.get(n.op).complete(n.attrs), cins, graph)


def initialize_head_biases(model: YoloModel, cf: torch.Tensor | None = None) -> None:
    """Objectness and class priors in the head biases (~8 objects per 640² image, class
    probability ~0.6/nc), the standard YOLO initialisation that keeps early training stable."""
    det = model.detect
    if not isinstance(det, M.Detect):
        return
    convs = list(det.m) + list(getattr(det, "m2", []))
    strides = list(model.graph.strides) * (2 if hasattr(det, "m2") else 1)  # ints: meta-safe
    with torch.no_grad():
        for conv, s in zip(convs, strides):
            b = conv.bias.view(det.na, -1)
            b[:, 4] += math.log(8 / (640 / float(s)) ** 2)
            b[:, 5:] += (math.log(0.6 / (det.nc - 0.99)) if cf is None
                         else torch.log(cf / cf.sum()))


def lower(graph: Graph) -> YoloModel:
    """IR graph → ``YoloModel`` (fresh weights; training mode)."""
    return YoloModel(graph)
