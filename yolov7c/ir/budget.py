"""Budget solver: the largest scaled variant of a graph under a GFLOPs or parameter budget.

Grid (stated, and returned with the answer): depth d = m/K for m = 1..3K, where K is the
least common multiple of the blocks' stage counts (so every grid d changes every block by
whole stages: for yolov7, K = 2 and d ∈ {0.5, 1, 1.5, ..., 3}); width w = m/16 for
m = 2..32 (0.125 .. 2). "Largest" = the highest budgeted value (GFLOPs or params) that is
≤ the budget, ties broken towards larger d, then larger w. The value is monotone
non-decreasing in w at fixed d (widths round up), so each d needs a binary search over w
only; the answer is computed on the exact numeric graph, never on the relaxation.

Continuous relaxation (``continuous=True``, with d or w fixed): the other factor is the
largest real root of closed-form(value) = budget, with unrounded widths (``closed_form``);
the reported numbers are those of that exact point (not a buildable integer-width model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import sympy

from ..errors import UserError
from .analysis import CONVENTIONS, analyze
from .deploy import to_deploy
from .graph import Graph
from .scaling import D, W, closed_form, exact, find_elans, scale

WIDTH_GRID = tuple(Fraction(m, 16) for m in range(2, 33))
METRICS = ("gflops", "params")


@dataclass(frozen=True)
class Budget:
    """What is limited: ``metric`` ≤ ``limit`` at input ``img``, in ``form``, with GFLOPs in
    ``convention`` (the report's default: official)."""

    metric: str
    limit: float
    img: int
    form: str = "training"
    convention: str = "official"

    def value(self, g: Graph) -> Any:
        a = analyze(to_deploy(g) if self.form == "deploy" else g, self.img)
        return a.params if self.metric == "params" else a.gflops(self.convention)


@dataclass(frozen=True)
class Solution:
    depth: Fraction
    width: Fraction
    value: Any
    graph: Graph | None
    budget: Budget
    grid: dict[str, Any]
    next_larger: dict[str, Any] = field(default_factory=dict)
    evaluated: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.budget.metric, "limit": self.budget.limit,
                "img": self.budget.img, "form": self.budget.form,
                "convention": self.budget.convention, "value": float(self.value),
                "depth": float(self.depth), "width": float(self.width), "grid": self.grid,
                "next_larger": self.next_larger, "evaluated": self.evaluated}


