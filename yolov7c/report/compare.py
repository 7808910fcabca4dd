"""Training vs deploy, node by node: what each re-parameterization step removes.

The deploy form is reached by the IR transforms one at a time (``ir.deploy.DEPLOY_STEPS``,
the step list the deploy pipeline and ``to_deploy`` run too); each node's saving
is attributed to the step that changed it, so the per-step savings add up exactly to
training − deploy. Nodes are matched by name (the transforms keep names; DCE renumbers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..ir import deploy as ird
from ..ir.analysis import CONVENTIONS, analyze
from ..ir.graph import Graph
from .grouping import Row, node_row, total
from .tables import Table, gf

_ZERO = Row("", "", 0, 0, 0, {c: 0 for c in CONVENTIONS}, 0)


@dataclass(frozen=True)
class NodeChange:
    """One training node's fate: its op before/after (``None`` = removed), the counts saved
    and the steps that changed it."""

    index: int
    name: str
    op_training: str
    op_deploy: str | None
    params_training: int
    params_deploy: int
    flops_saved: Mapping[str, int]
    steps: tuple[str, ...]

    @property
    def params_saved(self) -> int:
        return self.params_training - self.params_deploy


@dataclass(frozen=True)
class Comparison:
    """Training and deploy totals, per-step savings and per-node changes."""

    model: str
    img: int
    training: Row
    deploy: Row
    steps: Mapping[str, dict[str, Any]]
    changes: tuple[NodeChange, ...]
    unchanged: int

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "img": self.img,
                "training": self.training.as_dict(), "deploy": self.deploy.as_dict(),
                "steps": {k: dict(v) for k, v in self.steps.items()},
                "changes": [dict(c.__dict__, params_saved=c.params_saved) for c in self.changes],
                "unchanged": self.unchanged}


def compare(graph: Graph, img: int) -> Comparison:
    """Walk ``graph`` to its fused deploy form step by step and attribute every saving."""
    rows = {n.name: node_row(n) for n in analyze(graph, img).nodes}
    first = {n.name: n for n in graph.nodes}
    touched: dict[str, list[str]] = {}
    steps: dict[str, dict[str, Any]] = {}
    g, cur = graph, rows
    for step in ird.DEPLOY_STEPS:
        label, g2 = step.label, ird.apply_step(step.name, g)
        nxt = {n.name: node_row(n) for n in analyze(g2, img).nodes}
        changed = [k for k in cur if cur[k] != nxt.get(k)]
        for k in changed:
            touched.setdefault(k, []).append(label)
        before, after = _sum(cur.values()), _sum(nxt.values())
        steps[label] = {"nodes_changed": sum(k in nxt for k in changed),
                        "nodes_removed": sum(k not in nxt for k in changed),
                        "params_saved": before.params - after.params,
                        "flops_saved": {c: before.flops[c] - after.flops[c] for c in CONVENTIONS}}
        g, cur = g2, nxt
    final = {n.name: n for n in g.nodes}
    changes = tuple(
        NodeChange(first[k].index, k, first[k].op, final[k].op if k in final else None,
                   rows[k].params, cur.get(k, _ZERO).params,
                   {c: rows[k].flops[c] - cur.get(k, _ZERO).flops[c] for c in CONVENTIONS},
                   tuple(v)) for k, v in touched.items())
    changes = tuple(sorted(changes, key=lambda c: c.index))
    return Comparison(graph.name, img, total(analyze(graph, img)), total(analyze(g, img)),
                      steps, changes, len(rows) - len(changes))


def _sum(rows: Any) -> Row:
    rows = list(rows)
    return Row("", "", len(rows), sum(r.params for r in rows), sum(r.macs for r in rows),
               {c: sum(r.flops[c] for r in rows) for c in CONVENTIONS},
               sum(r.activations for r in rows))


def compare_tables(c: Comparison) -> list[Table]:
    """A per-step summary (with the training → deploy total) and the per-node changes."""
    cols = ["step", "nodes changed", "nodes removed", "params saved"]
    cols += [f"GFLOPs saved ({k})" for k in CONVENTIONS]
    rows: list[list[Any]] = [[k, v["nodes_changed"], v["nodes_removed"], v["params_saved"]]
                             + [gf(v["flops_saved"][k2]) for k2 in CONVENTIONS]
                             for k, v in c.steps.items()]
    rows.append(["training", "", "", c.training.params] + [gf(c.training.flops[k])
                                                            for k in CONVENTIONS])
    rows.append(["deploy (fused)", "", "", c.deploy.params] + [gf(c.deploy.flops[k])
                                                                for k in CONVENTIONS])
    summary = Table(f"Training vs deploy: {c.model} @ {c.img}", cols, rows,
                    ["l"] + ["r"] * (len(cols) - 1),
                    "Step savings add up to training − deploy exactly; the last two rows are "
                    "totals (params, GFLOPs), not savings.")
    ncols = ["index", "name", "training op", "deploy op", "params train", "params deploy",
             "params saved"] + [f"GFLOPs saved ({k})" for k in CONVENTIONS] + ["by"]
    nrows = [[x.index, x.name, x.op_training, x.op_deploy or "(removed)", x.params_training,
              x.params_deploy, x.params_saved] + [gf(x.flops_saved[k]) for k in CONVENTIONS]
             + [", ".join(x.steps)] for x in c.changes]
    nodes = Table(f"Nodes changed by re-parameterization: {c.model} ({c.unchanged} unchanged)",
                  ncols, nrows, ["r", "l", "l", "l"] + ["r"] * (len(ncols) - 5) + ["l"])
    return [summary, nodes]
