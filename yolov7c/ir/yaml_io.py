"""Import and export the official cfg format (``cfg/training/*.yaml``, ``cfg/deploy/*.yaml``).

A cfg is ``nc``, ``anchors``, ``depth_multiple``, ``width_multiple`` and two lists of rows
``[from, number, module, args]`` (``backbone`` then ``head``; layer index = row position).
Parsing uses ``yaml.safe_load`` and an explicit table of modules; argument strings such as
``nn.LeakyReLU(0.1)`` are matched against known spellings, never executed.

Export writes the same format. Our node names, blocks and stages travel in an extra
top-level ``yolov7c`` key, which the official loader ignores, so IR → YAML → IR is identical.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from ..errors import UserError
from .graph import GRAPH_INPUT, BlockInfo, Graph, Node

# activation spellings found in official cfgs → our names (matched, not evaluated)
_ACT_PATTERNS = [
    (re.compile(r"^nn\.LeakyReLU\(\s*(negative_slope\s*=\s*)?0?\.10*\s*\)$"), "leaky"),
    (re.compile(r"^nn\.SiLU\(\s*\)$"), "silu"),
    (re.compile(r"^nn\.ReLU\(\s*\)$"), "relu"),
    (re.compile(r"^nn\.Identity\(\s*\)$"), "identity"),
]
_ACT_SPELLING = {"leaky": "nn.LeakyReLU(0.1)", "relu": "nn.ReLU()", "identity": "nn.Identity()"}
HEADS = ("Detect", "IDetect", "IAuxDetect")


class _RowError(Exception):
    """A problem in one cfg row; the importer adds file and row."""


def _parse_act(a: Any) -> str:
    if a is True:
        return "silu"
    if a is False or a is None:
        return "identity"
    if isinstance(a, str):
        for pattern, name in _ACT_PATTERNS:
            if pattern.match(a.strip()):
                return name
    raise _RowError(f"activation {a!r} is not one of nn.SiLU(), nn.LeakyReLU(0.1), nn.ReLU(), "
                    f"nn.Identity(), True, False")


def _make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


def _width(c: Any, gw: float) -> int:
    if not isinstance(c, int) or c <= 0:
        raise _RowError(f"output width {c!r} must be a positive integer")
    return c if gw == 1 else _make_divisible(c * gw)


def _conv_args(args: Sequence[Any], gw: float, default_k: int = 1) -> dict[str, Any]:
    # official Conv(c1, c2, k=1, s=1, p=None, g=1, act=True); RepConv has k=3 by default
    if not 1 <= len(args) <= 6:
        raise _RowError(f"Conv takes [c2, k, s, p, g, act], got {list(args)}")
    c, k, s, p, g, act = (list(args) + [default_k, 1, None, 1, True][len(args) - 1:])[:6]
    p = None if p == "None" else p  # official files write None, which YAML reads as a string
    if p is not None and p != k // 2:
        raise _RowError(f"padding {p} other than k//2 is not supported (use None)")
    attrs: dict[str, Any] = {"c": _width(c, gw), "k": k, "s": s, "act": _parse_act(act)}
    if g != 1:
        attrs["g"] = g
    return attrs


def _head_args(args: Sequence[Any], top: Mapping[str, Any]) -> dict[str, Any]:
    if len(args) != 2:
        raise _RowError(f"detection heads take [nc, anchors], got {list(args)}")
    nc = top.get("nc") if args[0] == "nc" else args[0]
    anchors = top.get("anchors") if args[1] == "anchors" else args[1]
    if not isinstance(nc, int) or nc < 1:
        raise _RowError(f"nc={nc!r} must be a positive integer")
    if not isinstance(anchors, list) or not all(isinstance(a, list) for a in anchors):
        raise _RowError("anchors must be a list of per-level [w, h, ...] lists (an anchor "
                        "count is not supported: write the anchors out)")
    return {"nc": nc, "anchors": tuple(tuple(a) for a in anchors)}


def _simple(op: str, allowed: int) -> Callable[[Sequence[Any], float, Mapping[str, Any]], tuple[str, dict]]:
    def parse(args, gw, top):
        if len(args) > allowed:
            raise _RowError(f"{op} takes at most {allowed} argument(s), got {list(args)}")
        return op, {}
    return parse


# official module name → parser(args, width_multiple, cfg) -> (our op, attrs)
MODULES: dict[str, Callable[[Sequence[Any], float, Mapping[str, Any]], tuple[str, dict]]] = {
    "Conv": lambda a, gw, top: ("Conv", _conv_args(a, gw)),
    "RepConv": lambda a, gw, top: ("RepConv", _conv_args(a, gw, default_k=3)),
    "MP": lambda a, gw, top: ("MP", {"k": a[0] if a else 2}),
    "SP": lambda a, gw, top: ("SP", {"k": a[0] if a else 3, "s": a[1] if len(a) > 1 else 1}),
    "Concat": lambda a, gw, top: ("Concat", {"dim": a[0] if a else 1}),
    "Shortcut": _simple("Shortcut", 1),
    "ReOrg": _simple("ReOrg", 0),
    "nn.Upsample": lambda a, gw, top: ("Upsample", {"scale": int(a[1]) if len(a) > 1 else 2,
                                                    "mode": a[2] if len(a) > 2 else "nearest"}),
    "DownC": lambda a, gw, top: ("DownC", {"c": _width(a[0], gw), "k": a[2] if len(a) > 2 else 2,
                                           "act": "silu"}),
    "SPPCSPC": lambda a, gw, top: ("SPPCSPC", {"c": _width(a[0], gw), "k": (5, 9, 13),
                                               "act": "silu"}),
    "Detect": lambda a, gw, top: ("Detect", _head_args(a, top)),
    "IDetect": lambda a, gw, top: ("IDetect", _head_args(a, top)),
    "IAuxDetect": lambda a, gw, top: ("IAuxDetect", _head_args(a, top)),
}


def _resolve_from(f: Any, i: int) -> tuple[int, ...]:
    fs = f if isinstance(f, list) else [f]
    out = []
    for x in fs:
        if not isinstance(x, int):
            raise _RowError(f"'from' entries must be integers, got {x!r}")
        j = i + x if x < 0 else x
        if i == 0 and x == -1:
            j = GRAPH_INPUT
        elif j < 0 or j >= i:
            raise _RowError(f"'from' {x} points to layer {j}, out of range for layer {i} "
                            f"(a layer reads earlier layers: -1 … -{i} or 0 … {i - 1})")
        out.append(j)
    return tuple(out)


def _infer_stage(section: str, op: str, stride: Any) -> str:
    if op in HEADS:
        return "head"
    if section == "backbone":
        return "stem" if stride < 4 else f"P{int(round(math.log2(stride)))}"
    return "neck"


def from_cfg(cfg: Mapping[str, Any], name: str = "model", source: str = "<cfg>") -> Graph:
    """Build a graph from a parsed cfg mapping (the dict ``yaml.safe_load`` returns, or the
    ``yaml`` attribute of an official checkpoint's model)."""
    if not isinstance(cfg, Mapping):
        raise UserError(f"{source}: a cfg is a mapping with backbone/head lists")
    for key in ("backbone", "head"):
        if not isinstance(cfg.get(key), list):
            raise UserError(f"{source}: missing or malformed '{key}' list")
    gd, gw = float(cfg.get("depth_multiple", 1.0)), float(cfg.get("width_multiple", 1.0))
    meta = cfg.get("yolov7c") or {}
    names = meta.get("nodes", {}) if isinstance(meta, Mapping) else {}
    rows = [("backbone", r) for r in cfg["backbone"]] + [("head", r) for r in cfg["head"]]
    nodes: list[Node] = []
    for i, (section, row) in enumerate(rows):
        where = f"{source}: {section} row {i if section == 'backbone' else i - len(cfg['backbone'])} (layer {i})"
        try:
            if not isinstance(row, list) or len(row) != 4:
                raise _RowError(f"a row is [from, number, module, args], got {row!r}")
            f, n, module, args = row
            if not isinstance(n, int) or max(round(n * gd), 1) != 1:
                raise _RowError(f"number={n!r} with depth_multiple={gd}: repeated layers are "
                                f"not supported; write each layer as its own row")
            if module not in MODULES:
                raise _RowError(f"unknown module {module!r}; known: {', '.join(MODULES)}")
            op, attrs = MODULES[module](list(args or []), gw, cfg)
            inputs = _resolve_from(f, i)
        except _RowError as e:
            raise UserError(f"{where}: {e}") from None
        info = names.get(i) or names.get(str(i)) or {}
        nodes.append(Node(i, info.get("name", f"model.{i}"), op, inputs, attrs,
                          info.get("block", ""), info.get("role", ""), info.get("stage", section)))
    blocks = {k: BlockInfo(k, v["kind"], {a: _tuples(x) for a, x in v.get("args", {}).items()})
              for k, v in (meta.get("blocks", {}) if isinstance(meta, Mapping) else {}).items()}
    g = Graph(meta.get("name", name) if isinstance(meta, Mapping) else name, nodes,
              int(cfg.get("ch", 3)), _form_of(nodes), blocks)
    if names:
        return g
    # official cfgs carry no stages: infer them from sections and strides
    staged = [n.replace(stage=_infer_stage(n.stage, n.op, g.stride(n.index))) for n in g.nodes]
    return g.replace_nodes(staged)


def _form_of(nodes: Sequence[Node]) -> str:
    heads = [n.op for n in nodes if n.op in HEADS]
    return "deploy" if heads == ["Detect"] else "training"


def from_yaml(source: str | os.PathLike) -> Graph:
    """A graph from a cfg file path or YAML text."""
    text, where, name = _read(source)
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{where}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    return from_cfg(cfg, name, where)


def _read(source: str | os.PathLike) -> tuple[str, str, str]:
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and source.endswith((".yaml", ".yml"))):
        p = Path(source)
        try:
            return p.read_text(), str(p), p.stem
        except OSError as e:
            raise UserError(f"{p}: cannot read cfg ({e.strerror})") from None
    return str(source), "<yaml>", "model"


