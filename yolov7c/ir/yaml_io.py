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

from ..errors import UserError, one_line, show
from . import ops
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


MAX_WIDTH = 1 << 16         # channels of one layer (yolov7-e6e's widest: 1280)
MAX_KERNEL = 63
MAX_STRIDE = 16
MAX_ROWS = 10_000
MAX_NODES = 200_000         # YAML values after alias expansion (official cfgs: ~2,000)
MAX_DEPTH = 32              # nesting of YAML values (official cfgs: 4)
MAX_FILE_BYTES = 4 << 20
_PLAIN = (str, int, float, bool, type(None))
_show = show  # a value from a file is never printed whole (an alias bomb once made a 226 MB
#               error message)


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
    raise _RowError(f"activation {_show(a)} is not one of nn.SiLU(), nn.LeakyReLU(0.1), "
                    f"nn.ReLU(), nn.Identity(), True, False")


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _RowError(f"{what} {_show(v)} must be an integer in [{lo}, {hi}]")
    return v


def _make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


def _width(c: Any, gw: float) -> int:
    if isinstance(c, bool) or not isinstance(c, int) or c <= 0:
        raise _RowError(f"output width {_show(c)} must be a positive integer")
    out = c if gw == 1 else _make_divisible(c * gw)
    if out > MAX_WIDTH:
        raise _RowError(f"output width {c} (x width_multiple {gw} = {out}) is over the limit "
                        f"{MAX_WIDTH}")
    return out


def _conv_args(args: Sequence[Any], gw: float, default_k: int = 1) -> dict[str, Any]:
    # official Conv(c1, c2, k=1, s=1, p=None, g=1, act=True); RepConv has k=3 by default
    if not 1 <= len(args) <= 6:
        raise _RowError(f"Conv takes [c2, k, s, p, g, act], got {_show(list(args))}")
    c, k, s, p, g, act = (list(args) + [default_k, 1, None, 1, True][len(args) - 1:])[:6]
    c = _width(c, gw)
    k = _int(k, "kernel", 1, MAX_KERNEL)
    s = _int(s, "stride", 1, MAX_STRIDE)
    g = _int(g, "groups", 1, MAX_WIDTH)
    p = None if p == "None" else p  # official files write None, which YAML reads as a string
    if p is not None and (isinstance(p, bool) or p != k // 2):
        raise _RowError(f"padding {_show(p)} other than k//2 is not supported (use None)")
    if c % g:
        raise _RowError(f"groups {g} must divide the output width {c}")
    attrs: dict[str, Any] = {"c": c, "k": k, "s": s, "act": _parse_act(act)}
    if g != 1:
        attrs["g"] = g
    return attrs


def _anchors(anchors: Any) -> tuple[tuple[Any, ...], ...]:
    if not isinstance(anchors, list) or not anchors or not all(
            isinstance(a, list) for a in anchors):
        raise _RowError("anchors must be a list of per-level [w, h, ...] lists (an anchor "
                        "count is not supported: write the anchors out)")
    n = len(anchors[0])
    for a in anchors:
        if len(a) != n or n == 0 or n % 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and
                0 < v < 1e5 for v in a):
            raise _RowError(f"anchors {_show(a)}: each level needs the same even number of "
                            f"positive sizes (w, h pairs)")
    return tuple(tuple(a) for a in anchors)


def _head_args(args: Sequence[Any], top: Mapping[str, Any]) -> dict[str, Any]:
    if len(args) != 2:
        raise _RowError(f"detection heads take [nc, anchors], got {_show(list(args))}")
    nc = top.get("nc") if args[0] == "nc" else args[0]
    anchors = top.get("anchors") if args[1] == "anchors" else args[1]
    _int(nc, "nc", 1, 1_000_000)
    return {"nc": nc, "anchors": _anchors(anchors)}


Parser = Callable[[Sequence[Any], float, Mapping[str, Any]], tuple[str, dict]]


def _simple(op: str, allowed: int) -> Parser:
    def parse(args, gw, top):
        if len(args) > allowed:
            raise _RowError(f"{op} takes at most {allowed} argument(s), got {_show(list(args))}")
        return op, {}
    return parse


def _arg(a: Sequence[Any], i: int, default: Any) -> Any:
    return a[i] if len(a) > i else default


def _pool(op: str, k_default: int) -> Parser:
    def parse(a, gw, top):
        if len(a) > 2:
            raise _RowError(f"{op} takes [k, s], got {_show(list(a))}")
        k = _int(_arg(a, 0, k_default), f"{op} kernel", 1, MAX_KERNEL)
        if op == "MP":
            if len(a) > 1:
                raise _RowError(f"MP takes [k] (stride = k), got {_show(list(a))}")
            return "MP", {"k": k}
        return "SP", {"k": k, "s": _int(_arg(a, 1, 1), "SP stride", 1, MAX_STRIDE)}
    return parse


