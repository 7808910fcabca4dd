"""Analysis reports: params, FLOPs (three labelled conventions) and activations per node,
block, stage and op; training vs deploy; the zoo against the official and paper figures;
closed forms; plots. Every format (text, md, html, json) is rendered from the same tables
(composed in ``report.compose``).

Entry points (the API's ``report`` verb is a thin call into these):

- ``report_dict(graph, img, form)``      the ``report --json`` object (others rely on it)
- ``format_table(graph, img)``            the default per-layer terminal report
- ``model_report(graph, img, fmt, ...)``  one model in text / md / html / json
- ``compare_report(graph, img, fmt)``     training vs deploy, node by node
- ``zoo_report(fmt, latency)``            every model: ours / official / paper
"""
from __future__ import annotations

from .compare import compare
from .compose import (DEFAULT_GROUPS, FORMATS, compare_report, format_table, load_latency,
                      model_report, write_output, zoo_points, zoo_report)
from .grouping import GROUP_KEYS, group_rows, total
from .model import report_dict
from .zoo_table import zoo_dict

__all__ = ["DEFAULT_GROUPS", "FORMATS", "GROUP_KEYS", "compare", "compare_report",
           "format_table", "group_rows", "load_latency", "model_report", "report_dict",
           "total", "write_output", "zoo_dict", "zoo_points", "zoo_report"]
