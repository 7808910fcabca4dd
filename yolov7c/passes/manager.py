"""Pass registry, named pipelines (data), and the verifying pass manager.

``run_passes`` traces the model once (a private copy: the caller's module is never touched)
and runs each pass in order. After every pass the manager — not the pass — cleans up and
checks: dead-code elimination, a lint of the fx graph (``_fx.lint``: well-formed, no dead
code, no unused submodule, finite weights), and a comparison of the eval-mode outputs with
the original model's on the same random input. The first pass that breaks either stops the
pipeline with a ``PassError`` that names it — checks live here, not inside the passes.

Progress and results are logged on the ``yolov7c.passes`` logger: one INFO line per pass
(params, max abs / rel error), the module's code after each pass with ``print_after=True``,
and an ERROR line for the pass that failed.
"""
from __future__ import annotations

import copy
import logging
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import fx, nn

from ..errors import UserError
from ..ir.deploy import DEPLOY_STEPS
from . import _fx, dce, fold_batchnorm, fold_implicit, fuse_repconv, group_e_elan, prune_aux_head
from .base import Pass
from .verify import errors, example_input, head_outputs, ir_graph

log = logging.getLogger("yolov7c.passes")

PASSES: dict[str, Pass] = {p.name: p for p in (
    prune_aux_head.PASS, fold_implicit.PASS, fuse_repconv.PASS, fold_batchnorm.PASS, dce.PASS,
    group_e_elan.PASS)}  # group-e-elan: not in deploy; run it after (deploy,group-e-elan)

# Named pipelines are data: a name → the passes it runs, in order. Both come from the one
# deploy step list (``ir.deploy.DEPLOY_STEPS``) that the IR deploy form and the report use.
PIPELINES: dict[str, tuple[str, ...]] = {
    "deploy": tuple(s.name for s in DEPLOY_STEPS),
    "fuse": tuple(s.name for s in DEPLOY_STEPS if s.fused_only),
}

DEFAULT_RTOL = 1e-4  # max |out − ref| ≤ rtol · max |ref| over the raw head outputs (fp32)


@dataclass
class PassRecord:
    """What one pass did and what it cost in accuracy (errors are None when not verified)."""

    name: str
    modified: bool
    params_before: int
    params_after: int
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    seconds: float = 0.0
    changes: tuple[str, ...] = ()
    convs_before: int = 0   # conv call sites in the graph (group-e-elan lowers this)
    convs_after: int = 0


@dataclass
class PipelineResult:
    """The final module and one record per pass."""

    module: nn.Module
    pipeline: list[str]
    img: int | None
    params_before: int
    records: list[PassRecord] = field(default_factory=list)

    @property
    def params(self) -> int:
        return self.records[-1].params_after if self.records else self.params_before

    @property
    def max_rel_err(self) -> float | None:
        errs = [r.max_rel_err for r in self.records if r.max_rel_err is not None]
        return max(errs) if errs else None

    def as_dict(self, model: str, changes: bool = False) -> dict[str, Any]:
        """The ``passes --json`` object."""
        keys = ("name", "modified", "params_before", "params_after", "max_abs_err",
                "max_rel_err", "convs_before", "convs_after") + (("changes",) if changes else ())
        return {"model": model, "pipeline": self.pipeline, "img": self.img,
                "params_before": self.params_before, "params": self.params,
                "passes": [{k: asdict(r)[k] for k in keys} for r in self.records],
                "max_rel_err": self.max_rel_err}


class PassError(RuntimeError):
    """A pass broke equivalence or left a malformed graph; ``result`` holds the records up to
    and including it."""

    def __init__(self, message: str, record: PassRecord, result: PipelineResult) -> None:
        super().__init__(message)
        self.record, self.result = record, result


def resolve(pipeline: str | Sequence[str | Pass]) -> list[Pass]:
    """A pipeline name, a comma-separated list of pass names, or a list of names/Passes; a
    pipeline name inside a list stands for its passes (``deploy,group-e-elan``)."""
    if isinstance(pipeline, str):
        items: Sequence[str | Pass] = PIPELINES.get(pipeline) or [
            s.strip() for s in pipeline.split(",") if s.strip()]
    else:
        items = pipeline
    passes = []
    for item in items:
        if isinstance(item, str) and item in PIPELINES and item not in PASSES:
            passes.extend(PASSES[name] for name in PIPELINES[item])
        elif isinstance(item, Pass):
            passes.append(item)
        elif item in PASSES:
            passes.append(PASSES[item])
        else:
            raise UserError(f"unknown pass {item!r} in pipeline; passes: {', '.join(PASSES)}; "
                            f"pipelines: {', '.join(PIPELINES)}")
    if not passes:
        raise UserError("empty pipeline; name one of: " + ", ".join([*PIPELINES, *PASSES]))
    return passes


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    was_training = model.training
    try:
        return head_outputs(model.eval()(x))
    finally:
        model.train(was_training)