def depth_grid(graph: Graph, light: str = "full", top: int = 3) -> tuple[Fraction, ...]:
    """d = m/K, m = 1..top·K, K = lcm of stage counts (light blocks count pairs as stages
    unless ``light='keep'``)."""
    ks = [e.convs // (2 if e.light and light != "keep" else e.step) for e in find_elans(graph)]
    if not ks:
        raise UserError(f"graph {graph.name!r} has no scalable blocks (no 'elan' block in "
                        f"graph.blocks); build its ELANs with yolov7c.ir.blocks.elan()")
    k = math.lcm(*ks)
    return tuple(Fraction(m, k) for m in range(1, top * k + 1))


def solve(graph: Graph, budget: Budget, rule: str = "compound", depth: Any = None,
          width: Any = None, continuous: bool = False, **kw: Any) -> Solution:
    """The best (d, w) under ``budget`` (module docstring). ``depth``/``width`` fix one factor;
    ``rule`` depth-only / width-only fix the other to 1."""
    if budget.metric not in METRICS:
        raise UserError(f"budget metric {budget.metric!r}: expected one of {METRICS}")
    if budget.convention not in CONVENTIONS:
        raise UserError(f"convention {budget.convention!r}: expected one of {list(CONVENTIONS)}",
                        arg="convention")
    if not budget.limit > 0:
        raise UserError(f"budget {budget.limit}: must be positive")
    if rule == "depth-only":
        width = 1
    if rule == "width-only":
        depth = 1
    if continuous:
        return _relaxed(graph, budget, rule, depth, width, **kw)
    ds = (exact(depth, "depth"),) if depth is not None else depth_grid(graph, kw.get("light", "full"))
    ws = (exact(width, "width"),) if width is not None else WIDTH_GRID
    grid = {"depth": [float(d) for d in ds], "width": [float(w) for w in ws]}
    seen: dict[tuple[Fraction, Fraction], Any] = {}

    def value(d: Fraction, w: Fraction) -> Any:
        if (d, w) not in seen:
            seen[d, w] = budget.value(scale(graph, d, w, rule, **kw))
        return seen[d, w]

    best: tuple[Any, Fraction, Fraction] | None = None
    for d in ds:
        lo, hi = -1, len(ws)  # invariant: ws[lo] fits (or lo = -1), ws[hi] does not (or end)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if value(d, ws[mid]) <= budget.limit:
                lo = mid
            else:
                hi = mid
        if lo >= 0:
            cand = (value(d, ws[lo]), d, ws[lo])
            best = cand if best is None or cand > best else best
    if best is None:
        smallest = value(ds[0], ws[0])
        raise UserError(f"budget {budget.limit:g} {_unit(budget)} is below the smallest variant "
                        f"on the grid (depth {float(ds[0]):g}, width {float(ws[0]):g}: "
                        f"{float(smallest):.4g}); raise the budget")
    v, d, w = best
    nxt = {}
    for key, (dd, ww) in (("depth", (_after(ds, d), w)), ("width", (d, _after(ws, w)))):
        nxt[key] = None if dd is None or ww is None else {
            "depth": float(dd), "width": float(ww), "value": float(value(dd, ww))}
    return Solution(d, w, v, scale(graph, d, w, rule, **kw), budget, grid, nxt, len(seen))


def _after(seq: Sequence[Fraction], x: Fraction) -> Fraction | None:
    i = seq.index(x)
    return seq[i + 1] if i + 1 < len(seq) else None


def _unit(b: Budget) -> str:
    return "GFLOPs" if b.metric == "gflops" else "params"


def _relaxed(graph: Graph, budget: Budget, rule: str, depth: Any, width: Any,
             **kw: Any) -> Solution:
    if (depth is None) == (width is None):
        raise UserError("continuous: solves for one factor; fix exactly one of depth, width "
                        "(or use rule 'depth-only' / 'width-only')", arg="continuous")
    if budget.form != "training":
        raise UserError("continuous: uses the training-form closed form; use form 'training', "
                        "not 'deploy'", arg="continuous")
    kw = {k: v for k, v in kw.items() if k != "round_to"}  # the closed form is unrounded
    cf = closed_form(graph, img=budget.img, rule=rule, round_to=None, **kw)
    expr = cf.params if budget.metric == "params" else cf.gflops[budget.convention]
    fixed, free = (D, W) if depth is not None else (W, D)
    fixed_value = exact(depth if depth is not None else width, fixed.name)
    poly = sympy.Poly(expr.subs(fixed, sympy.Rational(fixed_value.numerator,
                                                      fixed_value.denominator))
                      - sympy.nsimplify(budget.limit), free)
    roots = [r for r in poly.nroots(n=30) if r.is_real and r > 0]
    if not roots:
        raise UserError(f"budget {budget.limit:g} {_unit(budget)}: no positive "
                        f"{free.name} reaches it with {fixed.name} = {float(fixed_value):g}")
    root = Fraction(str(max(roots))).limit_denominator(10**12)
    d, w = (fixed_value, root) if depth is not None else (root, fixed_value)
    value = expr.subs({D: sympy.Rational(d.numerator, d.denominator),
                       W: sympy.Rational(w.numerator, w.denominator)})
    grid = {"continuous": free.name, free.name: float(root), fixed.name: float(fixed_value),
            "widths": "unrounded (closed form)"}
    return Solution(d, w, value, None, budget, grid, {}, 0)
