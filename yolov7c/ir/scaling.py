"""Concat-aware compound scaling (YOLOv7 §3.2, Fig. 3), on any graph with ELAN blocks.

An ELAN block (``graph.blocks[name].kind == "elan"``) is read as ``k`` *stages* of ``step``
3×3 convs of width ``c3``, the last conv of every stage tapped, plus the cv2 output (``c``)
and the side branch cv1 (``c``): concat width = 2·c + c3·k (convs = step·k).

Rules (``RULES``):

- ``depth-only``  k → round(k·d) in every block; every other width unchanged (so the
  transition 1×1 reads a wider concat but keeps its width: the paper's "depth only").
- ``width-only``  every width × w; depth unchanged.
- ``compound``    (default) k → round(k·d) and block widths × w; every *transition* width is
  multiplied by its block's concat ratio r = concat'/concat (computed from the graph's
  inferred concat widths, never restated), and every *transition-tied* width by the r of
  its anchor block (below). At w = 1 this is the paper's "depth ×d, transition ×r".

Transition-tied widths: every node outside the ELAN blocks that has a width attribute
``c`` (stem convs, MP-down / DownC / strided downsamples, SPPCSPC, the neck's route 1×1s,
the lead convs, ...). Its anchor is the nearest ELAN transition upstream of it (breadth-
first over its inputs); a node with none upstream (the stem) takes the nearest ELAN block
downstream. In the zoo every block of a model has the same r, so the choice of anchor never
changes a number there; for custom graphs whose blocks differ it is the stated rule.

"Light" ELANs. yolov7's neck ELANs are step-1 blocks whose 3×3 convs are half as wide
(c3 = c/2, all tapped). Rule: a pair of c/2-wide convs that are both tapped contributes c
to the concat, exactly like one full-width stage of two c-wide convs whose last is tapped;
so a light block of n convs *is* a block of n/2 full-width stages as far as depth and
concat width go. With ``light="full"`` (default) a depth-scaled model emits every light
block in that full-width stage form (what the released yolov7x does: 4 half-width convs →
6 full-width convs, step 2); ``light="keep"`` keeps the light form (n → round(n·d) convs,
step 1: what the released E6/D6 necks do); ``light="always"`` converts even when depth is
unchanged (``full_elan_form``: yolov7 → the paper's Table 3 base "v7-X light", 47.0M).
"Depth-scaled" means some block's conv count changes (always, for a symbolic d).

Lead convs: the released X model uses plain 3×3 convs where yolov7 has RepConv.
``lead="auto"`` (default) follows it — RepConv leads become plain convs when the model is
depth-scaled — ``"conv"`` always, ``"keep"`` never. It is not a scaling matter: in the
deploy form a RepConv *is* a 3×3 conv with bias, so deploy params/FLOPs do not depend on it.

Rounding: numeric widths are rounded *up* to multiples of ``round_to`` (8; the official
``make_divisible``), ``round_to=None`` keeps them exact (``Fraction``). Numeric factors are
read as decimal fractions (1.25 → 5/4) so every count is exact.

Grouped E-ELAN (``blocks.e_elan``, paper §3.1): E-ELAN changes only the computational
block, with the same group parameter g and channel multiplier on every computational conv of
the layer. Read as an ELAN with c3 = c whose convs have g groups and g·c channels; its concat
is shuffled into g groups and the groups added, so the transition reads c·(k + 2), the plain
ELAN's concat width. Scaling therefore treats it as an ELAN (k → round(k·d), per-group width
c·w, transition × r), keeps g or sets it (``groups``: an integer or a sympy symbol, so the
closed forms are polynomials in d, w and g). g does not enter r.

Symbolic factors (sympy): widths are w·c without rounding (rounding has no closed form), and
a symbolic depth cannot create a symbolic number of nodes, so each block's 3×3 chain becomes
one ``ElanChain`` node with ``stages = k·d`` (the continuous relaxation: convs = step·k·d,
taps = k·d + 1). The closed forms are polynomials in (d, w[, img]) and equal the numeric
graph built with ``round_to=None`` exactly wherever k·d is an integer for every block (and,
for rounded widths, wherever w·c is already a multiple of 8), *for depth-scaled graphs*:
at a point where no block's depth changes the numeric graph keeps the light form and the
RepConv leads, the closed form (being depth-scaled) does not.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

import sympy

from ..errors import UserError
from . import ops
from .blocks import elan_taps
from .graph import GRAPH_INPUT, BlockInfo, Graph, Node

RULES = ("compound", "depth-only", "width-only")
LIGHT_MODES = ("full", "keep", "always")
LEAD_MODES = ("auto", "conv", "keep")


# ----- factors --------------------------------------------------------------------------------
def is_symbolic(x: Any) -> bool:
    return isinstance(x, sympy.Basic) and not x.is_number


def exact(x: Any, what: str) -> Any:
    """A positive factor as an exact number (Fraction) or a sympy expression."""
    if is_symbolic(x):
        return x
    try:
        if isinstance(x, sympy.Basic):
            x = sympy.Rational(x)
            v = Fraction(int(x.p), int(x.q))
        elif isinstance(x, float):
            v = Fraction(repr(x))  # decimal reading: 1.25 → 5/4, 1.1 → 11/10
        else:
            v = Fraction(x)
    except (TypeError, ValueError):
        raise UserError(f"{what} {x!r}: expected a positive number or a sympy symbol",
                        arg=what) from None
    if v <= 0:
        raise UserError(f"{what} {x}: scaling factors must be positive (1 = unchanged)", arg=what)
    return v


def _num(v: Any) -> Any:
    """Fractions that are integers become ints (so widths print as 320, not 320/1)."""
    return int(v) if isinstance(v, Fraction) and v.denominator == 1 else v


def round_width(x: Any, round_to: int | None) -> Any:
    """Round a numeric width up to a multiple of ``round_to`` (at least one multiple)."""
    if is_symbolic(x) or round_to is None:
        return _num(x)
    return max(round_to, math.ceil(Fraction(x) / round_to) * round_to)


# ----- ELAN blocks as read from a graph -------------------------------------------------------
@dataclass(frozen=True)
class Elan:
    """One ELAN block found in a graph: its record, its nodes and its concat width."""

    name: str
    c: Any
    c3: Any
    convs: int
    step: int
    out: Any
    cv1: Node
    cv2: Node
    chain: tuple[Node, ...]
    concat: Node
    transition: Node
    concat_width: Any
    groups: Any = None            # grouped E-ELAN (kind e_elan_grouped): its g, else None
    shuffle: Node | None = None   # grouped only: Shuffle and GroupSum between concat and
    merge: Node | None = None     # transition; concat_width is then the merged width

    @property
    def light(self) -> bool:
        return self.step == 1 and 2 * self.c3 == self.c and self.convs % 2 == 0

    @property
    def nodes(self) -> tuple[Node, ...]:
        mid = () if self.groups is None else (self.shuffle, self.merge)
        return (self.cv1, self.cv2, *self.chain, self.concat, *mid, self.transition)


def find_elans(graph: Graph) -> list[Elan]:
    """The graph's ELAN blocks, checked against the structure ``blocks.elan`` emits, and its
    grouped E-ELAN blocks (``blocks.e_elan``: read as an ELAN with c3 = c whose every
    computational conv has ``groups`` groups and g× the width; concat width = the merged
    width c·(k + 2), which is what the transition reads)."""
    by_name = {n.name: n for n in graph.nodes}
    found = []
    for name, info in graph.blocks.items():
        grouped = info.kind == "e_elan_grouped"
        if info.kind not in ("elan", "e_elan_grouped") or f"{name}.cv1" not in by_name:
            continue
        a = info.args
        convs, step = int(a["convs"]), int(a["step"])
        mid = ("shuffle", "merge") if grouped else ()
        try:
            nodes = [by_name[f"{name}.{k}"] for k in ("cv1", "cv2", *(f"m{i}" for i in
                     range(convs)), "concat", *mid, "transition")]
        except KeyError as e:
            raise UserError(f"block {name!r}: node {e.args[0]} is missing; an ELAN block "
                            f"must keep the nodes blocks.elan() builds to be scaled") from None
        if convs % step:
            raise UserError(f"block {name!r}: convs={convs} is not a multiple of step={step}; "
                            f"depth scaling counts stages of `step` convs")
        if grouped:
            *rest, shuffle, merge, tr = nodes
            cv1, cv2, *chain, cat = rest
            found.append(Elan(name, a["c"], a["c"], convs, step, a["out"], cv1, cv2,
                              tuple(chain), cat, tr, graph.c_out(merge.index), a["groups"],
                              shuffle, merge))
            continue
        cv1, cv2, *chain, cat, tr = nodes
        found.append(Elan(name, a["c"], a["c3"], convs, step, a["out"], cv1, cv2,
                          tuple(chain), cat, tr, graph.c_out(cat.index)))
    return found


# ----- the per-block plan -----------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """New widths and depth of one ELAN block, and its concat ratio r = concat'/concat."""

    c: Any
    c3: Any
    stages: Any
    step: int
    out: Any
    ratio: Any
    groups: Any = None  # grouped E-ELAN: g of every computational conv (c, c3 are per group)

    @property
    def convs(self) -> Any:
        return self.step * self.stages


