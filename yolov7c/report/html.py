"""One self-contained HTML page: inline CSS, tables, PNG figures as base64 data URIs.

Nothing is fetched from the network, so the page opens offline and in a headless browser.
"""
from __future__ import annotations

import base64
import html as _html
from dataclasses import dataclass
from typing import Sequence, Union

from .tables import Table, render_html_table

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:12px}
th,td{border:1px solid #ccc;padding:2px 6px}th{background:#f0f0f0;position:sticky;top:0}
td.r{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even){background:#fafafa}
.note{color:#555;font-size:12px}pre{background:#f6f6f6;padding:.6em;font-size:12px;
white-space:pre-wrap}figure{margin:0 0 1.5em}img{max-width:100%}
"""


@dataclass(frozen=True)
class Figure:
    """A PNG figure with a caption."""

    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class Text:
    """Preformatted text (e.g. closed-form expressions)."""

    title: str
    body: str


Section = Union[Table, Figure, Text]


def render_html(title: str, header: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page."""
    e = _html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
             "<pre>" + e("\n".join(header)) + "</pre>"]
    for s in sections:
        if isinstance(s, Table):
            parts.append(render_html_table(s))
        elif isinstance(s, Figure):
            data = base64.b64encode(s.png).decode("ascii")
            parts.append(f"<figure><h2>{e(s.title)}</h2><img alt='{e(s.title)}' "
                         f"src='data:image/png;base64,{data}'>"
                         f"<figcaption class='note'>{e(s.caption)}</figcaption></figure>")
        else:
            parts.append(f"<h2>{e(s.title)}</h2><pre>{e(s.body)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
