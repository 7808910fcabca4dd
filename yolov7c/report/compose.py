"""Composition of the reports: analysis → tables and figures → one format (text, md, html,
json). Every format is rendered from the same tables; this module only composes, the
pieces live beside it (model, compare, zoo_table, closed_form, grouping, plots, tables)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError
from ..ir.analysis import analyze
from ..ir.graph import Graph
from .closed_form import NO_FAMILY, closed_form_text, scaling_curves
from .compare import compare, compare_tables
from .html import Figure, Text, render_html
from .model import default_img, header, model_tables, report_dict
from .tables import Table, render_md, render_text
from .zoo_table import paper_rows, zoo_dict, zoo_tables

FORMATS = ("text", "md", "html", "json")
DEFAULT_GROUPS = ("stage", "block", "op")


def format_table(graph: Graph, img: int | None = None) -> str:
    """Header, totals and the per-layer table for a terminal."""
    img = default_img(graph) if img is None else img
    a = analyze(graph, img)
    return render_text(model_tables(a), header(a))


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str) + "\n"


def _render(fmt: str, title: str, head: Sequence[str], tables: Sequence[Table],
            figures: Sequence[Any] = ()) -> str:
    if fmt == "text":
        return render_text(tables, head)
    if fmt == "md":
        return render_md(tables, [f"# {title}", "", "```", *head, "```"])
    if fmt == "html":  # figures right after the first (summary) table, long tables below
        return render_html(title, head, [*tables[:1], *figures, *tables[1:]])
    raise UserError(f"fmt {fmt!r}: expected one of {', '.join(FORMATS)}", arg="fmt")


def model_report(graph: Graph, img: int | None = None, fmt: str = "text",
                 by: Sequence[str] | None = None, form: str | None = None) -> str:
    """One model. ``by`` picks the grouped tables (text default: the per-layer table only;
    md/html default: stage, block, op and the per-layer table)."""
    img = default_img(graph) if img is None else img
    if fmt == "json":
        return _dump(report_dict(graph, img, form))
    a = analyze(graph, img)
    head = header(a, form)
    if by:
        tables = model_tables(a, by, layers=False)
    else:
        tables = model_tables(a, () if fmt == "text" else DEFAULT_GROUPS)
    figures: list[Any] = []
    if fmt in ("md", "html"):
        cf_text = closed_form_text(graph, img)
        if fmt == "md":
            tables = list(tables)
            head = [*head, "", "closed forms (d = depth, w = width multiplier):", cf_text]
        else:
            from . import plots
            figures = [Figure("Params and FLOPs per stage", plots.stage_bars(a),
                              "stacked by op type; FLOPs in the official convention"),
                       Figure("FLOPs along the network", plots.layer_flops(a),
                              "bars: GFLOPs per node (official), line: running sum"),
                       Text("Closed forms (d = depth, w = width multiplier)", cf_text)]
            curves = scaling_curves(graph, img)
            if curves is None:
                figures.append(Text("Scaling curves", NO_FAMILY.format(name=graph.name)))
            else:
                figures.append(Figure("Scaling curves", plots.curves(
                    f"{graph.name} @ {img}", "multiplier", curves),
                    "the model scaled numerically (compound rule) over d with w = 1 and over "
                    "w with d = 1; official convention"))
    title = f"yolov7c report: {graph.name} ({form or graph.form}) @ {img}"
    return _render(fmt, title, head, tables, figures)


def compare_report(graph: Graph, img: int | None = None, fmt: str = "text") -> str:
    """Training vs deploy, node by node, with per-step savings."""
    img = default_img(graph) if img is None else img
    c = compare(graph, img)
    if fmt == "json":
        return _dump(c.as_dict())
    a = analyze(graph, img)
    return _render(fmt, f"yolov7c report: {graph.name} training vs deploy @ {img}",
                   header(a, "training → deploy"), compare_tables(c))


def load_latency(path: str) -> dict[str, float]:
    """Latencies (ms) per model from a benchmark JSON: ``{model: ms}``, or records (a list, or
    under ``results``/``rows``/``models``) with ``model``/``name`` and a latency key."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"bench {path}: cannot read ({e.strerror})", arg="bench") from None
    except json.JSONDecodeError as e:
        raise UserError(f"bench {path}: not JSON ({e.msg} at line {e.lineno})",
                        arg="bench") from None
    keys = ("latency_ms", "mean_ms", "median_ms", "ms", "latency")
    out: dict[str, float] = {}
    if isinstance(data, dict) and all(isinstance(v, (int, float)) for v in data.values()):
        out = {k: float(v) for k, v in data.items()}
    else:
        recs = data
        if isinstance(data, dict):
            recs = next((data[k] for k in ("results", "rows", "models") if k in data), [])
        for r in recs if isinstance(recs, list) else []:
            if not isinstance(r, dict):
                continue
            name = r.get("model", r.get("name"))
            val = next((r[k] for k in keys if isinstance(r.get(k), (int, float))), None)
            if isinstance(name, str) and val is not None:
                out[name] = float(val)
    out = {k: v for k, v in out.items() if math.isfinite(v)}
    if not out:
        raise UserError(f"bench {path}: no latencies found; expected {{model: ms}} or records "
                        f"with 'model' and one of {', '.join(keys)}", arg="bench")
    return out


def zoo_points() -> list[dict[str, Any]]:
    """One point per paper row at its first size: ours in the paper's form and convention."""
    seen, pts = set(), []
    for p in paper_rows():
        if p.row.model in seen:
            continue
        seen.add(p.row.model)
        pts.append({"model": p.row.model, "params": p.params, "gflops": p.gflops,
                    "paper_params_m": p.row.params_m, "paper_gflops": p.gflops_paper})
    return pts


def zoo_report(fmt: str = "text", latency: Mapping[str, float] | None = None) -> str:
    """Every model: ours next to the official figures and the paper rows (+ latency)."""
    if fmt == "json":
        d = zoo_dict()
        if latency:
            d["latency_ms"] = dict(latency)
        return _dump(d)
    tables = zoo_tables()
    if latency:
        pts = {p["model"]: p for p in zoo_points()}
        tables.append(Table("Benchmark latency", ["model", "latency (ms)", "GFLOPs (paper form)"],
                            [[m, v, pts[m]["gflops"] if m in pts else None]
                             for m, v in latency.items()]))
    figures: list[Any] = []
    if fmt == "html":
        from . import plots
        figures = [Figure("The zoo: params vs GFLOPs", plots.zoo_scatter(zoo_points(), latency),
                          "ours in the form and convention that reproduces each paper row "
                          "(dots) and the paper's printed figures (crosses)")]
    head = ["every zoo model: our count, the official implementation's, the paper's row",
            "GFLOPs = 2 × counted ops / 1e9; conventions macs2 / official / paper as in "
            "`yolov7c report MODEL`"]
    return _render(fmt, "yolov7c report: the zoo", head, tables, figures)


def write_output(path: str, text: str) -> None:
    """Write an artifact atomically (temp file beside it + os.replace); one-line errors."""
    from ..io_util import write_text_atomic
    if os.path.isdir(path):
        raise UserError(f"out {path}: is a folder; give a file name", arg="out")
    try:
        write_text_atomic(path, text)
    except OSError as e:
        raise UserError(f"out {path}: cannot write ({e.strerror or e}); "
                        f"choose a writable path", arg="out") from None
