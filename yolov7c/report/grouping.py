"""Per-node and grouped sums of parameters, MACs, FLOPs (every convention) and activations.

Sums are kept as exact integers (the op catalog yields integral counts, sometimes as floats
after a division), so a group table adds up to the model total exactly in every convention;
GFLOPs are derived only when printed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import UserError
from ..ir.analysis import CONVENTIONS, Analysis, NodeStats

GROUP_KEYS = ("node", "block", "stage", "op", "role")


def exact(x: Any) -> Any:
    """An integral count as ``int`` (sympy expressions pass through unchanged)."""
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        r = round(x)
        if abs(x - r) > 1e-6 * max(1.0, abs(x)):
            raise ValueError(f"count {x!r} is not integral")
        return int(r)
    if getattr(x, "is_Integer", False) or getattr(x, "is_Float", False):
        return exact(float(x)) if x.is_Float else int(x)
    return x


@dataclass(frozen=True)
class Row:
    """Totals of one node, one group or the whole model (``key`` names it)."""

    key: str
    kind: str
    nodes: int
    params: Any
    macs: Any
    flops: Mapping[str, Any]
    activations: Any
    members: tuple[int, ...] = field(default=(), compare=False)

    def gflops(self, convention: str = "official") -> Any:
        return self.flops[convention] / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "nodes": self.nodes, "params": self.params,
                "macs": self.macs, "flops": dict(self.flops),
                "gflops": {c: self.gflops(c) for c in self.flops},
                "activations": self.activations}


def node_row(n: NodeStats) -> Row:
    """One node's totals."""
    return Row(n.name, n.op, 1, exact(n.params), exact(n.macs),
               {c: exact(n.flops(c)) for c in CONVENTIONS}, exact(n.cost.activations),
               (n.index,))


def _sum_rows(key: str, kind: str, rows: list[Row]) -> Row:
    return Row(key, kind, sum(r.nodes for r in rows), sum(r.params for r in rows),
               sum(r.macs for r in rows), {c: sum(r.flops[c] for r in rows) for c in CONVENTIONS},
               sum(r.activations for r in rows), tuple(i for r in rows for i in r.members))


def total(analysis: Analysis) -> Row:
    """The model total, summed from the same per-node rows the groups use."""
    return _sum_rows(analysis.graph.name, "total", [node_row(n) for n in analysis.nodes])


def _block_kind(analysis: Analysis, block: str) -> str:
    info = analysis.graph.blocks.get(block)
    return info.kind if info is not None else block.split(".")[0] if block else "(none)"


def group_rows(analysis: Analysis, by: str) -> list[Row]:
    """Rows per ``node``, ``block``, ``stage``, ``op`` or ``role``, in network order."""
    if by not in GROUP_KEYS:
        raise UserError(f"--by {by!r}: expected one of {', '.join(GROUP_KEYS)}")
    if by == "node":
        return [node_row(n) for n in analysis.nodes]
    groups = analysis.group(by)
    out = []
    for key, members in groups.items():
        kind = _block_kind(analysis, key) if by == "block" else by
        out.append(_sum_rows(key, kind, [node_row(n) for n in members]))
    return out


def share(part: Any, whole: Any) -> float:
    """``part`` as a fraction of ``whole`` (0 when the whole is 0)."""
    return float(part) / float(whole) if whole else 0.0
