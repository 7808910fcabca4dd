"""The IR: a typed DAG of layers.

A ``Graph`` is an ordered list of ``Node``s. A node's ``index`` is stable (creation order; for
zoo models it equals the official cfg's layer index, so official checkpoints and YAML map
one-to-one). ``inputs`` are node indices, ``GRAPH_INPUT`` (-1) being the image. Channels and
strides are never stored: they are inferred from the op catalog, so a concat's width is the
sum of its inputs' widths and cannot drift from them. networkx gives topological order,
reachability and cycle checks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Iterator, Mapping, Sequence

import networkx as nx

from ..errors import UserError
from . import ops

GRAPH_INPUT = -1
FORMS = ("training", "deploy")


@dataclass(frozen=True)
class Node:
    """One layer. ``block`` names the block it belongs to (``backbone.p3.elan``), ``role`` says
    whether it is part of a computational block or a transition layer (used by scaling and
    reports), ``stage`` is the coarse stage (stem, P2..P6, neck, head, aux)."""

    index: int
    name: str
    op: str
    inputs: tuple[int, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    block: str = ""
    role: str = ""
    stage: str = ""

    def replace(self, **changes: Any) -> "Node":
        return dataclasses.replace(self, **changes)

    def where(self) -> str:
        """How error messages name this node."""
        return f"node {self.index} ({self.name}, {self.op})"


@dataclass(frozen=True)
class BlockInfo:
    """What a DSL block was built from (kind and arguments), kept for scaling and reports."""

    name: str
    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Shapes:
    """Per-node inferred facts: input channels, output channels and cumulative stride."""

    c_in: tuple[tuple[Any, ...], ...]
    c_out: tuple[Any, ...]
    stride: tuple[Any, ...]


class Graph:
    """An ordered, validated DAG of ``Node``s plus model metadata.

    Graphs are treated as values: transformations return new graphs (``replace_nodes``).
    Validation runs at construction, so a ``Graph`` that exists is well formed.
    """

    def __init__(self, name: str, nodes: Sequence[Node], in_channels: int = 3,
                 form: str = "training", blocks: Mapping[str, BlockInfo] | None = None) -> None:
        if form not in FORMS:
            raise UserError(f"graph {name!r}: form must be one of {FORMS}, got {form!r}")
        self.name = name
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.in_channels = in_channels
        self.form = form
        self.blocks: dict[str, BlockInfo] = dict(blocks or {})
        self._validate_structure()
        _ = self.shapes  # infer (and so validate) channels eagerly

    # ----- construction helpers -------------------------------------------------------------
    def replace_nodes(self, nodes: Sequence[Node], **meta: Any) -> "Graph":
        """A new graph with other nodes (and optionally other name/form/blocks)."""
        return Graph(meta.get("name", self.name), nodes, meta.get("in_channels", self.in_channels),
                     meta.get("form", self.form), meta.get("blocks", self.blocks))

    # ----- lookup ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __getitem__(self, index: int) -> Node:
        return self._by_index[index]

    @cached_property
    def _by_index(self) -> dict[int, Node]:
        return {n.index: n for n in self.nodes}

    @property
    def head(self) -> Node:
        """The detection head node (the graph's output)."""
        heads = [n for n in self.nodes if ops.get(n.op).is_head]
        if len(heads) != 1:
            raise UserError(f"graph {self.name!r}: expected exactly one detection head, "
                            f"found {len(heads)}")
        return heads[0]

    @property
    def nc(self) -> int:
        return int(self.head.attrs["nc"])

    @property
    def anchors(self) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(a) for a in self.head.attrs["anchors"])

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each detection level (lead head)."""
        h = self.head
        nl = len(h.attrs["anchors"])
        return tuple(int(self.shapes.stride[self._pos[i]]) for i in h.inputs[:nl])

    @property
    def max_stride(self) -> int:
        return max(self.strides)

    def consumers(self, index: int) -> list[int]:
        return sorted(self.nx.successors(index)) if index in self.nx else []

    # ----- networkx view ----------------------------------------------------------------------
    @cached_property
    def nx(self) -> nx.DiGraph:
        """Edges input → consumer; the image is the node GRAPH_INPUT."""
        g = nx.DiGraph()
        g.add_node(GRAPH_INPUT)
        for n in self.nodes:
            g.add_node(n.index)
            for i in n.inputs:
                g.add_edge(i, n.index)
        return g

    def ancestors(self, indices: Iterable[int]) -> set[int]:
        """Every node that some node in ``indices`` depends on, plus those nodes."""
        out: set[int] = set()
        for i in indices:
            out.add(i)
            out |= nx.ancestors(self.nx, i)
        out.discard(GRAPH_INPUT)
        return out

    @cached_property
    def _pos(self) -> dict[int, int]:
        return {n.index: p for p, n in enumerate(self.nodes)}

    # ----- validation and inference -----------------------------------------------------------
    def _validate_structure(self) -> None:
        seen: set[int] = set()
        for n in self.nodes:
            if n.index in seen:
                raise UserError(f"{n.where()}: duplicate node index {n.index}")
            seen.add(n.index)
            ops.get(n.op, where=n.where())  # unknown op → error naming the node
        for n in self.nodes:
            for i in n.inputs:
                if i != GRAPH_INPUT and i not in seen:
                    raise UserError(f"{n.where()}: input {i} is out of range (no such node); "
                                    f"inputs must name existing layers")
        if not nx.is_directed_acyclic_graph(self.nx):
            cycle = [e[0] for e in nx.find_cycle(self.nx)]
            raise UserError(f"graph {self.name!r}: cycle through nodes {cycle}; "
                            f"a layer may only read layers that do not depend on it")

    @cached_property
    def topo_order(self) -> tuple[int, ...]:
        """Node indices in a topological order (the stored order when it already is one)."""
        order = [n.index for n in self.nodes]
        pos = {i: p for p, i in enumerate(order)}
        if all(pos.get(i, -1) < pos[n.index] for n in self.nodes for i in n.inputs):
            return tuple(order)
        return tuple(i for i in nx.lexicographical_topological_sort(self.nx)
                     if i != GRAPH_INPUT)

    @cached_property
    def shapes(self) -> Shapes:
        """Channels and strides of every node, inferred through the op catalog."""
        c_out: dict[int, Any] = {GRAPH_INPUT: self.in_channels}
        stride: dict[int, Any] = {GRAPH_INPUT: 1}
        c_in_of: dict[int, tuple[Any, ...]] = {}
        for idx in self.topo_order:
            n = self[idx]
            spec = ops.get(n.op)
            cins = tuple(c_out[i] for i in n.inputs)
            strides = tuple(stride[i] for i in n.inputs)
            spec.check_arity(n, len(cins))
            try:
                spec.validate(n.attrs, cins, strides)
                c_out[idx] = spec.out_channels(n.attrs, cins)
                stride[idx] = spec.out_stride(n.attrs, strides)
            except ops.OpError as e:
                raise UserError(f"{n.where()}: {e}") from None
            _check_positive(n, c_out[idx])
            c_in_of[idx] = cins
        order = [n.index for n in self.nodes]
        return Shapes(tuple(c_in_of[i] for i in order), tuple(c_out[i] for i in order),
                      tuple(stride[i] for i in order))

    def c_out(self, index: int) -> Any:
        return self.shapes.c_out[self._pos[index]]

    def c_in(self, index: int) -> tuple[Any, ...]:
        return self.shapes.c_in[self._pos[index]]

    def stride(self, index: int) -> Any:
        return self.shapes.stride[self._pos[index]]

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, form={self.form!r})"

    def summary(self) -> str:
        """A compact listing: index, name, op, inputs, channels, stride."""
        lines = []
        for p, n in enumerate(self.nodes):
            ins = ",".join(str(i) for i in n.inputs)
            lines.append(f"{n.index:>4} {n.name:<40} {n.op:<10} [{ins}] "
                         f"{self.shapes.c_in[p]}->{self.shapes.c_out[p]} s{self.shapes.stride[p]}")
        return "\n".join(lines)


def _check_positive(n: Node, c: Any) -> None:
    values = c if isinstance(c, tuple) else (c,)
    for v in values:
        if getattr(v, "is_number", True) and not isinstance(v, str):
            try:
                if float(v) <= 0:
                    raise UserError(f"{n.where()}: output width {v} is not positive; "
                                    f"every layer needs at least one channel")
            except TypeError:  # symbolic expression: positivity is the caller's assumption
                pass
