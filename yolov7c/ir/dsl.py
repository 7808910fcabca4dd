"""A builder DSL that produces IR graphs which read like the paper's figures.

    b = Builder("toy", act="silu")
    x = b.conv(b.input, 32, 3, 2)
    with b.scope("backbone.p2", stage="P2"):
        x = elan(x, c=32, convs=2, out=64)        # from yolov7c.ir.blocks
    b.detect([x], nc=3, anchors=[[10, 13, 16, 30, 33, 23]])
    graph = b.build()

Handles (``T``) carry their builder, so block functions take tensors like PyTorch code does.
Ops are resolved through the catalog (``ops.CATALOG``), never by ``eval``; channels are
inferred as nodes are added, so ``x.c`` is always the true width of ``x``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..errors import UserError
from . import ops
from .gradient_path import lint_identity
from .graph import GRAPH_INPUT, BlockInfo, Graph, Node

# Keyword defaults of the op methods are the catalog's (declared once, in ops.py).
_CONV, _REP = ops.get("Conv").schema, ops.get("RepConv").schema
_MP, _UP = ops.get("MP").schema, ops.get("Upsample").schema
_DOWNC, _SPP = ops.get("DownC").schema, ops.get("SPPCSPC").schema


@dataclass(frozen=True)
class T:
    """A tensor handle: the output of node ``index`` of ``builder``'s graph."""

    builder: "Builder"
    index: int

    @property
    def c(self) -> Any:
        """Output channels of this tensor."""
        return self.builder.channels(self.index)

    @property
    def stride(self) -> Any:
        return self.builder.stride_of(self.index)


