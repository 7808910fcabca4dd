"""``plan``: the re-parameterization planner on any model source, with the numbers that show
what it changes (training params/FLOPs) and what it must not (deploy params/FLOPs)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .. import zoo
from ..errors import UserError
from ..io_util import write_text_atomic
from ..ir.analysis import analyze
from ..ir.deploy import to_deploy
from ..ir.graph import Graph
from ..ir.plan_reparam import Plan, check_policy, plan as plan_graph
from .args import check_stride, output_path
from .models import graph_of

OUT_SUFFIXES = {".py": "DSL module", ".yaml": "official cfg", ".yml": "official cfg"}


def _img(graph: Graph, img: int | None) -> int:
    if img is not None:
        check_stride(img, graph.max_stride)
        return img
    if graph.name in zoo.names() or graph.name in zoo.ablation_names():
        return zoo.entry(graph.name).img
    from ..report.model import default_img
    return default_img(graph)


def _numbers(g: Graph, img: int) -> dict[str, Any]:
    a, d = analyze(g, img), analyze(to_deploy(g), img)
    return {"params": int(a.params), "gflops": round(float(a.gflops("official")), 6),
            "deploy_params": int(d.params),
            "deploy_gflops": round(float(d.gflops("official")), 6)}


def plan(source: Any, policy: str = "planned", *, candidates: Sequence[Any] | str | None = None,
         nc: int | None = None, img: int | None = None,
         out: str | os.PathLike | None = None) -> tuple[Plan, dict[str, Any]]:
    """Plan RepConv / RepConvN / plain convs in ``source``'s graph under ``policy``
    (``planned``, ``repconv-everywhere``, ``none``); ``candidates``: None for every 3×3
    stride-1 conv, or node names. With ``out`` (``.py`` or ``.yaml``), write the planned
    graph. Returns the plan and a summary dict (decisions, base/planned numbers, out)."""
    check_policy(policy)
    dest = None
    if out is not None:
        dest = output_path(out)
        if dest.suffix.lower() not in OUT_SUFFIXES:
            raise UserError(f"out {dest}: write a .py (DSL module) or .yaml (official cfg) "
                            f"file", arg="out")
    result = plan_graph(graph_of(source, nc=nc), policy, candidates)
    size = _img(result.base, img)
    summary = result.as_dict()
    summary.update(img=size, base=_numbers(result.base, size),
                   planned=_numbers(result.graph, size), out=str(dest) if dest else None)
    if dest is not None:
        write_text_atomic(dest, _text(result.graph, dest))
    return result, summary


def _text(graph: Graph, dest: Path) -> str:
    if dest.suffix.lower() == ".py":
        from ..ir.emit_dsl import to_dsl
        return to_dsl(graph)
    from ..ir.yaml_io import to_yaml
    return to_yaml(graph)


__all__ = ["plan"]
