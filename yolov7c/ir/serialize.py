"""IR graph ⇄ plain JSON-able data (the architecture spec stored in our checkpoints).

Tuples are tagged (``{"__tuple__": [...]}``) so a round trip gives back equal nodes — the
deploy transforms compare node lists, and attrs such as anchors are tuples. Only plain
values are accepted: a symbolic (sympy) width cannot be stored, substitute numbers first.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import UserError, one_line
from .graph import BlockInfo, Graph, Node

FORMAT = "yolov7c.graph/1"
_TUPLE = "__tuple__"


def _encode(v: Any, where: str) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {_TUPLE: [_encode(x, where) for x in v]}
    if isinstance(v, list):
        return [_encode(x, where) for x in v]
    if isinstance(v, Mapping) and all(isinstance(k, str) for k in v) and _TUPLE not in v:
        return {k: _encode(x, where) for k, x in v.items()}
    raise UserError(f"{where}: value {v!r} ({type(v).__name__}) cannot be stored in a "
                    f"checkpoint; substitute numbers for symbols before saving")


def _decode(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {_TUPLE}:
            return tuple(_decode(x) for x in v[_TUPLE])
        return {k: _decode(x) for k, x in v.items()}
    return v


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """A JSON-able description of ``graph`` (nodes, blocks, metadata)."""
    nodes = [{"index": n.index, "name": n.name, "op": n.op, "inputs": list(n.inputs),
              "attrs": _encode(dict(n.attrs), n.where()), "block": n.block, "role": n.role,
              "stage": n.stage} for n in graph.nodes]
    blocks = [{"name": b.name, "kind": b.kind, "args": _encode(dict(b.args), f"block {b.name}")}
              for b in graph.blocks.values()]
    return {"format": FORMAT, "name": graph.name, "in_channels": graph.in_channels,
            "form": graph.form, "nodes": nodes, "blocks": blocks}


def graph_from_dict(data: Mapping[str, Any], source: str = "<spec>") -> Graph:
    """Rebuild the graph written by ``graph_to_dict`` (validated like any new Graph)."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise UserError(f"{source}: not a yolov7c graph spec (format {got!r}, expected "
                        f"{FORMAT!r}); was it written by yolov7c.save?")
    if not isinstance(data.get("nodes"), list) or not isinstance(data.get("blocks", []), list):
        raise UserError(f"{source}: malformed graph spec ('nodes' and 'blocks' must be lists)")
    try:
        nodes = [Node(int(n["index"]), str(n["name"]), str(n["op"]),
                      tuple(int(i) for i in n["inputs"]), _decode(n["attrs"]),
                      n.get("block", ""), n.get("role", ""), n.get("stage", ""))
                 for n in data["nodes"]]
        blocks = {b["name"]: BlockInfo(b["name"], b["kind"], _decode(b["args"]))
                  for b in data.get("blocks", [])}
        return Graph(str(data["name"]), nodes, int(data["in_channels"]), str(data["form"]),
                     blocks)
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError,
            OverflowError, ZeroDivisionError) as e:
        # the spec is untrusted input: whatever Node/Graph validation trips on is the file's
        # fault, reported in one line
        raise UserError(f"{source}: malformed graph spec ({one_line(repr(e), 160)})") from None