def _concat(a: Sequence[Any], gw: float, top: Mapping[str, Any]) -> tuple[str, dict]:
    if len(a) > 1 or _arg(a, 0, 1) != 1 or isinstance(_arg(a, 0, 1), bool):
        raise _RowError(f"Concat joins channels: args [1], got {_show(list(a))}")
    return "Concat", {"dim": 1}


def _upsample(a: Sequence[Any], gw: float, top: Mapping[str, Any]) -> tuple[str, dict]:
    if len(a) > 3:
        raise _RowError(f"nn.Upsample takes [None, scale, 'nearest'], got {_show(list(a))}")
    scale = _int(_arg(a, 1, 2), "upsample scale", 1, MAX_STRIDE)
    if _arg(a, 2, "nearest") != "nearest":
        raise _RowError(f"upsample mode {_show(a[2])}: only 'nearest' is supported")
    return "Upsample", {"scale": scale, "mode": "nearest"}


def _downc(a: Sequence[Any], gw: float, top: Mapping[str, Any]) -> tuple[str, dict]:
    if not 1 <= len(a) <= 3:
        raise _RowError(f"DownC takes [c2, n, k], got {_show(list(a))}")
    return "DownC", {"c": _width(a[0], gw), "k": _int(_arg(a, 2, 2), "DownC kernel", 1,
                                                      MAX_KERNEL), "act": "silu"}


def _sppcspc(a: Sequence[Any], gw: float, top: Mapping[str, Any]) -> tuple[str, dict]:
    if not 1 <= len(a) <= 1:
        raise _RowError(f"SPPCSPC takes [c2], got {_show(list(a))}")
    return "SPPCSPC", {"c": _width(a[0], gw), "k": (5, 9, 13), "act": "silu"}


# official module name → parser(args, width_multiple, cfg) -> (our op, attrs)
MODULES: dict[str, Parser] = {
    "Conv": lambda a, gw, top: ("Conv", _conv_args(a, gw)),
    "RepConv": lambda a, gw, top: ("RepConv", _conv_args(a, gw, default_k=3)),
    # not an official YOLOv7 module: RepConv without the identity branch (paper §4.1), same
    # args as RepConv; written by yolov7c for ``identity=False`` (official loaders refuse it)
    "RepConvN": lambda a, gw, top: ("RepConv", {**_conv_args(a, gw, default_k=3),
                                                "identity": False}),
    "MP": _pool("MP", 2),
    "SP": _pool("SP", 3),
    "Concat": _concat,
    "Shortcut": _simple("Shortcut", 1),
    "ReOrg": _simple("ReOrg", 0),
    "nn.Upsample": _upsample,
    "DownC": _downc,
    "SPPCSPC": _sppcspc,
    "Detect": lambda a, gw, top: ("Detect", _head_args(a, top)),
    "IDetect": lambda a, gw, top: ("IDetect", _head_args(a, top)),
    "IAuxDetect": lambda a, gw, top: ("IAuxDetect", _head_args(a, top)),
}


def _resolve_from(f: Any, i: int) -> tuple[int, ...]:
    fs = f if isinstance(f, list) else [f]
    if not fs or len(fs) > 64:
        raise _RowError(f"'from' {_show(f)} must name 1 to 64 earlier layers")
    out = []
    for x in fs:
        if isinstance(x, bool) or not isinstance(x, int):
            raise _RowError(f"'from' entries must be integers, got {_show(x)}")
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