class Builder:
    """Accumulates nodes in creation order; ``build()`` returns a validated ``Graph``."""

    def __init__(self, name: str, in_channels: int = 3, act: str = _CONV["act"]) -> None:
        self.name = name
        self.in_channels = in_channels
        self.act = act
        self.nodes: list[Node] = []
        self.blocks: dict[str, BlockInfo] = {}
        self._c: dict[int, Any] = {GRAPH_INPUT: in_channels}
        self._s: dict[int, Any] = {GRAPH_INPUT: 1}
        self._prefix: list[str] = []
        self._stage = ""
        self._role = ""
        self._counts: dict[str, int] = {}

    # ----- handles ----------------------------------------------------------------------------
    @property
    def input(self) -> T:
        return T(self, GRAPH_INPUT)

    def channels(self, index: int) -> Any:
        return self._c[index]

    def stride_of(self, index: int) -> Any:
        return self._s[index]

    # ----- scopes -----------------------------------------------------------------------------
    @contextmanager
    def scope(self, name: str, stage: str | None = None, role: str | None = None,
              kind: str | None = None, **args: Any) -> Iterator[str]:
        """Name prefix (and stage / role / block record) for the nodes added inside."""
        saved = (self._stage, self._role)
        parent = ".".join(self._prefix)
        full = self._unique(f"{parent}.{name}" if parent else name)
        self._prefix.append(full[len(parent) + 1:] if parent else full)
        if stage is not None:
            self._stage = stage
        if role is not None:
            self._role = role
        if kind is not None:
            self.blocks[full] = BlockInfo(full, kind, dict(args))
        try:
            yield full
        finally:
            self._prefix.pop()
            self._stage, self._role = saved

    def _unique(self, name: str) -> str:
        """Scope names repeat (two ELANs in one stage): suffix the second and later ones."""
        k = self._counts.get(name, 0)
        self._counts[name] = k + 1
        return name if k == 0 else f"{name}{k + 1}"

    @contextmanager
    def role(self, role: str) -> Iterator[None]:
        saved = self._role
        self._role = role
        try:
            yield
        finally:
            self._role = saved

    # ----- generic node creation ----------------------------------------------------------------
    def add(self, op: str, inputs: Sequence[T], name: str | None = None, **attrs: Any) -> T:
        """Append one node of catalog op ``op`` reading ``inputs``; returns its handle."""
        spec = ops.get(op)
        for t in inputs:
            if t.builder is not self:
                raise UserError(f"{self.name}: a tensor from another builder was passed to {op}")
        index = len(self.nodes)
        local = name or op.lower()
        full = ".".join(self._prefix + [local]) if self._prefix else local
        full = self._unique(full)
        block = ".".join(self._prefix)
        node = Node(index, full, op, tuple(t.index for t in inputs), dict(attrs), block,
                    self._role, self._stage)
        spec.check_arity(node, len(inputs))
        cins = tuple(self._c[t.index] for t in inputs)
        strides = tuple(self._s[t.index] for t in inputs)
        try:
            spec.validate(node.attrs, cins, strides)
        except ops.OpError as e:
            raise UserError(f"{node.where()}: {e}") from None
        self._c[index] = spec.out_channels(node.attrs, cins)
        self._s[index] = spec.out_stride(node.attrs, strides)
        self.nodes.append(node)
        return T(self, index)

    # ----- one method per catalog op ----------------------------------------------------------
    def conv(self, x: T, c: Any, k: int = _CONV["k"], s: int = _CONV["s"], g: int = _CONV["g"],
             act: str | None = None, name: str | None = None) -> T:
        attrs: dict[str, Any] = {"c": c, "k": k, "s": s, "act": act or self.act}
        if g != _CONV["g"]:
            attrs["g"] = g
        return self.add("Conv", [x], name or "conv", **attrs)

    def repconv(self, x: T, c: Any, k: int = _REP["k"], s: int = _REP["s"], act: str | None = None,
                name: str | None = None, identity: bool | None = _REP["identity"]) -> T:
        """RepConv; ``identity=False`` is RepConvN (no identity branch: for a conv that has a
        residual or concatenation connection, paper §4.1), ``True`` a deliberate identity
        (not linted), None (default) the identity wherever c_in == c and s == 1."""
        attrs: dict[str, Any] = {"c": c, "k": k, "s": s, "act": act or self.act}
        if identity is not _REP["identity"]:
            attrs["identity"] = identity
        return self.add("RepConv", [x], name or "repconv", **attrs)

    def mp(self, x: T, k: int = _MP["k"], name: str | None = None) -> T:
        return self.add("MP", [x], name or "mp", k=k)

    def sp(self, x: T, k: int, name: str | None = None) -> T:
        return self.add("SP", [x], name or f"sp{k}", k=k, s=1)

    def concat(self, *xs: T, name: str | None = None) -> T:
        return self.add("Concat", list(xs), name or "concat", dim=1)

    def shortcut(self, a: T, b: T, name: str | None = None) -> T:
        return self.add("Shortcut", [a, b], name or "shortcut")

    def upsample(self, x: T, scale: int = _UP["scale"], name: str | None = None) -> T:
        return self.add("Upsample", [x], name or "upsample", scale=scale, mode=_UP["mode"])

    def reorg(self, x: T, name: str | None = None) -> T:
        return self.add("ReOrg", [x], name or "reorg")

    def downc(self, x: T, c: Any, k: int = _DOWNC["k"], name: str | None = None) -> T:
        return self.add("DownC", [x], name or "downc", c=c, k=k, act=self.act)

    def sppcspc(self, x: T, c: Any, name: str | None = None) -> T:
        return self.add("SPPCSPC", [x], name or "sppcspc", c=c, k=_SPP["k"], act=self.act)

    def detect(self, xs: Sequence[T], nc: int, anchors: Sequence[Sequence[float]],
               kind: str = "IDetect", name: str | None = None) -> T:
        anchors = tuple(tuple(a) for a in anchors)
        return self.add(kind, list(xs), name or kind.lower(), nc=nc, anchors=anchors)

    # ----- result -------------------------------------------------------------------------------
    def build(self, form: str = "training") -> Graph:
        """The validated graph; warns (``gradient_path.lint_identity``) where a RepConv's
        automatic identity branch sits on a residual or concatenation path (§4.1)."""
        graph = Graph(self.name, self.nodes, self.in_channels, form, self.blocks)
        lint_identity(graph)
        return graph
