"""Write a graph as a DSL module: Python that rebuilds it with ``Builder`` (``--emit dsl``).

Generic over any graph: the module reopens the graph's scopes (nested, one per dotted
component of a node's ``block``, with the block's recorded kind and arguments), sets roles
and adds every node with ``b.add(op, inputs, name, **attrs)``, so names, blocks, roles,
stages and inferred channels come back identical. ``build(nc=...)`` changes only the head's
class count. The check that it does come back identical is a test (importing the module).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..errors import UserError
from .graph import GRAPH_INPUT, Graph
from .scaling import is_symbolic

INDENT = "    "


def _value(v: Any) -> str:
    if isinstance(v, Fraction):
        return repr(_frac(v))
    if isinstance(v, tuple):
        return "(" + ", ".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, (int, float, str, bool)) or v is None:
        return repr(v)
    raise UserError(f"attribute value {v!r} ({type(v).__name__}) has no DSL spelling; "
                    f"substitute numbers before emitting")


def _frac(v: Fraction) -> Any:
    return int(v) if v.denominator == 1 else v


def _kwargs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in d.items())


def to_dsl(graph: Graph) -> str:
    """Python source of a module whose ``build()`` returns ``graph`` again."""
    head = graph.head.index
    body: list[str] = []
    stack: list[str] = []          # open scope components
    opened: set[str] = set()
    stage = ""
    stages: list[str] = []
    for n in graph.nodes:
        for a in n.attrs.values():
            if is_symbolic(a):
                raise UserError(f"{n.where()}: symbolic attribute {a}; emit a numeric scaling "
                                f"(e.g. depth=1.5), not a closed form")
        path = n.block.split(".") if n.block else []
        common = 0
        while common < min(len(stack), len(path)) and stack[common] == path[common]:
            common += 1
        while len(stack) > common:
            stack.pop()
            stage = stages.pop()
        for comp in path[common:]:
            full = ".".join(stack + [comp])
            if full in opened:
                raise UserError(f"block {full!r} is not contiguous in node order; it has no "
                                f"DSL form (emit yaml instead)")
            opened.add(full)
            args: dict[str, Any] = {}
            if n.stage != stage:
                args["stage"] = n.stage
            info = graph.blocks.get(full)
            if info is not None:
                args["kind"] = info.kind
                args.update(info.args)
            extra = f", {_kwargs(args)}" if args else ""
            body.append(f"{INDENT * (len(stack) + 1)}with b.scope({comp!r}{extra}):")
            stages.append(stage)
            stage = n.stage
            stack.append(comp)
        if n.stage != stage:
            raise UserError(f"{n.where()}: stage {n.stage!r} differs from its scope's "
                            f"{stage!r}; it has no DSL form (emit yaml instead)")
        local = n.name[len(n.block) + 1:] if n.block else n.name
        attrs = dict(n.attrs)
        nc = ""
        if n.index == head:
            nc = "nc=nc, "
            attrs.pop("nc")
        ins = ", ".join(f"t[{i}]" for i in n.inputs)
        rest = ", ".join(x for x in (nc.rstrip(", "), _kwargs(attrs)) if x)
        call = f"t[{n.index}] = b.add({n.op!r}, [{ins}], {local!r}{', ' if rest else ''}{rest})"
        if n.role:
            call = f"with b.role({n.role!r}): {call}"
        body.append(f"{INDENT * (len(stack) + 1)}{call}")
    if [n.index for n in graph.nodes] != list(range(len(graph.nodes))):
        raise UserError(f"graph {graph.name!r}: indices must be 0..n-1 in order to emit DSL")
    return "\n".join([
        f'"""{graph.name}: written by yolov7c (``yolov7c scale ... --emit dsl``).',
        "",
        "``build(nc)`` returns the IR graph; channels are inferred, not restated.",
        '"""',
        "from fractions import Fraction  # noqa: F401 (exact widths of unrounded scalings)",
        "",
        "from yolov7c.ir.dsl import Builder",
        "from yolov7c.ir.graph import Graph",
        "",
        f"NAME = {graph.name!r}",
        "",
        "",
        f"def build(nc: int = {graph.nc}) -> Graph:",
        f"{INDENT}b = Builder(NAME, in_channels={graph.in_channels})",
        f"{INDENT}t = {{{GRAPH_INPUT}: b.input}}",
        *body,
        f"{INDENT}return b.build({graph.form!r})",
        ""])
