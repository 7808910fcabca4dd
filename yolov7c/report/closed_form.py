"""Closed forms params(d, w) and GFLOPs(d, w, img), and scaling curves, via ``ir.scaling``.

The closed forms describe the depth-scaled family (``ir.scaling`` docstring: light ELANs in
full-width form, plain lead convs), so at d = w = 1 they need not equal the released model;
the report prints both. A graph without ELAN blocks has no scaling family: ``has_family``
says so and the report states it in one line. Every other failure is an error and surfaces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir import scaling
from ..ir.analysis import CONVENTIONS, analyze
from ..ir.graph import Graph
from .grouping import total

NO_FAMILY = "no closed forms: {name} has no ELAN blocks, so it has no scaling family"


def has_family(graph: Graph) -> bool:
    """Whether ``graph`` can be scaled (it has ELAN blocks ``ir.scaling`` can read)."""
    return bool(scaling.find_elans(graph))


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
        g = ", g" if scaling.G in getattr(self.params, "free_symbols", ()) else ""  # grouped
        lines = [f"params(d, w{g}) = {self.params}"]
        lines += [f"GFLOPs_{c}(d, w{g}, img) = {v}" for c, v in self.gflops.items()]
        lines.append(f"at d = w = 1, img = {self.img}: params {self.at_one['params']:,.0f} "
                     f"(model {self.model['params']:,.0f}), GFLOPs official "
                     f"{self.at_one['official']:.4f} (model {self.model['official']:.4f}); "
                     "the closed form is the depth-scaled family (see yolov7c.ir.scaling)")
        return "\n".join(lines)


def closed_form(graph: Graph, img: int) -> ClosedForm | None:
    """The closed forms of ``graph``; None when it has no scaling family (``has_family``)."""
    if not has_family(graph):
        return None
    cf = scaling.closed_form(graph)
    at = cf.at(1, 1, img)
    t = total(analyze(graph, img))
    return ClosedForm(cf.params, dict(cf.gflops),
                      {k: float(v) for k, v in at.items()},
                      {"params": float(t.params),
                       **{c: t.flops[c] / 1e9 for c in CONVENTIONS}}, img)


def closed_form_text(graph: Graph, img: int) -> str:
    """The closed forms as text, or the one line saying the graph has none."""
    cf = closed_form(graph, img)
    return cf.text() if cf is not None else NO_FAMILY.format(name=graph.name)


def scaling_curves(graph: Graph, img: int, convention: str = "official",
                   values: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
                   ) -> dict[str, dict[str, tuple[list[float], list[float]]]] | None:
    """GFLOPs and params (M) of the numerically scaled model over depth (w = 1) and over
    width (d = 1); None when the graph has no scaling family."""
    if not has_family(graph):
        return None
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {"GFLOPs": {},
                                                                   "params (M)": {}}
    for axis, label in (("depth", "over depth (w = 1)"), ("width", "over width (d = 1)")):
        gfl, par = [], []
        for v in values:
            t = total(analyze(scaling.scale(graph, depth=v if axis == "depth" else 1,
                                            width=v if axis == "width" else 1), img))
            gfl.append(t.flops[convention] / 1e9)
            par.append(t.params / 1e6)
        out["GFLOPs"][label] = (list(values), gfl)
        out["params (M)"][label] = (list(values), par)
    return out