def _stages(k: int, d: Any) -> Any:
    if is_symbolic(d):
        return k * d
    return max(1, math.floor(k * d + Fraction(1, 2)))  # round half up, at least one stage


def _plan(e: Elan, d: Any, w: Any, rule: str, convert: bool, round_to: int | None,
          groups: Any = None) -> Plan:
    """Grouped E-ELAN (§3.1): the same g and the same width factor on every computational
    conv (per-group width c·w, g groups, g·c·w channels); the merge brings the concat back
    to c·w·(k' + 2), so the transition follows r exactly as in a plain ELAN, whatever g."""
    c3, step = (e.c, 2) if convert else (e.c3, e.step)  # light → full: pairs → full stages
    k = e.convs // step
    stages = k if rule == "width-only" else _stages(k, d)
    wf = 1 if rule == "depth-only" else w
    c, c3 = round_width(e.c * wf, round_to), round_width(c3 * wf, round_to)
    concat = 2 * c + c3 * stages            # cv1 + cv2 + one tap per stage
    ratio = concat * _inverse(e.concat_width, d, w)
    out = e.out if rule == "depth-only" else round_width(e.out * ratio, round_to)
    g = None if e.groups is None else (e.groups if groups is None else groups)
    return Plan(c, c3, stages, step, out, 1 if rule == "depth-only" else ratio, g)


