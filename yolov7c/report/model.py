"""The report of one model: the JSON schema other tools rely on, and its tables.

``report_dict`` is the ``yolov7c report --json`` object (issue 2 schema, extended with
grouped sums); ``model_tables`` is the same content as tables for the text/md/html formats.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..ir.analysis import CONVENTION_LABELS, CONVENTIONS, Analysis, analyze
from ..ir.graph import Graph
from .. import zoo
from .grouping import GROUP_KEYS, Row, exact, group_rows, node_row, share, total
from .tables import Table, gf, pct


def default_img(graph: Graph) -> int:
    """The size a model is reported at: its zoo entry's (640 P5, 1280 P6), else 640 / 1280
    by the largest stride."""
    if graph.name in zoo.names():
        return zoo.entry(graph.name).img
    return 1280 if graph.max_stride >= 64 else 640


def _jsonable(x: Any) -> Any:
    x = exact(x)
    if isinstance(x, tuple):
        return [_jsonable(v) for v in x]
    return x if isinstance(x, (int, float, str)) else str(x)


def node_dict(n: Any) -> dict[str, Any]:
    """One ``nodes`` entry: the schema keys first, then block/role/stage and every FLOP count."""
    r = node_row(n)
    return {"index": n.index, "name": n.name, "op": n.op, "inputs": list(n.inputs),
            "c_in": [_jsonable(c) for c in n.c_in], "c_out": _jsonable(n.c_out),
            "stride": _jsonable(n.stride), "params": r.params, "macs": r.macs,
            "flops": dict(r.flops), "activations": r.activations,
            "block": n.block, "role": n.role, "stage": n.stage}


def report_dict(graph: Graph, img: int | None = None, form: str | None = None,
                groups: Sequence[str] = ("stage", "block", "op", "role")) -> dict[str, Any]:
    """The ``report --json`` object of ``graph`` at a square ``img`` input.

    Keys of the foundation schema (model, form, img, nc, params, gflops = official
    convention, gflops_macs2, gflops_paper, layers, nodes) plus ``conventions`` (what each
    FLOP count means), ``activations``, ``flops`` (exact integers) and ``groups`` (per
    stage/block/op/role sums, each summing exactly to the totals)."""
    img = default_img(graph) if img is None else img
    a = analyze(graph, img)
    t = total(a)
    return {
        "model": graph.name, "form": form or graph.form, "img": img, "nc": graph.nc,
        "batch": 1, "params": t.params,
        "gflops": gf(t.flops["official"]), "gflops_macs2": gf(t.flops["macs2"]),
        "gflops_paper": gf(t.flops["paper"]),
        "conventions": dict(CONVENTION_LABELS),
        "flops": dict(t.flops), "macs": t.macs, "activations": t.activations,
        "layers": len(a.nodes),
        "nodes": [node_dict(n) for n in a.nodes],
        "groups": {by: [dict(r.as_dict(), params_share=share(r.params, t.params),
                             flops_share=share(r.flops["official"], t.flops["official"]))
                        for r in group_rows(a, by)] for by in groups if by != "node"},
    }


def header(a: Analysis, form: str | None = None) -> list[str]:
    """What every report states first: model, form, input, batch, conventions."""
    g = a.graph
    lines = [f"model {g.name} ({form or g.form} form), input 1×{g.in_channels}×{a.img}×{a.img}, "
             f"batch 1, nc {g.nc}; counts depend on the architecture only (any dtype)",
             "GFLOPs = 2 × counted ops / 1e9, in three conventions:"]
    lines += [f"  {c:<8} {CONVENTION_LABELS[c]}" for c in CONVENTIONS]
    return lines


def totals_table(a: Analysis) -> Table:
    """Params, MACs, GFLOPs in each convention (labelled) and activations."""
    t = total(a)
    rows: list[list[Any]] = [["params", t.params, "learnable tensors + BN affine"],
                             ["MACs", t.macs, "convolution multiply-accumulates"]]
    rows += [[f"GFLOPs ({c})", gf(t.flops[c]), CONVENTION_LABELS[c]] for c in CONVENTIONS]
    rows.append(["activations", t.activations, "conv output elements (Dollár et al.)"])
    return Table(f"Totals: {a.graph.name} @ {a.img}", ["quantity", "value", "meaning"], rows,
                 ["l", "r", "l"])


def group_table(a: Analysis, by: str) -> Table:
    """Grouped sums with each group's share of the total, ending with the total row."""
    t = total(a)
    rows = group_rows(a, by)
    cols = [by, "kind", "nodes", "params", "params %", "MACs"]
    cols += [f"GFLOPs {c}" for c in CONVENTIONS] + ["FLOPs %", "activations", "act %"]

    def line(r: Row) -> list[Any]:
        return ([r.key, r.kind, r.nodes, r.params, pct(share(r.params, t.params)), r.macs]
                + [gf(r.flops[c]) for c in CONVENTIONS]
                + [pct(share(r.flops["official"], t.flops["official"])), r.activations,
                   pct(share(r.activations, t.activations))])
    body = [line(r) for r in rows] + [line(Row("total", "", t.nodes, t.params, t.macs, t.flops,
                                                t.activations))]
    return Table(f"By {by}: {a.graph.name} @ {a.img}", cols, body,
                 ["l", "l"] + ["r"] * (len(cols) - 2),
                 "FLOPs % is the share of the official-convention total.")


def layer_table(a: Analysis) -> Table:
    """The per-layer table: index, name, op, inputs, in/out channels, stride, params, MACs."""
    cols = ["index", "name", "op", "from", "c_in", "c_out", "stride", "params", "MACs",
            "activations"]
    rows = [[n.index, n.name, n.op, ",".join(map(str, n.inputs)),
             ",".join(str(_jsonable(c)) for c in n.c_in), str(_jsonable(n.c_out)),
             str(_jsonable(n.stride)), exact(n.params), exact(n.macs), exact(n.cost.activations)]
            for n in a.nodes]
    return Table(f"Layers: {a.graph.name} @ {a.img}", cols, rows,
                 ["r", "l", "l", "l", "r", "r", "r", "r", "r", "r"])


def model_tables(a: Analysis, by: Sequence[str] | None = None,
                 layers: bool = True) -> list[Table]:
    """Totals, then the grouped tables in ``by``, then (optionally) the per-layer table."""
    tables = [totals_table(a)]
    tables += [layer_table(a) if b == "node" else group_table(a, b) for b in (by or ())
               if b in GROUP_KEYS]
    if layers and "node" not in (by or ()):
        tables.append(layer_table(a))
    return tables