# ----- export -----------------------------------------------------------------------------------
def _export_args(n: Node) -> list[Any]:
    a = n.attrs
    if n.op in ("Conv", "RepConv"):
        if n.op == "Conv" and (not a.get("bn", True) or a.get("bias", False)):
            raise UserError(f"{n.where()}: a BN-folded conv has no official cfg form; export "
                            f"the unfused graph (to_deploy(g, fuse=False))")
        out: list[Any] = [a["c"], a.get("k", 1 if n.op == "Conv" else 3), a.get("s", 1)]
        act, g = a.get("act", "silu"), a.get("g", 1)
        if act != "silu" or g != 1:
            out += [None, g] + ([_ACT_SPELLING[act]] if act != "silu" else [])
        return out
    if n.op in ("DownC", "SPPCSPC"):
        if a.get("act", "silu") != "silu" or not a.get("bn", True):
            raise UserError(f"{n.where()}: the official {n.op} has SiLU convs with BN only")
        return [a["c"]] if a.get("k", 2) == 2 or n.op == "SPPCSPC" else [a["c"], 1, a["k"]]
    simple = {"MP": lambda: [] if a.get("k", 2) == 2 else [a["k"]],
              "SP": lambda: [a.get("k", 3)] + ([a["s"]] if a.get("s", 1) != 1 else []),
              "Concat": lambda: [a.get("dim", 1)], "Shortcut": lambda: [1], "ReOrg": lambda: [],
              "Upsample": lambda: [None, a.get("scale", 2), "nearest"]}
    if n.op in simple:
        return simple[n.op]()
    if n.op in HEADS:
        return ["nc", "anchors"]
    raise UserError(f"{n.where()}: op {n.op} has no official cfg form")