def _inverse(x: Any, *factors: Any) -> Any:
    """1/x, exact: a sympy Rational when the computation is symbolic, else a Fraction."""
    return sympy.Rational(1, x) if any(is_symbolic(f) for f in factors) else Fraction(1, x)


# ----- anchors of transition-tied widths ----------------------------------------------------------
def _anchors(graph: Graph, elans: list[Elan]) -> dict[int, str]:
    """For every node outside the ELAN blocks: the block whose ratio its width follows
    (nearest transition upstream, else nearest block downstream; breadth-first)."""
    owner = {n.index: e.name for e in elans for n in e.nodes}
    transitions = {e.transition.index: e.name for e in elans}
    out: dict[int, str] = {}
    for n in graph.nodes:
        if n.index in owner or "c" not in n.attrs:
            continue
        hit = (_bfs(graph, n.index, transitions, graph.nx.predecessors)
               or _bfs(graph, n.index, owner, graph.nx.successors))
        if hit is None:
            raise UserError(f"{n.where()}: no ELAN block up- or downstream to tie its width "
                            f"to; give the graph an ELAN block or scale it by hand")
        out[n.index] = hit
    return out


def _bfs(graph: Graph, start: int, targets: Mapping[int, str], step: Any) -> str | None:
    seen, queue = {start}, deque([start])
    while queue:
        i = queue.popleft()
        for j in sorted(step(i)):
            if j in targets:
                return targets[j]
            if j not in seen and j != GRAPH_INPUT:
                seen.add(j)
                queue.append(j)
    return None


