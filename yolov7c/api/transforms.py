"""Model transformations as functions: ``passes`` (verified pass pipelines), ``scale``
(concat-aware compound scaling, budgets) and ``import_official`` (safe official .pt import).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..backends.common import all_finite
from ..errors import UserError
from ..ir.graph import Graph
from .args import check_stride, output_path, positive_float, positive_int
from .models import graph_of, model_name, resolve, save


def _check_finite(model: nn.Module, where: str) -> None:
    """Refuse to hand on (or write) a module with non-finite weights."""
    for k, v in model.state_dict().items():
        if not all_finite(v):
            raise UserError(f"{where}: non-finite values in {k}; the input weights are broken "
                            f"(NaN/inf), nothing written")


def passes(source: Any, pipeline: str | list[str] = "deploy", *, img: int | None = None,
           verify: bool = False, rtol: float | None = None, seed: int = 0,
           nc: int | None = None, out: str | os.PathLike | None = None,
           print_after: bool = False) -> Any:
    """Run a named pipeline or a list of passes on ``source`` (verified after every pass
    with ``verify``); with ``out``, write the result as our checkpoint. Returns the
    pipeline result (``.module``, ``.records``, ``.as_dict(name)``); a pass that breaks
    equivalence raises ``passes.PassError``. ``print_after`` logs each pass's module code
    (logger ``yolov7c.passes``, INFO).

    ``img`` is the verification image side (default 4 × the largest stride: verification
    needs a real image, not the deployment size)."""
    from ..passes import DEFAULT_RTOL, resolve as resolve_pipeline, run_passes
    rtol = DEFAULT_RTOL if rtol is None else positive_float(rtol, "rtol")
    resolve_pipeline(pipeline)  # an unknown pass fails before the model is built
    dest = output_path(out, inputs=(source,)) if out is not None else None
    model = resolve(source, nc=nc, seed=seed, img=img)
    _check_finite(model, model_name(source))
    result = run_passes(model, pipeline, verify=verify, img=img, seed=seed, rtol=rtol,
                        print_after=print_after)
    if dest is not None:
        _check_finite(result.module, f"pipeline {','.join(result.pipeline)}")
        save(result.module, dest)
    return result


def import_official(path: str | os.PathLike, out: str | os.PathLike | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Import an official YOLOv7 ``.pt`` (nothing from it executed); with ``out``, write our
    checkpoint. Returns the model and a summary."""
    from ..backends.torch.official import import_official as _import
    dest = output_path(out, inputs=(path,)) if out is not None else None
    model = _import(path)
    g = model.graph
    info = {"source": str(path), "model": g.name, "nc": g.nc, "anchors": len(g.anchors[0]) // 2,
            "levels": len(g.anchors), "head": g.head.op, "layers": len(g.nodes),
            "params": sum(p.numel() for p in model.parameters()),
            "out": str(dest) if dest else None}
    if dest is not None:
        save(model, dest, source=str(path))
    return model, info


@dataclass
class ScaleResult:
    """A scaled variant: the base and scaled graphs, the factors, the budget solution."""

    base: Graph
    graph: Graph | None          # None for a continuous budget (a point, not a model)
    depth: float
    width: float
    img: int
    budget: dict[str, Any] | None = None


def _factor(value: Any, arg: str) -> None:
    if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)
                              or value <= 0):
        raise UserError(f"{arg} {value!r}: expected a positive scaling factor", arg=arg)


def scale(source: Any, *, depth: float | None = None, width: float | None = None,
          rule: str = "compound", light: str = "full", lead: str = "auto", round_to: int = 8,
          target_gflops: float | None = None, target_params: float | None = None,
          continuous: bool = False, convention: str = "official", img: int | None = None,
          form: str = "training", groups: int | None = None) -> ScaleResult:
    """Concat-aware compound scaling of any model source's graph, by factors or to the
    largest variant under a GFLOPs / parameter budget. ``groups``: the g of every grouped
    E-ELAN block (paper §3.1; None keeps each block's own)."""
    from ..ir.scaling import scale as scale_graph
    from ..report.model import default_img
    positive_int(round_to, "round_to")
    _factor(depth, "depth")
    _factor(width, "width")
    if target_gflops is not None and target_params is not None:
        raise UserError("target_gflops and target_params: give one budget, not both",
                        arg="target_gflops")
    base = graph_of(source)
    if img is not None:
        check_stride(img, base.max_stride)
    img = img or default_img(base)
    kw = dict(light=light, lead=lead, round_to=round_to)
    if groups is not None:
        positive_int(groups, "groups")
        kw["groups"] = groups
    if target_gflops is not None or target_params is not None:
        from ..ir.budget import Budget, solve
        metric = "gflops" if target_gflops is not None else "params"
        limit = target_gflops if metric == "gflops" else target_params
        positive_float(limit, f"target_{metric}")
        sol = solve(base, Budget(metric, limit, img, form, convention), rule, depth, width,
                    continuous, **kw)
        return ScaleResult(base, sol.graph, float(sol.depth), float(sol.width), img,
                           sol.as_dict())
    if continuous:
        raise UserError("continuous: needs target_gflops or target_params", arg="continuous")
    d = 1 if depth is None else depth
    w = 1 if width is None else width
    return ScaleResult(base, scale_graph(base, d, w, rule, **kw), float(d), float(w), img)


def scale_symbolic(source: Any, *, img: int | None = None, rule: str = "compound",
                   **kw: Any) -> dict[str, Any]:
    """params(d, w[, g]) and GFLOPs(d, w[, g, img]) per convention, as sympy expressions (g:
    the group parameter of grouped E-ELAN blocks, unless ``groups`` fixes it)."""
    from ..ir.analysis import CONVENTIONS
    from ..ir.scaling import closed_form
    base = graph_of(source)
    cf = closed_form(base, img=img, rule=rule, **kw)
    return {"model": base.name, "rule": rule, "img": img,
            "exprs": {"params": cf.params, **{f"gflops_{c}": cf.gflops[c] for c in CONVENTIONS}}}


__all__ = ["ScaleResult", "import_official", "passes", "scale", "scale_symbolic"]
