"""Format-neutral tables and their terminal / Markdown renderings.

A report is a list of ``Table``s (plus figures for HTML); each renderer only lays them out,
so every format shows the same numbers.
"""
from __future__ import annotations

import html as _html
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Table:
    """A titled grid. ``align`` holds 'l' or 'r' per column (numbers right-aligned)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    align: list[str] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if not self.align:
            self.align = ["l"] + ["r"] * (len(self.columns) - 1)


def fmt(v: Any) -> str:
    """One cell: thousands separators for ints, 4 decimals for floats, text as is."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4f}"
    if v is None:
        return ""
    return str(v)


def pct(part: float) -> str:
    """A share of a total, e.g. ``12.3%``."""
    return f"{100 * part:.1f}%"


def gf(flops: Any) -> float:
    """Integer FLOPs as GFLOPs."""
    return flops / 1e9


def render_text(tables: Sequence[Table], header: Sequence[str] = ()) -> str:
    """Plain fixed-width tables for a terminal."""
    out: list[str] = list(header)
    for t in tables:
        cells = [[fmt(v) for v in r] for r in t.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(t.columns)]

        def line(vals: Sequence[str]) -> str:
            return "  ".join(v.rjust(w) if a == "r" else v.ljust(w)
                             for v, w, a in zip(vals, widths, t.align)).rstrip()
        if out:
            out.append("")
        out += [f"== {t.title} ==", line(t.columns), line(["-" * w for w in widths])]
        out += [line(r) for r in cells]
        if t.note:
            out.append(t.note)
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_md(tables: Sequence[Table], header: Sequence[str] = ()) -> str:
    """GitHub-flavoured Markdown tables."""
    out: list[str] = list(header)
    for t in tables:
        out += ["", f"## {t.title}", ""]
        if t.note:
            out += [t.note, ""]
        out.append("| " + " | ".join(_md_cell(c) for c in t.columns) + " |")
        out.append("|" + "|".join("---:" if a == "r" else "---" for a in t.align) + "|")
        out += ["| " + " | ".join(_md_cell(fmt(v)) for v in r) + " |" for r in t.rows]
    return "\n".join(out) + "\n"


def render_html_table(t: Table) -> str:
    """One ``<table>`` (used by the HTML page)."""
    e = _html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f'<td class="{a}">{e(fmt(v))}</td>'
                                    for v, a in zip(r, t.align)) + "</tr>" for r in t.rows)
    note = f'<p class="note">{e(t.note)}</p>' if t.note else ""
    return (f"<h2>{e(t.title)}</h2>{note}<table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")
