"""IR graph ⇄ plain JSON-able data (the architecture spec stored in our checkpoints).

Tuples are tagged (``{"__tuple__": [...]}``) so a round trip gives back equal nodes — the
deploy transforms compare node lists, and attrs such as anchors are tuples. Only plain
values are accepted: a symbolic (sympy) width cannot be stored, substitute numbers first.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import UserError, one_line, show
from .graph import BlockInfo, Graph, Node
from .ops import ACTIVATIONS

FORMAT = "yolov7c.graph/1"
_TUPLE = "__tuple__"
MAX_NODES = 100_000

# a stored spec is untrusted: the value rules of every attribute, checked before the graph
# (and its analysis, lowering, allocation) sees them. Name → (kind, low, high).
_INT_ATTRS = {"c": (1, 1 << 16), "k": (1, 63), "s": (1, 16), "g": (1, 1 << 16),
              "scale": (1, 16), "nc": (1, 1_000_000), "dim": (-4, 4), "stages": (1, 256),
              "step": (1, 16), "parts": (1, 256)}
_BOOL_ATTRS = ("bn", "bias")


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_name(v: Any) -> bool:
    """A short printable string: names end up in messages and reports."""
    return isinstance(v, str) and len(v) <= 200 and v.isprintable()


def _check_attr(name: str, v: Any) -> str | None:
    """Why ``v`` is not a valid value of attribute ``name`` (None when it is)."""
    if name in _INT_ATTRS:
        lo, hi = _INT_ATTRS[name]
        ok = _is_int(v, lo, hi) or (name == "k" and isinstance(v, tuple) and 0 < len(v) <= 8
                                    and all(_is_int(x, lo, hi) for x in v))
        return None if ok else f"must be an integer in [{lo}, {hi}]"
    if name in _BOOL_ATTRS:
        return None if isinstance(v, bool) else "must be true or false"
    if name == "identity":
        return None if v is None or isinstance(v, bool) else "must be null, true or false"
    if name == "act":
        return None if v in ACTIVATIONS else f"must be one of {', '.join(ACTIVATIONS)}"
    if name == "mode":
        return None if v == "nearest" else "must be 'nearest'"
    if name == "anchors":
        ok = (isinstance(v, tuple) and 0 < len(v) <= 16 and all(
            isinstance(a, tuple) and len(a) == len(v[0]) and 0 < len(a) <= 64 and len(a) % 2 == 0
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1e5
                    for x in a) for a in v))
        return None if ok else "must be per-level tuples of positive (w, h) pairs"
    return None  # other names: the op catalog refuses unknown attributes


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
            if not isinstance(v[_TUPLE], list):
                raise TypeError(f"a tagged tuple holds {type(v[_TUPLE]).__name__}, not a list")
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


def _node(i: int, n: Any, source: str) -> Node:
    """Node ``i`` of a stored spec, every field and attribute value checked."""
    ok = (isinstance(n, Mapping) and _is_int(n.get("index"), 0, MAX_NODES)
          and _is_name(n.get("name")) and _is_name(n.get("op"))
          and isinstance(n.get("inputs"), list) and len(n["inputs"]) <= 1024
          and all(_is_int(j, -1, MAX_NODES) for j in n["inputs"])
          and all(_is_name(n.get(k, "")) for k in ("block", "role", "stage")))
    if not ok:
        raise UserError(f"{source}: malformed graph spec (node {i}: {show(n, 80)})")
    attrs = _decode(n.get("attrs"))
    if not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
        raise UserError(f"{source}: malformed graph spec (node {i}: attrs must be a mapping)")
    for k, v in attrs.items():
        why = _check_attr(k, v)
        if why:
            raise UserError(f"{source}: malformed graph spec (node {i}, {n['op']:.20}: "
                            f"{k}={show(v, 60)} {why})")
    return Node(n["index"], n["name"], n["op"], tuple(n["inputs"]), attrs,
                n.get("block", ""), n.get("role", ""), n.get("stage", ""))


def graph_from_dict(data: Mapping[str, Any], source: str = "<spec>") -> Graph:
    """Rebuild the graph written by ``graph_to_dict`` (validated like any new Graph)."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise UserError(f"{source}: not a yolov7c graph spec (format {got!r}, expected "
                        f"{FORMAT!r}); was it written by yolov7c.save?")
    if not isinstance(data.get("nodes"), list) or not isinstance(data.get("blocks", []), list):
        raise UserError(f"{source}: malformed graph spec ('nodes' and 'blocks' must be lists)")
    if len(data["nodes"]) > MAX_NODES:
        raise UserError(f"{source}: refused: {len(data['nodes']):,} nodes (limit {MAX_NODES:,})")
    if not _is_int(data.get("in_channels"), 1, 64):
        raise UserError(f"{source}: malformed graph spec (in_channels "
                        f"{show(data.get('in_channels'), 40)} must be an integer in [1, 64])")
    try:
        nodes = [_node(i, n, source) for i, n in enumerate(data["nodes"])]
        blocks = {}
        for b in data.get("blocks", []):
            if not (isinstance(b, Mapping) and _is_name(b.get("name"))
                    and _is_name(b.get("kind")) and isinstance(b.get("args"), Mapping)):
                raise UserError(f"{source}: malformed graph spec (a block needs a name, kind "
                                f"and args mapping; got {show(b, 80)})")
            blocks[b["name"]] = BlockInfo(b["name"], b["kind"], _decode(b["args"]))
        if not (_is_name(data.get("name")) and _is_name(data.get("form"))):
            raise UserError(f"{source}: malformed graph spec (name and form must be strings)")
        return Graph(data["name"], nodes, data["in_channels"], data["form"], blocks)
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError,
            OverflowError, ZeroDivisionError) as e:
        # the spec is untrusted input: whatever Node/Graph validation trips on is the file's
        # fault, reported in one line
        raise UserError(f"{source}: malformed graph spec ({one_line(repr(e), 160)})") from None