def _cleanup(gm: fx.GraphModule) -> tuple[str, ...]:
    """Dead-code elimination; what it removed."""
    return tuple(f"removed {t}" for t in dce.eliminate_dead(gm))


def run_passes(model: nn.Module, pipeline: str | Sequence[str | Pass] = "deploy", *,
               verify: bool = True, img: int | None = None, example: torch.Tensor | None = None,
               seed: int = 0, rtol: float = DEFAULT_RTOL, print_after: bool = False
               ) -> PipelineResult:
    """Run ``pipeline`` on a traced copy of ``model``; after every pass run dead-code
    elimination and the lint, and (``verify``) compare outputs with ``model``'s.

    ``example`` (or a seeded random image of side ``img``) is the verification input; the
    reference is ``model`` itself in eval mode. Raises ``PassError`` naming the first pass
    that leaves a malformed graph or whose relative error exceeds ``rtol``.
    """
    if not (isinstance(rtol, (int, float)) and rtol > 0):
        raise UserError(f"rtol {rtol!r}: must be a positive number (default {DEFAULT_RTOL:g})",
                        arg="rtol")
    passes = resolve(pipeline)
    x = example if example is not None else example_input(model, img, seed=seed)
    ref = _outputs(model, x) if verify else []
    source, prior = ir_graph(model), list(getattr(model, "meta", {}).get("yolov7c", {})
                                           .get("pipeline", []))
    gm = _fx.trace(copy.deepcopy(model))
    _cleanup(gm)  # the traced model's own trivial code (identity calls), before any pass
    result = PipelineResult(gm, [p.name for p in passes], x.shape[-1], _fx.param_count(gm))
    last: tuple[float, float] | None = None
    checked: dict[int, tuple[weakref.ref, int]] = {}  # tensors the lint found finite
    for p in passes:
        before, convs, t0 = _fx.param_count(gm), _conv_nodes(gm), time.perf_counter()
        out = p(gm)
        gm = out.graph_module
        removed = _cleanup(gm)
        if source is not None:
            prior.append(p.name)
            gm.meta["yolov7c"] = {"graph": source, "pipeline": list(prior)}
        record = PassRecord(p.name, out.modified or bool(removed), before, _fx.param_count(gm),
                            seconds=time.perf_counter() - t0, changes=out.changes + removed,
                            convs_before=convs, convs_after=_conv_nodes(gm))
        result.module = gm
        result.records.append(record)
        problem = _fx.lint(gm, checked)
        if problem is not None:
            _fail(f"pass {p.name!r} left a malformed graph: {problem}; pipeline stopped "
                  f"after it", record, result)
        if verify:  # an unmodified module computes what it did: reuse its errors
            if record.modified or last is None:
                last = errors(ref, _outputs(gm, x))
            record.max_abs_err, record.max_rel_err = last
            if not record.max_rel_err <= rtol:  # also catches NaN
                _fail(f"pass {p.name!r} broke equivalence: max abs error "
                      f"{record.max_abs_err:.3g}, relative {record.max_rel_err:.3g} > "
                      f"{rtol:g}; pipeline stopped after it", record, result)
        log.info("%-14s modified=%-5s params %s -> %s  max abs err %s  max rel err %s",
                 p.name, record.modified, f"{record.params_before:,}",
                 f"{record.params_after:,}", _fmt(record.max_abs_err), _fmt(record.max_rel_err))
        if print_after:
            log.info("module after %s:\n%s", p.name, gm.code)
    return result


def _conv_nodes(gm: fx.GraphModule) -> int:
    """Convolution call sites in ``gm``'s graph."""
    return sum(1 for n in gm.graph.nodes if _fx.calls_to(gm, n, nn.modules.conv._ConvNd))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _fail(message: str, record: PassRecord, result: PipelineResult) -> None:
    log.error(message)
    raise PassError(message, record, result)


def deploy(model: nn.Module, **kw: Any) -> fx.GraphModule:
    """The ``deploy`` pipeline's module (verified unless ``verify=False``)."""
    return run_passes(model, "deploy", **kw).module