def _check_size(value: Any, source: str) -> None:
    """Walk the parsed cfg counting values as YAML aliases expand them; refuse past
    ``MAX_NODES`` values or ``MAX_DEPTH`` levels (a 402-byte alias bomb is a billion
    values once expanded). Shared references are counted each time they are reached."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    while stack:
        v, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise UserError(f"{source}: refused: the cfg expands to more than {MAX_NODES:,} "
                            f"values (YAML aliases?); official cfgs have about 2,000")
        if depth > MAX_DEPTH:
            raise UserError(f"{source}: refused: values nested deeper than {MAX_DEPTH} levels "
                            f"(official cfgs: 4)")
        if isinstance(v, dict):
            stack += [(x, depth + 1) for kv in v.items() for x in kv]
        elif isinstance(v, (list, tuple)):
            stack += [(x, depth + 1) for x in v]
        elif not isinstance(v, _PLAIN):  # a cfg from a pickle could hold anything
            raise UserError(f"{source}: a {type(v).__name__} value in the cfg; a cfg holds "
                            f"only mappings, lists, strings and numbers")


def _multiple(cfg: Mapping[str, Any], key: str, source: str) -> float:
    v = cfg.get(key, 1.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 16:
        raise UserError(f"{source}: {key} {_show(v)} must be a number in (0, 16] (e.g. 1.0)")
    return float(v)


def _meta(cfg: Mapping[str, Any], source: str) -> tuple[dict, dict, str | None]:
    """Our optional ``yolov7c`` key: node names/blocks/stages, block args, graph name."""
    meta = cfg.get("yolov7c")
    meta = {} if meta is None else meta
    names, blocks, gname = {}, {}, None
    if isinstance(meta, Mapping):
        names = meta.get("nodes") or {}
        blocks = meta.get("blocks") or {}
        gname = meta.get("name")
    def name(x: Any) -> bool:  # names reach messages and reports: short and printable
        return isinstance(x, str) and len(x) <= 200 and x.isprintable()

    ok = (isinstance(meta, Mapping) and isinstance(names, Mapping) and isinstance(blocks, Mapping)
          and (gname is None or name(gname))
          and all(isinstance(v, Mapping) and all(name(x) for x in v.values())
                  for v in names.values())
          and all(name(k) and isinstance(v, Mapping) and name(v.get("kind"))
                  and isinstance(v.get("args", {}), Mapping) for k, v in blocks.items()))
    if not ok:
        raise UserError(f"{source}: malformed 'yolov7c' key (node names/blocks written by "
                        f"yolov7c); delete it to import the cfg as an official one")
    return dict(names), dict(blocks), gname


def from_cfg(cfg: Mapping[str, Any], name: str = "model", source: str = "<cfg>") -> Graph:
    """Build a graph from a parsed cfg mapping (the dict ``yaml.safe_load`` returns, or the
    ``yaml`` attribute of an official checkpoint's model)."""
    if not isinstance(cfg, Mapping):
        raise UserError(f"{source}: a cfg is a mapping with backbone/head lists")
    _check_size(cfg, source)
    for key in ("backbone", "head"):
        if not isinstance(cfg.get(key), list):
            raise UserError(f"{source}: missing or malformed '{key}' list")
    gd, gw = _multiple(cfg, "depth_multiple", source), _multiple(cfg, "width_multiple", source)
    ch = cfg.get("ch", 3)
    if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= 64:
        raise UserError(f"{source}: ch {_show(ch)} (input channels) must be an integer in "
                        f"[1, 64] (3 for RGB)")
    names, block_meta, gname = _meta(cfg, source)
    rows = [("backbone", r) for r in cfg["backbone"]] + [("head", r) for r in cfg["head"]]
    if not rows or len(rows) > MAX_ROWS:
        raise UserError(f"{source}: {len(rows)} rows; a cfg has 1 to {MAX_ROWS:,}")
    nodes: list[Node] = []
    for i, (section, row) in enumerate(rows):
        row_no = i if section == "backbone" else i - len(cfg["backbone"])
        where = f"{source}: {section} row {row_no} (layer {i})"
        try:
            if not isinstance(row, list) or len(row) != 4:
                raise _RowError(f"a row is [from, number, module, args], got {_show(row)}")
            f, n, module, args = row
            if isinstance(n, bool) or not isinstance(n, int) or max(round(n * gd), 1) != 1:
                raise _RowError(f"number={_show(n)} with depth_multiple={gd}: repeated layers "
                                f"are not supported; write each layer as its own row")
            if not isinstance(module, str) or module not in MODULES:
                raise _RowError(f"unknown module {_show(module)}; known: {', '.join(MODULES)}")
            if args is not None and not isinstance(args, list):
                raise _RowError(f"args {_show(args)} must be a list")
            op, attrs = MODULES[module](list(args or []), gw, cfg)
            inputs = _resolve_from(f, i)
        except _RowError as e:
            raise UserError(f"{where}: {e}") from None
        info = names.get(i) or names.get(str(i)) or {}
        nodes.append(Node(i, info.get("name", f"model.{i}"), op, inputs, attrs,
                          info.get("block", ""), info.get("role", ""), info.get("stage", section)))
    blocks = {k: BlockInfo(k, v["kind"], {a: _tuples(x) for a, x in v.get("args", {}).items()})
              for k, v in block_meta.items()}
    g = Graph(gname or name, nodes, ch, _form_of(nodes), blocks)
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
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        line = text[: e.position].count("\n") + 1
        raise UserError(f"{where} line {line}: not valid YAML (character "
                        f"{show(e.character)} is not allowed in a YAML file)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{where}{line}: not valid YAML "
                        f"({one_line(getattr(e, 'problem', None) or e, 120)})") from None
    except RecursionError:
        raise UserError(f"{where}: refused: YAML nested too deeply (official cfgs: 4 levels)") \
            from None
    return from_cfg(cfg, name, where)


def _read(source: str | os.PathLike) -> tuple[str, str, str]:
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and source.endswith((".yaml", ".yml"))):
        p = Path(source)
        try:
            if p.stat().st_size > MAX_FILE_BYTES:
                raise UserError(f"{p}: refused: {p.stat().st_size:,} bytes; a cfg is a few KB "
                                f"(limit {MAX_FILE_BYTES:,})")
            data = p.read_bytes()
        except OSError as e:
            raise UserError(f"{p}: cannot read cfg ({e.strerror or e})") from None
        try:
            return data.decode("utf-8"), str(p), p.stem
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            raise UserError(f"{p} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
                            f"offset {e.start}); a cfg is a UTF-8 YAML file") from None
    if not isinstance(source, str):
        raise UserError(f"cfg source: a path or YAML text, got {type(source).__name__}",
                        arg="source")
    if len(source) > MAX_FILE_BYTES:
        raise UserError(f"<yaml>: refused: {len(source):,} characters (limit {MAX_FILE_BYTES:,})")
    return source, "<yaml>", "model"


