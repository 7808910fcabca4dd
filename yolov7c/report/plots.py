"""Report figures as PNG bytes (matplotlib's Agg renderer: no display, no network).

Each function returns the encoded PNG so the HTML page can embed it as base64 and tests can
decode it.
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

from ..ir.analysis import Analysis
from .grouping import node_row


def _figure(ncols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A bare Figure (no pyplot: no global state, no GUI backend, faster import) and its
    axes row; savefig renders it with Agg."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()  # one layout pass; bbox_inches="tight" would draw the figure twice
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def stage_bars(a: Analysis, convention: str = "official") -> bytes:
    """Params and GFLOPs per stage, each bar stacked by op type."""
    stages = list(a.group("stage"))
    ops = sorted({n.op for n in a.nodes})
    params = {o: [0.0] * len(stages) for o in ops}
    flops = {o: [0.0] * len(stages) for o in ops}
    for n in a.nodes:
        s, r = stages.index(n.stage or "(none)"), node_row(n)
        params[n.op][s] += r.params / 1e6
        flops[n.op][s] += r.flops[convention] / 1e9
    fig, axes = _figure(2, (11, 3.8))
    for ax, data, label in ((axes[0], params, "params (M)"),
                            (axes[1], flops, f"GFLOPs ({convention})")):
        bottom = [0.0] * len(stages)
        for o in ops:
            if any(data[o]):
                ax.bar(stages, data[o], bottom=bottom, label=o)
                bottom = [b + v for b, v in zip(bottom, data[o])]
        ax.set_ylabel(label)
        ax.set_title(f"{a.graph.name} @ {a.img}: {label} per stage")
    axes[1].legend(fontsize=7, ncol=2)
    return _png(fig)


def layer_flops(a: Analysis, convention: str = "official") -> bytes:
    """GFLOPs of every node along the network (bars coloured by stage) and the running sum."""
    from matplotlib import colormaps
    fig, (ax,) = _figure(1, (11, 3.5))
    stages = list(a.group("stage"))
    cmap = colormaps["tab10"]
    xs = list(range(len(a.nodes)))
    ys = [node_row(n).flops[convention] / 1e9 for n in a.nodes]
    colour = {st: cmap(k % 10) for k, st in enumerate(stages)}
    ax.bar(xs, ys, color=[colour[n.stage or "(none)"] for n in a.nodes], width=1.0)
    from matplotlib.patches import Patch
    ax.set_xlabel("node (network order)")
    ax.set_ylabel(f"GFLOPs ({convention})")
    ax.legend(handles=[Patch(color=colour[st], label=st) for st in stages], fontsize=7,
              ncol=len(stages))
    run, acc = [], 0.0
    for y in ys:
        acc += y
        run.append(acc)
    ax2 = ax.twinx()
    ax2.plot(xs, run, color="black", linewidth=1)
    ax2.set_ylabel("cumulative GFLOPs")
    ax.set_title(f"{a.graph.name} @ {a.img}: FLOPs per layer")
    return _png(fig)


def zoo_scatter(points: Sequence[Mapping[str, Any]],
                latency: Mapping[str, float] | None = None) -> bytes:
    """The zoo on params vs GFLOPs (ours and the paper's printed points); a second panel
    plots latency vs GFLOPs when a benchmark gave latencies."""
    panels = 2 if latency else 1
    fig, axes = _figure(panels, (6 * panels, 4.2))
    ax = axes[0]
    for p in points:
        ax.scatter(p["gflops"], p["params"] / 1e6, color="tab:blue")
        ax.annotate(p["model"], (p["gflops"], p["params"] / 1e6), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
        if p.get("paper_gflops") is not None:
            ax.scatter(p["paper_gflops"], p["paper_params_m"], marker="x", color="tab:red")
    ax.scatter([], [], color="tab:blue", label="ours (paper's form and convention)")
    ax.scatter([], [], marker="x", color="tab:red", label="paper")
    ax.set_xlabel("GFLOPs")
    ax.set_ylabel("params (M)")
    ax.legend(fontsize=7)
    ax.set_title("zoo: params vs GFLOPs at each model's size")
    if latency:
        ax = axes[1]
        for p in points:
            if p["model"] in latency:
                ax.scatter(p["gflops"], latency[p["model"]], color="tab:green")
                ax.annotate(p["model"], (p["gflops"], latency[p["model"]]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("GFLOPs")
        ax.set_ylabel("latency (ms)")
        ax.set_title("latency vs GFLOPs (benchmark)")
    return _png(fig)


def curves(title: str, xlabel: str,
           panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]) -> bytes:
    """One figure, one panel per quantity (ylabel), each with named (x, y) line series —
    the scaling curves over d and w."""
    fig, axes = _figure(len(panels), (5.5 * len(panels), 3.8))
    for ax, (ylabel, series) in zip(axes, panels.items()):
        for name, (x, y) in series.items():
            ax.plot(x, y, marker="o", markersize=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {ylabel}")
        ax.legend(fontsize=7)
    return _png(fig)
