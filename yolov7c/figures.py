"""Figures written to disk: matplotlib's pyplot on the Agg backend, PNGs saved atomically.

Why one place: training runs, evaluation and the benchmarks all write PNGs; none may open a
GUI backend, leave a half-written image behind a kill, or keep its figures open (pyplot holds
every figure until it is closed). The HTML report embeds bytes instead (``report.plots``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .io_util import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig: Any, path: str | os.PathLike, **savefig_kw: Any) -> Path:
    """Write ``fig`` to ``path`` as a PNG in one rename (``savefig_kw``: dpi, bbox_inches, ...),
    then close it; returns the path."""
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", **savefig_kw)
    pyplot().close(fig)
    return Path(path)
