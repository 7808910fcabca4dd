"""``yolov7c scale``: concat-aware compound scaling, closed forms, budgets, emission."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..ir.analysis import CONVENTIONS, analyze
from ..ir.deploy import to_deploy
from ..ir.graph import Graph
from ..ir.scaling import LEAD_MODES, LIGHT_MODES, RULES, find_elans
from . import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale", help="concat-aware compound scaling (YOLOv7 §3.2)")
    p.add_argument("model", help="zoo name, cfg .yaml, DSL .py or checkpoint")
    p.add_argument("--depth", type=float, default=None, help="depth factor d (default 1)")
    p.add_argument("--width", type=float, default=None, help="width factor w (default 1)")
    p.add_argument("--rule", choices=RULES, default="compound")
    p.add_argument("--light", choices=LIGHT_MODES, default="full",
                   help="form of depth-scaled half-width step-1 ELANs (default: yolov7x's)")
    p.add_argument("--lead", choices=LEAD_MODES, default="auto",
                   help="RepConv lead convs: auto = plain conv when depth-scaled (yolov7x)")
    p.add_argument("--round-to", type=int, default=8, help="round widths up to multiples")
    p.add_argument("--groups", type=int, metavar="G", help="the group parameter g of every "
                   "grouped E-ELAN block (default: each block's own; with --symbolic: g is "
                   "a symbol unless given)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--target-gflops", type=float, help="largest variant under this")
    budget.add_argument("--target-params", type=float, help="largest variant under this")
    p.add_argument("--continuous", action="store_true",
                   help="budget: solve the free factor on the closed form (fix the other)")
    p.add_argument("--convention", choices=list(CONVENTIONS), default="official",
                   help="GFLOPs convention of the budget")
    p.add_argument("--img", type=int, help="input size (default: the model's)")
    p.add_argument("--form", choices=("training", "deploy"), default="training",
                   help="report (and budget) the training or the fused deploy form")
    p.add_argument("--symbolic", action="store_true",
                   help="print params(d, w) and GFLOPs(d, w, img) in closed form")
    p.add_argument("--latex", action="store_true", help="with --symbolic: LaTeX too")
    p.add_argument("--emit", choices=("dsl", "yaml"), help="print the scaled variant as code")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_scale)


def cmd_scale(args: argparse.Namespace) -> int:
    from ..api.transforms import scale
    kw = dict(light=args.light, lead=args.lead, round_to=args.round_to)
    if args.groups is not None:
        kw["groups"] = args.groups
    if args.symbolic:
        return _symbolic(args, kw)
    res = scale(args.model, depth=args.depth, width=args.width, rule=args.rule,
                target_gflops=args.target_gflops, target_params=args.target_params,
                continuous=args.continuous, convention=args.convention, img=args.img,
                form=args.form, **kw)
    if res.graph is None:  # continuous budget: a point, not a buildable model
        print(_budget_line(res.budget)) if not args.json else emit_json({"budget": res.budget})
        return 0
    if args.emit == "dsl":
        from ..ir.emit_dsl import to_dsl
        sys.stdout.write(to_dsl(res.graph))
        return 0
    if args.emit == "yaml":
        from ..ir.yaml_io import to_yaml
        sys.stdout.write(to_yaml(res.graph))
        return 0
    if args.json:
        from ..report.model import report_dict
        shown = to_deploy(res.graph) if args.form == "deploy" else res.graph
        out = report_dict(shown, res.img, args.form)
        out.update(depth=res.depth, width=res.width, rule=args.rule)
        if res.budget is not None:
            out["budget"] = res.budget
        emit_json(out)
        return 0
    _table(res.base, res.graph, res.img, args, res.budget)
    return 0


def _budget_line(b: dict[str, Any]) -> str:
    grid = ", ".join(f"{k} {v[0]:g}..{v[-1]:g} ({len(v)} steps)" if isinstance(v, list)
                     else f"{k} {v}" for k, v in b["grid"].items())
    return (f"budget {b['metric']} ≤ {b['limit']:g}: depth {b['depth']:.6g}, width "
            f"{b['width']:.6g} → {b['value']:.6g}; grid: {grid}; next larger: "
            f"{b.get('next_larger') or '-'}")


def _table(base: Graph, graph: Graph, img: int, args: argparse.Namespace,
           budget: dict[str, Any] | None) -> None:
    def nums(g: Graph) -> tuple[int, float]:
        a = analyze(to_deploy(g) if args.form == "deploy" else g, img)
        return int(a.params), float(a.gflops(args.convention))
    print(f"{graph.name}: rule {args.rule}, {args.form} form, img {img}, GFLOPs "
          f"{args.convention} convention, widths rounded up to multiples of {args.round_to}")
    for tag, g in (("base", base), ("scaled", graph)):
        p, f = nums(g)
        print(f"  {tag:<7} {g.name:<34} params {p:>13,}  GFLOPs {f:>9.3f}  layers {len(g)}")
    print(f"  {'block':<16} {'convs':>9} {'c':>9} {'c3':>9} {'transition':>14}")
    new = {e.name: e for e in find_elans(graph)}
    for e in find_elans(base):
        s = new[e.name]
        print(f"  {e.name:<16} {e.convs:>4}→{s.convs:<4} {e.c:>4}→{s.c:<4} {e.c3:>4}→{s.c3:<4} "
              f"{e.out:>6}→{s.out:<6}")
    if budget is not None:
        print("  " + _budget_line(budget))


def _symbolic(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    import sympy

    from ..api.transforms import scale_symbolic
    res = scale_symbolic(args.model, img=args.img, rule=args.rule, **kw)
    items = list(res["exprs"].items())
    caveat = _symbolic_caveat(args.model, res["exprs"]["params"])
    if args.json:
        out: dict[str, Any] = {"model": res["model"], "rule": args.rule,
                               "img": args.img if args.img else "img"}
        out.update({k: str(sympy.factor(v)) for k, v in items})
        if args.latex:
            out["latex"] = {k: sympy.latex(sympy.factor(v)) for k, v in items}
        if caveat:
            out["caveat"] = caveat
        emit_json(out)
        return 0
    print(f"{res['model']}, rule {args.rule}: closed forms for unrounded widths; d is the "
          f"continuous relaxation (convs = step·stages·d), exact where stages·d is an integer")
    for k, v in items:
        args_ = "d, w" if k == "params" or args.img else "d, w, img"
        print(f"  {k}({args_}) = {sympy.factor(v)}")
        if args.latex:
            print(f"    LaTeX: {sympy.latex(sympy.factor(v))}")
    if caveat:
        print(f"  note: {caveat}")
    return 0


def _symbolic_caveat(model: str, params: Any) -> str | None:
    """The closed form describes the deepened structure (every ELAN written as ``step ×
    stages × d`` convs): at d = w = 1 it may differ from the model itself. Say by how much."""
    from ..api.models import graph_of
    at_one = params.subs({s: 1 for s in params.free_symbols if s.name in ("d", "w")})
    if getattr(at_one, "free_symbols", None):
        return None
    base = int(analyze(graph_of(model), graph_of(model).max_stride).params)
    if int(at_one) == base:
        return None
    return (f"at d = w = 1 the closed form gives {int(at_one):,} params, the model itself "
            f"{base:,}: the formulas describe its depth-scalable form (ELANs as step × stages "
            f"× d convs, the form depth scaling builds: d = 1.5 gives yolov7x exactly), not the "
            f"d = 1 model")
