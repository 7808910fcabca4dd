"""Pass registry, named pipelines (data), and the verifying pass manager.

``run_passes`` traces the model once (a private copy: the caller's module is never touched),
runs each pass in order, and after every pass compares the eval-mode outputs with the
original model's on the same random input. The first pass that breaks equivalence stops the
pipeline with a ``PassError`` that names it — checks live here, not inside the passes.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import fx, nn

from ..errors import UserError
from . import _fx, dce, fold_batchnorm, fold_implicit, fuse_repconv, prune_aux_head
from .base import Pass
from .verify import errors, example_input, head_outputs, ir_graph

PASSES: dict[str, Pass] = {p.name: p for p in (
    prune_aux_head.PASS, fold_implicit.PASS, fuse_repconv.PASS, fold_batchnorm.PASS, dce.PASS)}

# Named pipelines are data: a name → the passes it runs, in order.
PIPELINES: dict[str, tuple[str, ...]] = {
    "deploy": ("prune-aux", "fold-implicit", "fuse-repconv", "fold-bn", "dce"),
    "fuse": ("fuse-repconv", "fold-bn"),
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
                "max_rel_err") + (("changes",) if changes else ())
        return {"model": model, "pipeline": self.pipeline, "img": self.img,
                "params_before": self.params_before, "params": self.params,
                "passes": [{k: asdict(r)[k] for k in keys} for r in self.records],
                "max_rel_err": self.max_rel_err}


class PassError(RuntimeError):
    """A pass broke equivalence; ``result`` holds the records up to and including it."""

    def __init__(self, record: PassRecord, rtol: float, result: PipelineResult) -> None:
        super().__init__(f"pass {record.name!r} broke equivalence: max abs error "
                         f"{record.max_abs_err:.3g}, relative {record.max_rel_err:.3g} > "
                         f"{rtol:g}; pipeline stopped after it")
        self.record, self.result = record, result


def resolve(pipeline: str | Sequence[str | Pass]) -> list[Pass]:
    """A pipeline name, a comma-separated list of pass names, or a list of names/Passes."""
    if isinstance(pipeline, str):
        items: Sequence[str | Pass] = PIPELINES.get(pipeline) or [
            s.strip() for s in pipeline.split(",") if s.strip()]
    else:
        items = pipeline
    passes = []
    for item in items:
        if isinstance(item, Pass):
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


def run_passes(model: nn.Module, pipeline: str | Sequence[str | Pass] = "deploy", *,
               verify: bool = True, img: int | None = None, example: torch.Tensor | None = None,
               seed: int = 0, rtol: float = DEFAULT_RTOL,
               print_after: Callable[[str, fx.GraphModule], None] | None = None
               ) -> PipelineResult:
    """Run ``pipeline`` on a traced copy of ``model``, verifying after every pass.

    ``example`` (or a seeded random image of side ``img``) is the verification input; the
    reference is ``model`` itself in eval mode. Raises ``PassError`` naming the first pass
    whose relative error exceeds ``rtol``.
    """
    passes = resolve(pipeline)
    x = example if example is not None else example_input(model, img, seed=seed)
    ref = _outputs(model, x) if verify else []
    source, prior = ir_graph(model), list(getattr(model, "meta", {}).get("yolov7c", {})
                                           .get("pipeline", []))
    gm = _fx.trace(copy.deepcopy(model))
    result = PipelineResult(gm, [p.name for p in passes], x.shape[-1], _fx.param_count(gm))
    last: tuple[float, float] | None = None
    for p in passes:
        before, t0 = _fx.param_count(gm), time.perf_counter()
        out = p(gm)
        gm = out.graph_module
        if source is not None:
            prior.append(p.name)
            gm.meta["yolov7c"] = {"graph": source, "pipeline": list(prior)}
        record = PassRecord(p.name, out.modified, before, _fx.param_count(gm),
                            seconds=time.perf_counter() - t0, changes=out.changes)
        result.module = gm
        result.records.append(record)
        if verify:  # an unmodified module computes what it did: reuse its errors
            if out.modified or last is None:
                last = errors(ref, _outputs(gm, x))
            record.max_abs_err, record.max_rel_err = last
            if not record.max_rel_err <= rtol:  # also catches NaN
                raise PassError(record, rtol, result)
        if print_after is not None:
            print_after(p.name, gm)
    return result


def deploy(model: nn.Module, **kw: Any) -> fx.GraphModule:
    """The ``deploy`` pipeline's module (verified unless ``verify=False``)."""
    return run_passes(model, "deploy", **kw).module
