"""The zoo table: our counts next to the official implementation's and the paper's rows.

Four model forms per model, each the counterpart of one official measurement:

- ``training``        the training cfg as built                  (zoo graph)
- ``training fused``  the training cfg after official ``model.fuse()``: BN folded, RepConv
                      fused, implicit vectors folded (their parameters still counted), and
                      the aux head's parameters kept but its convs skipped by the fused
                      forward, so they count in params and not in FLOPs
- ``deploy``          the deploy cfg as built                    (``to_deploy(fuse=False)``)
- ``deploy fused``    the deploy cfg after ``model.fuse()``      (``to_deploy()``)

A row matches when params are equal and every convention's FLOPs equal the official GFLOPs
× 1e9 rounded to an integer (thop's float sums carry ~1e-16 relative noise). Mismatches are
listed, never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from .. import zoo
from ..ir import deploy as ird
from ..ir.analysis import CONVENTIONS, analyze
from ..ir.graph import Graph
from .grouping import total
from .reference_figures import CONVENTION_KEYS, OFFICIAL, PAPER_ROWS, PaperRow
from .tables import Table

FORMS = ("training", "training fused", "deploy", "deploy fused")


@lru_cache(maxsize=None)
def _graphs(model: str) -> dict[str, tuple[Graph, Graph]]:
    """form -> (graph counted for params, graph counted for FLOPs)."""
    g = zoo.get(model)
    # the official model.fuse() on the training cfg: the fused-only deploy steps
    tf = ird.run_steps(g, [s.name for s in ird.DEPLOY_STEPS if s.fused_only])
    dep, depf = ird.to_deploy(g, fuse=False), ird.to_deploy(g)
    return {"training": (g, g), "training fused": (tf, ird.detach_aux(tf)),
            "deploy": (dep, dep), "deploy fused": (depf, depf)}


@lru_cache(maxsize=None)
def counts(model: str, form: str, img: int) -> tuple[int, dict[str, int]]:
    """Our (params, {convention: FLOPs}) of zoo ``model`` in official form ``form``."""
    pg, fg = _graphs(model)[form]
    return total(analyze(pg, img)).params, dict(total(analyze(fg, img)).flops)


@dataclass(frozen=True)
class OfficialRow:
    """One official measurement (cfg, form, img) next to ours."""

    model: str
    cfg: str
    form: str
    img: int
    params: int
    params_official: int
    flops: Mapping[str, int]
    gflops_official: Mapping[str, float]

    @property
    def match(self) -> bool:
        return self.params == self.params_official and all(
            self.flops[c] == round(self.gflops_official[c] * 1e9) for c in CONVENTIONS)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "cfg": self.cfg, "form": self.form, "img": self.img,
                "params": self.params, "params_official": self.params_official,
                "gflops": {c: self.flops[c] / 1e9 for c in CONVENTIONS},
                "gflops_official": dict(self.gflops_official), "match": self.match}


def official_rows() -> list[OfficialRow]:
    """Every figure of ``OFFICIAL`` with our count of the same model form."""
    out = []
    for model in zoo.names():
        e = zoo.entry(model)
        for cfg in (e.official_training, e.official_deploy):
            if cfg is None or cfg not in OFFICIAL:
                continue
            fig = OFFICIAL[cfg]
            base = cfg.split("/")[0]
            for img in fig["gflops"]:
                for fused in (False, True):
                    pre = "fused_" if fused else ""
                    form = base + (" fused" if fused else "")
                    params, flops = counts(model, form, img)
                    out.append(OfficialRow(model, cfg, form, img, params, fig[pre + "params"],
                                           flops, {c: fig[pre + k][img]
                                                   for c, k in CONVENTION_KEYS.items()}))
    return out


@dataclass(frozen=True)
class PaperMatch:
    """A paper row, the form that reproduces it, our numbers and whether they round alike."""

    row: PaperRow
    img: int
    gflops_paper: float
    params: int
    gflops: float

    @property
    def params_match(self) -> bool:
        return round(self.params / 1e6, 1) == self.row.params_m

    @property
    def gflops_match(self) -> bool:
        return round(self.gflops, 1) == self.gflops_paper

    def as_dict(self) -> dict[str, Any]:
        r = self.row
        return {"paper_row": r.label, "model": r.model, "img": self.img,
                "paper_params_m": r.params_m, "paper_gflops": self.gflops_paper,
                "cfg": r.cfg, "fused": r.fused, "convention": r.convention,
                "params": self.params, "gflops": self.gflops,
                "params_match": self.params_match, "gflops_match": self.gflops_match,
                "note": r.note}


def paper_rows() -> list[PaperMatch]:
    """Every printed paper figure with our count of the model form that reproduces it."""
    out = []
    for r in PAPER_ROWS:
        form = r.cfg.split("/")[0] + (" fused" if r.fused else "")
        for img, g in r.gflops.items():
            params, flops = counts(r.model, form, img)
            out.append(PaperMatch(r, img, g, params, flops[r.convention] / 1e9))
    return out


def zoo_dict() -> dict[str, Any]:
    """The ``report --zoo --json`` object."""
    off, pap = official_rows(), paper_rows()
    return {"official": [r.as_dict() for r in off], "paper": [p.as_dict() for p in pap],
            "official_mismatches": sum(not r.match for r in off),
            "paper_mismatches": sum(not (p.params_match and p.gflops_match) for p in pap),
            "conventions": list(CONVENTIONS)}


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗ MISMATCH"


def zoo_tables() -> list[Table]:
    """The paper-rows table (the summary) and the official-figures table."""
    cols = ["cfg", "img", "form", "params", "params official"]
    for c in CONVENTIONS:
        cols += [f"GFLOPs {c}", f"{c} official"]
    cols.append("match")
    off = official_rows()
    rows = []
    for r in off:
        line: list[Any] = [r.cfg, str(r.img), r.form, r.params, r.params_official]
        for c in CONVENTIONS:
            line += [r.flops[c] / 1e9, r.gflops_official[c]]
        rows.append(line + [_mark(r.match)])
    bad = sum(not r.match for r in off)
    t1 = Table("Zoo vs the official implementation", cols, rows,
               ["l", "r", "l"] + ["r"] * (len(cols) - 4) + ["l"],
               f"{len(off) - bad}/{len(off)} official measurements reproduced exactly "
               "(params equal, FLOPs equal to the integer). 'fused' = after the official "
               "model.fuse().")
    pcols = ["paper row", "img", "paper params (M)", "paper GFLOPs", "reproduced by",
             "convention", "ours params", "ours GFLOPs", "params", "GFLOPs", "note"]
    prow = []
    for p in paper_rows():
        r = p.row
        prow.append([r.label, str(p.img), f"{r.params_m}", f"{p.gflops_paper}",
                     f"{r.cfg} ({'fused' if r.fused else 'as built'})", r.convention,
                     p.params, round(p.gflops, 4), _mark(p.params_match),
                     _mark(p.gflops_match), r.note])
    t2 = Table("Paper rows and the official model form that gives each", pcols, prow,
               ["l", "r", "r", "r", "l", "l", "r", "r", "l", "l", "l"],
               "A paper figure matches when ours rounds to the printed digit; rows the paper "
               "printed differently from any count are marked, with the nearest counts in the "
               "note.")
    return [t2, t1]
