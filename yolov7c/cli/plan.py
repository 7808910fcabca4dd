"""``yolov7c plan``: where RepConv, RepConvN or a plain conv goes, and why (paper §4.1)."""
from __future__ import annotations

import argparse
from typing import Any

from . import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="plan re-parameterized convs: RepConv where plain, "
                       "RepConvN where a residual or concat spans the conv (YOLOv7 §4.1)")
    p.add_argument("model", help="zoo or ablation name, DSL .py, cfg .yaml or checkpoint")
    p.add_argument("--policy", default="planned",
                   help="planned (default), repconv-everywhere or none")
    p.add_argument("--candidates", default=None,
                   help="comma-separated node names to plan (default: every 3×3 stride-1 conv)")
    p.add_argument("--nc", type=int, default=None, help="classes (default: the model's)")
    p.add_argument("--img", type=int, default=None, help="input size of the numbers "
                   "(default: the model's)")
    p.add_argument("--out", help="write the planned model: a .py (DSL) or .yaml (cfg) file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from ..api.planning import plan
    _, summary = plan(args.model, args.policy, candidates=args.candidates, nc=args.nc,
                      img=args.img, out=args.out)
    if args.json:
        emit_json(summary)
        return 0
    _table(summary)
    return 0


def _table(s: dict[str, Any]) -> None:
    rows = s["candidates"]
    w = max(len("node"), *(len(r["node"]) for r in rows))
    print(f"{s['model']}: policy {s['policy']} — {s['rule']}")
    print(f"  {'index':>5}  {'node':<{w}}  {'position':<8}  {'choice':<16}  reason")
    for r in rows:
        change = r["choice"] if r["before"] == r["choice"] else f"{r['before']}→{r['choice']}"
        print(f"  {r['index']:>5}  {r['node']:<{w}}  {r['position']:<8}  {change:<16}  "
              f"{r['reason']}")
    b, p = s["base"], s["planned"]
    print(f"  training params {b['params']:,} → {p['params']:,}, GFLOPs {b['gflops']:.3f} → "
          f"{p['gflops']:.3f}; deploy params {b['deploy_params']:,} → {p['deploy_params']:,}, "
          f"GFLOPs {b['deploy_gflops']:.3f} → {p['deploy_gflops']:.3f} (img {s['img']}, "
          f"official convention)")
    if s["out"]:
        print(f"  wrote {s['out']}")