# ----- export -----------------------------------------------------------------------------------
def _export_args(n: Node) -> list[Any]:
    if n.op in HEADS:
        return ["nc", "anchors"]
    if n.op not in _EXPORTABLE:
        raise UserError(f"{n.where()}: op {n.op} has no official cfg form")
    a = ops.get(n.op).complete(n.attrs)  # the catalog's defaults, never restated here
    if n.op in ("Conv", "RepConv"):
        if n.op == "Conv" and (not a["bn"] or a["bias"]):
            raise UserError(f"{n.where()}: a BN-folded conv has no official cfg form; export "
                            f"the unfused graph (to_deploy(g, fuse=False))")
        out: list[Any] = [a["c"], a["k"], a["s"]]
        act, g = a["act"], a["g"]
        if act != "silu" or g != 1:
            out += [None, g] + ([_ACT_SPELLING[act]] if act != "silu" else [])
        return out
    if n.op in ("DownC", "SPPCSPC"):
        if a["act"] != "silu" or not a["bn"]:
            raise UserError(f"{n.where()}: the official {n.op} has SiLU convs with BN only")
        return [a["c"]] if n.op == "SPPCSPC" or a["k"] == 2 else [a["c"], 1, a["k"]]
    simple = {"MP": lambda: [] if a["k"] == 2 else [a["k"]],
              "SP": lambda: [a["k"]] + ([a["s"]] if a["s"] != 1 else []),
              "Concat": lambda: [a["dim"]], "Shortcut": lambda: [1], "ReOrg": lambda: [],
              "Upsample": lambda: [None, a["scale"], a["mode"]]}
    return simple[n.op]()


_EXPORTABLE = ("Conv", "RepConv", "DownC", "SPPCSPC", "MP", "SP", "Concat", "Shortcut", "ReOrg",
               "Upsample")


def _module_name(n: Node) -> str:
    if n.op == "RepConv" and n.attrs.get("identity") is False:
        return "RepConvN"  # an explicit identity=True is written as RepConv (auto = present)
    return "nn.Upsample" if n.op == "Upsample" else n.op


def _export_from(n: Node) -> Any:
    refs = [-1 if (i == n.index - 1 or i == GRAPH_INPUT) else
            (i - n.index if n.index - i <= 10 else i) for i in n.inputs]
    return refs[0] if len(refs) == 1 and n.op not in ("Concat", "Shortcut") + HEADS else refs


class _FlowList(list):
    """A list yaml dumps inline: one cfg row per line, like the official files."""


class _CfgDumper(yaml.SafeDumper):
    """The safe dumper plus inline rows; a subclass, so PyYAML's global SafeDumper (used by
    everyone else in the process) is left as it was."""


_CfgDumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def to_cfg(graph: Graph) -> dict[str, Any]:
    """The cfg mapping of ``graph`` (what ``to_yaml`` writes)."""
    if [n.index for n in graph.nodes] != list(range(len(graph.nodes))):
        raise UserError(f"graph {graph.name!r}: indices must be 0..n-1 in order to export")
    head = graph.head
    rows = [_FlowList([_export_from(n), 1, _module_name(n), _FlowList(_export_args(n))])
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
    return header + yaml.dump(to_cfg(graph), Dumper=_CfgDumper, sort_keys=False, width=120)
