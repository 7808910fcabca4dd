"""Parameters, FLOPs and activations per node, per group and in total.

FLOPs come in three conventions, each a fixed linear combination of the per-op counts in
``ops.Cost`` (all "GFLOPs" = 2 × counted ops / 1e9 at a square input):

- ``macs2``    2 × conv MACs
- ``official`` 2 × (conv MACs + 4 × BatchNorm elements + nearest-upsample outputs)
               — what the official model summary prints today (thop ≥ 0.1)
- ``paper``    2 × (conv MACs + conv-bias outputs + 2 × BatchNorm elements + LeakyReLU
               elements) — what the paper's tables used (thop 0.0.31); SiLU, upsample count 0

Everything is a pure function of the graph and the input size, so it works on sympy symbols
(``img``, or widths produced by symbolic scaling) as well as on numbers.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..errors import UserError
from . import ops
from .graph import GRAPH_INPUT, Graph

CONVENTIONS: Mapping[str, Callable[[ops.Cost], Any]] = OrderedDict(
    macs2=lambda c: 2 * c.conv_macs,
    official=lambda c: 2 * (c.conv_macs + 4 * c.bn_elems + c.upsample_elems),
    paper=lambda c: 2 * (c.conv_macs + c.bias_elems + 2 * c.bn_elems + c.leaky_elems),
)
CONVENTION_LABELS = {
    "macs2": "2×conv MACs",
    "official": "official summary (thop≥0.1: conv + 4·BN + upsample)",
    "paper": "paper tables (thop 0.0.31: conv + bias + 2·BN + LeakyReLU)",
}


@dataclass(frozen=True)
class NodeStats:
    """Everything a report says about one node."""

    index: int
    name: str
    op: str
    inputs: tuple[int, ...]
    c_in: tuple[Any, ...]
    c_out: Any
    stride: Any
    params: Any
    cost: ops.Cost
    block: str
    role: str
    stage: str

    @property
    def macs(self) -> Any:
        return self.cost.conv_macs

    def flops(self, convention: str = "official") -> Any:
        return CONVENTIONS[convention](self.cost)


@dataclass(frozen=True)
class Analysis:
    graph: Graph
    img: Any
    nodes: tuple[NodeStats, ...]

    @property
    def params(self) -> Any:
        return _sum(n.params for n in self.nodes)

    @property
    def cost(self) -> ops.Cost:
        total = ops.Cost()
        for n in self.nodes:
            total = total + n.cost
        return total

    @property
    def macs(self) -> Any:
        return self.cost.conv_macs

    @property
    def activations(self) -> Any:
        return self.cost.activations

    def flops(self, convention: str = "official") -> Any:
        if convention not in CONVENTIONS:
            raise UserError(f"unknown FLOP convention {convention!r}; "
                            f"expected one of {list(CONVENTIONS)}")
        return CONVENTIONS[convention](self.cost)

    def gflops(self, convention: str = "official") -> Any:
        return self.flops(convention) / 1e9 if _is_number(self.img) else self.flops(convention) / 10**9

    def group(self, key: str | Callable[[NodeStats], str]) -> "OrderedDict[str, list[NodeStats]]":
        """Nodes grouped by ``stage``, ``block``, ``op``, ``role`` or a function of a node."""
        fn = key if callable(key) else (lambda n: getattr(n, key) or "(none)")
        groups: OrderedDict[str, list[NodeStats]] = OrderedDict()
        for n in self.nodes:
            groups.setdefault(fn(n), []).append(n)
        return groups


def _sum(values: Iterable[Any]) -> Any:
    total: Any = 0
    for v in values:
        total = total + v
    return total


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float))


def valid_sizes(img: int, stride: int) -> tuple[int, int]:
    """The two valid image sizes nearest ``img`` (positive multiples of ``stride``): the hint
    every stride check gives (``img -5`` → 32 or 64, ``img 300`` → 288 or 320)."""
    s = int(stride)
    lo = max(s, img // s * s)
    return lo, (lo + s if img <= lo else math.ceil(img / s) * s)


def check_img(graph: Graph, img: Any) -> None:
    """A numeric input size must be a positive multiple of the model's largest stride."""
    if not _is_number(img):
        return
    s = graph.max_stride
    if img <= 0 or img % s:
        lo, hi = valid_sizes(int(img), s)
        raise UserError(f"img {img} is not a positive multiple of {graph.name}'s largest "
                        f"stride {s}; use {lo} or {hi}", arg="img")


def analyze(graph: Graph, img: Any = 640) -> Analysis:
    """Per-node parameters, MACs, FLOP counts and activations at a square ``img`` input."""
    check_img(graph, img)
    area_img = img * img
    area: dict[int, Any] = {GRAPH_INPUT: area_img}
    shapes = graph.shapes
    rows = []
    for p, n in enumerate(graph.nodes):
        s = shapes.stride[p]
        area[n.index] = area_img / (s * s) if not _is_number(img) else area_img // (s * s)
    for p, n in enumerate(graph.nodes):
        spec = ops.get(n.op)
        cins = shapes.c_in[p]
        rows.append(NodeStats(n.index, n.name, n.op, n.inputs, cins, shapes.c_out[p],
                              shapes.stride[p], spec.params(n.attrs, cins),
                              spec.cost(n.attrs, cins, [area[i] for i in n.inputs]),
                              n.block, n.role, n.stage))
    return Analysis(graph, img, tuple(rows))