# ----- rewriting ----------------------------------------------------------------------------------
class _Emitter:
    """Appends nodes with fresh consecutive indices and remaps inputs."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.new_index: dict[int, int] = {GRAPH_INPUT: GRAPH_INPUT}

    def emit(self, like: Node, inputs: tuple[int, ...], old: int | None = None,
             **changes: Any) -> int:
        i = len(self.nodes)
        self.nodes.append(like.replace(index=i, inputs=inputs, **changes))
        if old is not None:
            self.new_index[old] = i
        return i

    def remap(self, inputs: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.new_index[i] for i in inputs)


def _emit_elan(em: _Emitter, e: Elan, p: Plan) -> None:
    x = em.remap(e.cv1.inputs)
    g = {} if p.groups is None else {"g": p.groups}  # grouped: g groups, g× the width
    m = 1 if p.groups is None else p.groups
    side = em.emit(e.cv1, x, attrs=dict(e.cv1.attrs, c=m * p.c, **g))
    y0 = em.emit(e.cv2, em.remap(e.cv2.inputs), attrs=dict(e.cv2.attrs, c=m * p.c, **g))
    conv = dict(e.chain[0].attrs, c=m * p.c3, **g)
    if is_symbolic(p.stages):  # one node stands for the whole chain (continuous relaxation)
        chain = em.emit(e.chain[0], (y0,), name=f"{e.name}.chain", op="ElanChain",
                        attrs=dict(conv, stages=p.stages, step=p.step))
        taps = (chain, y0, side)
    else:
        ys = [y0]
        for i in range(p.convs):
            ys.append(em.emit(e.chain[0], (ys[-1],), name=f"{e.name}.m{i}", attrs=conv))
        taps = (*(ys[i] for i in elan_taps(p.convs, p.step)), side)
    cat = em.emit(e.concat, taps)
    if p.groups is not None:  # shuffle the k' + 2 taps into g groups, add the groups
        cat = em.emit(e.shuffle, (cat,), attrs=dict(e.shuffle.attrs, g=p.groups,
                                                     parts=p.stages + 2))
        cat = em.emit(e.merge, (cat,), attrs=dict(e.merge.attrs, g=p.groups))
    em.emit(e.transition, (cat,), old=e.transition.index,
            attrs=dict(e.transition.attrs, c=p.out))


def _tied(n: Node, ratio: Any, to_conv: bool, round_to: int | None) -> Node:
    attrs = dict(n.attrs, c=round_width(n.attrs["c"] * ratio, round_to))
    if to_conv and n.op == "RepConv":  # the released X models' plain 3×3 lead conv
        rep = ops.get("RepConv")  # the conv keeps the RepConv's kernel (its default is 3)
        attrs = {k: attrs[k] for k in ("c", "s", "act", "g") if k in attrs}
        attrs["k"] = rep.attr(n.attrs, "k")
        return n.replace(op="Conv", attrs=attrs)
    return n.replace(attrs=attrs)


def _blocks(graph: Graph, new: list[Node], plans: Mapping[str, Plan]) -> dict[str, BlockInfo]:
    """Block records of the scaled graph: ELAN args from their plans, the others refreshed
    from their (scaled) nodes so a scaled graph can be scaled, emitted or reported again."""
    by_block: dict[str, list[Node]] = {}
    for n in new:
        by_block.setdefault(n.block, []).append(n)
    out = {}
    for name, info in graph.blocks.items():
        args = dict(info.args)
        src = plans.get(name) or plans.get(f"{name}.group1")  # e_elan_sum: its groups' plan
        if src is not None:
            args.update(c=src.c, convs=src.convs, step=src.step, out=src.out)
            args.update({"groups": src.groups} if info.kind == "e_elan_grouped" else
                        {"c3": src.c3})
        mine = [n for n in by_block.get(name, []) if "c" in n.attrs]
        if info.kind == "lead_convs" and mine:
            args.update(widths=tuple(n.attrs["c"] for n in mine),
                        rep=all(n.op == "RepConv" for n in mine))
        elif src is None and "c" in args and mine:
            args["c"] = mine[0].attrs["c"]
        out[name] = BlockInfo(name, info.kind, args)
    return out


def scale(graph: Graph, depth: Any = 1, width: Any = 1, rule: str = "compound",
          round_to: int | None = 8, light: str = "full", lead: str = "auto",
          name: str | None = None, groups: Any = None) -> Graph:
    """The graph scaled by ``depth``/``width`` under ``rule`` (see the module docstring).

    ``depth``/``width`` are positive numbers or sympy expressions. Returns a new graph with
    consecutive indices (for zoo models: the official layer numbering of the scaled model,
    e.g. ``scale(yolov7, depth=1.5)`` is yolov7x node for node). ``groups``: the group
    parameter g of every grouped E-ELAN block (a positive integer or a sympy symbol; None
    keeps each block's own), applied with the width factor to every computational conv."""
    if rule not in RULES:
        raise UserError(f"rule {rule!r}: expected one of {', '.join(RULES)}", arg="rule")
    for opt, val, allowed in (("light", light, LIGHT_MODES), ("lead", lead, LEAD_MODES)):
        if val not in allowed:
            raise UserError(f"{opt} {val!r}: expected one of {', '.join(allowed)}", arg=opt)
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise UserError(f"round_to {round_to!r}: expected a positive integer or None",
                        arg="round_to")
    d, w = exact(depth, "depth"), exact(width, "width")
    if rule == "depth-only" and w != 1:
        raise UserError(f"rule 'depth-only' scales depth only, but width {width} was given; "
                        f"drop width or use rule 'compound'", arg="rule")
    if rule == "width-only" and d != 1:
        raise UserError(f"rule 'width-only' scales width only, but depth {depth} was given; "
                        f"drop depth or use rule 'compound'", arg="rule")
    elans = find_elans(graph)
    _check_groups(groups, [e for e in elans if e.groups is not None], graph)
    if not elans:
        raise UserError(f"graph {graph.name!r} has no scalable blocks (no 'elan' block in "
                        f"graph.blocks); build its ELANs with yolov7c.ir.blocks.elan()")
    deepened = rule != "width-only" and (is_symbolic(d) or any(
        _stages(e.convs // e.step, d) != e.convs // e.step for e in elans))
    convert = light == "always" or (light == "full" and deepened)
    plans = {e.name: _plan(e, d, w, rule, convert and e.light, round_to, groups)
             for e in elans}
    anchors = _anchors(graph, elans)
    to_conv = lead == "conv" or (lead == "auto" and deepened)
    inside = {n.index: e for e in elans for n in e.nodes}
    em = _Emitter()
    for n in graph.nodes:
        e = inside.get(n.index)
        if e is not None:
            if n.index == e.cv1.index:
                _emit_elan(em, e, plans[e.name])
            elif n.index != e.transition.index and any(
                    inside.get(j) is not e for j in graph.consumers(n.index)):
                raise UserError(f"{n.where()}: read from outside its ELAN block; only the "
                                f"transition of a block may feed other layers to be scaled")
            continue
        src = _tied(n, plans[anchors[n.index]].ratio, to_conv, round_to) if n.index in anchors \
            else n
        em.emit(src, em.remap(n.inputs), old=n.index)
    return Graph(name or scaled_name(graph.name, d, w, rule), em.nodes, graph.in_channels,
                 graph.form, _blocks(graph, em.nodes, plans))


def _check_groups(groups: Any, grouped: list[Elan], graph: Graph) -> None:
    """``groups`` is None, a sympy expression or a positive integer; only for a graph that
    has grouped E-ELAN blocks."""
    if groups is None or is_symbolic(groups):
        return
    if not grouped:
        raise UserError(f"groups {groups!r}: graph {graph.name!r} has no grouped E-ELAN block "
                        f"(blocks.e_elan); drop groups", arg="groups")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise UserError(f"groups {groups!r}: expected a positive integer (the group parameter "
                        f"g of every grouped E-ELAN block) or a sympy symbol", arg="groups")


def scaled_name(base: str, d: Any, w: Any, rule: str) -> str:
    def fmt(x: Any) -> str:
        return str(x) if is_symbolic(x) else f"{float(x):g}"
    suffix = "" if rule == "compound" else f"-{rule}"
    return f"{base}-d{fmt(d)}-w{fmt(w)}{suffix}"


def full_elan_form(graph: Graph) -> Graph:
    """Every light ELAN in its full-width stage form, nothing else changed: yolov7 → the
    paper's Table 3 base ("v7-X light", 47.0M): yolov7x's block forms at yolov7's depth."""
    return scale(graph, light="always", lead="keep", name=f"{graph.name}-full")


# ----- closed forms -----------------------------------------------------------------------------
D, W, IMG = sympy.symbols("d w img", positive=True)
G = sympy.Symbol("g", positive=True, integer=True)  # group parameter of grouped E-ELANs


@dataclass(frozen=True)
class ClosedForm:
    """params(d, w[, g]) and GFLOPs(d, w[, g, img]) of a scaled graph, exact polynomials
    (g appears when the graph has grouped E-ELAN blocks; ``g0`` is then the base's g)."""

    graph: Graph
    params: sympy.Expr
    gflops: Mapping[str, sympy.Expr]
    g0: Any = None

    def at(self, d: Any, w: Any, img: Any = None, g: Any = None) -> dict[str, Any]:
        """Values at (d, w[, img]); g defaults to the base graph's own group parameter."""
        sub = {D: sympy.nsimplify(d), W: sympy.nsimplify(w)}
        if img is not None:
            sub[IMG] = img
        if self.g0 is not None or g is not None:
            sub[G] = self.g0 if g is None else g
        return {"params": self.params.subs(sub),
                **{k: v.subs(sub) for k, v in self.gflops.items()}}


def closed_form(graph: Graph, img: Any = None, rule: str = "compound", **kw: Any) -> ClosedForm:
    """Scale ``graph`` with symbols d, w (and g for grouped E-ELAN blocks, unless ``groups``
    is given) and sum its analysis into polynomials.

    ``img=None`` keeps the input size symbolic too; GFLOPs use /10⁹ exactly."""
    from .analysis import CONVENTIONS, analyze
    d = 1 if rule == "width-only" else D
    w = 1 if rule == "depth-only" else W
    own = {e.groups for e in find_elans(graph) if e.groups is not None}
    if own and kw.get("groups") is None:
        kw["groups"] = G
    g = scale(graph, depth=d, width=w, rule=rule, **kw)
    a = analyze(g, IMG if img is None else img)
    billion = sympy.Integer(10) ** 9
    return ClosedForm(g, sympy.expand(a.params),
                      {c: sympy.expand(a.flops(c) / billion) for c in CONVENTIONS},
                      own.pop() if len(own) == 1 else None)