def _module_name(op: str) -> str:
    return "nn.Upsample" if op == "Upsample" else op


def _export_from(n: Node) -> Any:
    refs = [-1 if (i == n.index - 1 or i == GRAPH_INPUT) else
            (i - n.index if n.index - i <= 10 else i) for i in n.inputs]
    return refs[0] if len(refs) == 1 and n.op not in ("Concat", "Shortcut") + HEADS else refs


class _FlowList(list):
    """A list yaml dumps inline: one cfg row per line, like the official files."""


yaml.SafeDumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def to_cfg(graph: Graph) -> dict[str, Any]:
    """The cfg mapping of ``graph`` (what ``to_yaml`` writes)."""
    if [n.index for n in graph.nodes] != list(range(len(graph.nodes))):
        raise UserError(f"graph {graph.name!r}: indices must be 0..n-1 in order to export")
    head = graph.head
    rows = [_FlowList([_export_from(n), 1, _module_name(n.op), _FlowList(_export_args(n))])
            for n in graph.nodes]
    split = next((n.index for n in graph.nodes if n.stage not in
                  ("stem", "P1", "P2", "P3", "P4", "P5", "P6", "backbone")), len(rows))
    return {
        "nc": head.attrs["nc"], "depth_multiple": 1.0, "width_multiple": 1.0,
        "anchors": [_FlowList(list(a)) for a in head.attrs["anchors"]],
        "backbone": rows[:split], "head": rows[split:],
        "yolov7c": {"name": graph.name,
                    "nodes": {n.index: {"name": n.name, "block": n.block, "role": n.role,
                                        "stage": n.stage} for n in graph.nodes},
                    "blocks": {k: {"kind": b.kind, "args": _plain(b.args)}
                               for k, b in graph.blocks.items()}},
    }


def _tuples(x: Any) -> Any:
    """YAML gives lists; block arguments are tuples in the DSL."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def to_yaml(graph: Graph) -> str:
    """Official-format cfg text for ``graph`` (importable by the official loader too)."""
    header = (f"# {graph.name}: {graph.form} form, written by yolov7c\n"
              f"# rows: [from, number, module, args]; layer index = row position\n")
    return header + yaml.safe_dump(to_cfg(graph), sort_keys=False, width=120)
