"""Closed forms params(d, w) and GFLOPs(d, w, img), and scaling curves, via ``ir.scaling``.

Scaling is another component: when ``yolov7c.ir.scaling`` is missing or cannot scale a
model, the report says so in one line instead of failing. The closed forms describe the
depth-scaled family (``ir.scaling`` docstring: light ELANs in full-width form, plain lead
convs), so at d = w = 1 they need not equal the released model; the report prints both.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..ir.analysis import CONVENTIONS, analyze
from ..ir.graph import Graph
from .grouping import total


def _scaling() -> Any | None:
    try:
        return importlib.import_module("yolov7c.ir.scaling")
    except ImportError:
        return None


@dataclass(frozen=True)
class ClosedForm:
    """Sympy polynomials of params and GFLOPs (each convention) and their value at d = w = 1
    next to the model's own counts."""

    params: Any
    gflops: dict[str, Any]
    at_one: dict[str, float]
    model: dict[str, float]
    img: int

    def as_dict(self) -> dict[str, Any]:
        return {"params": str(self.params), **{f"gflops_{c}": str(v)
                                               for c, v in self.gflops.items()},
                "at_d1_w1": self.at_one, "model": self.model, "img": self.img}

    def text(self) -> str:
        lines = [f"params(d, w) = {self.params}"]
        lines += [f"GFLOPs_{c}(d, w, img) = {v}" for c, v in self.gflops.items()]
        lines.append(f"at d = w = 1, img = {self.img}: params {self.at_one['params']:,.0f} "
                     f"(model {self.model['params']:,.0f}), GFLOPs official "
                     f"{self.at_one['official']:.4f} (model {self.model['official']:.4f}); "
                     "the closed form is the depth-scaled family (see yolov7c.ir.scaling)")
        return "\n".join(lines)


def closed_form(graph: Graph, img: int) -> ClosedForm | str:
    """The closed forms of ``graph``, or a one-line reason why there are none."""
    mod = _scaling()
    if mod is None or not hasattr(mod, "closed_form"):
        return "closed forms need yolov7c.ir.scaling, which this installation does not have"
    try:
        cf = mod.closed_form(graph)
        at = cf.at(1, 1, img)
    except Exception as e:  # another component's limits: report them, never crash
        return f"closed forms unavailable for {graph.name}: {type(e).__name__}: {e}"
    t = total(analyze(graph, img))
    return ClosedForm(cf.params, dict(cf.gflops),
                      {k: float(v) for k, v in at.items()},
                      {"params": float(t.params),
                       **{c: t.flops[c] / 1e9 for c in CONVENTIONS}}, img)


def scaling_curves(graph: Graph, img: int, convention: str = "official",
                   values: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
                   ) -> dict[str, dict[str, tuple[list[float], list[float]]]] | str:
    """GFLOPs and params (M) of the numerically scaled model over depth (w = 1) and over
    width (d = 1)."""
    mod = _scaling()
    scale: Callable[..., Graph] | None = getattr(mod, "scale", None)
    if scale is None:
        return "scaling curves need yolov7c.ir.scaling"
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {"GFLOPs": {},
                                                                   "params (M)": {}}
    for axis in ("depth", "width"):
        xs, gfl, par = [], [], []
        for v in values:
            try:
                t = total(analyze(scale(graph, depth=v if axis == "depth" else 1,
                                        width=v if axis == "width" else 1), img))
            except Exception:  # a factor the scaler rejects is left out of the curve
                continue
            xs.append(v)
            gfl.append(t.flops[convention] / 1e9)
            par.append(t.params / 1e6)
        out["GFLOPs"][f"over {axis} (w = 1)" if axis == "depth" else "over width (d = 1)"] = (
            xs, gfl)
        out["params (M)"][f"over {axis} (w = 1)" if axis == "depth" else
                          "over width (d = 1)"] = (xs, par)
    return out
