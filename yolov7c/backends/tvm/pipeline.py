"""The Relax pass lists tuning and building share, so database keys match on both sides.

Three pipelines:

- ``"nhwc"`` (default for new CPU databases): the graph rewrites of :mod:`.rewrites` first
  (SPP max-pools chained, leaky_relu as max, convolutions in NHWC/OHWI), then as
  ``"prepack"``. Channels innermost let a conv schedule vectorize over output channels;
  the tuner seeds these conv tasks with register-blocked tilings (:mod:`.seeds`).
- ``"prepack"``: the fused module gets its weights marked
  layout-free (``AttachAttrLayoutFreeBuffers``), so MetaSchedule's ``RewriteLayout``
  postprocessor may store each conv's weight in whatever blocked layout its schedule reads
  fastest. At build time the rewrite is split out (``SplitLayoutRewritePreproc``) and,
  since the weights are constants, folded away (``FoldConstant``): the library carries
  pre-packed weights, as onnxruntime's does, and pays nothing per call.
- ``"zero"``: TVM's plain "zero" pipeline (weights stay OIHW). Databases written before
  the prepack pipeline existed are "zero" ones and keep building with it.

Functions that the database does not cover get a default schedule: dlight's rules on GPU
targets, :mod:`.fallback` (outer loops in parallel) on CPU.
"""
from __future__ import annotations

from typing import Any

from .fallback import cpu_fallback

PIPELINES = ("nhwc", "prepack", "zero")
PREPACKED = ("nhwc", "prepack")          # pipelines whose weights MetaSchedule may re-layout


def _rewrite(mod, pipeline: str):
    """The graph rewrites of ``pipeline`` (:mod:`.rewrites`), before fusion."""
    if pipeline != "nhwc":
        return mod
    from . import rewrites
    return rewrites.to_nhwc(rewrites.chain_same_pools(mod))


def _fuse_passes(target, pipeline: str) -> list:
    from tvm import relax
    from tvm.relax import pipeline as rp
    try:
        dispatch = rp.library_dispatch_passes(target)
    except (ValueError, AttributeError):
        dispatch = []
    passes = [*dispatch, relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
              relax.transform.FoldConstant(), relax.transform.FuseOps(),
              relax.transform.FuseTIR()]
    if pipeline in PREPACKED:
        passes.append(relax.transform.AttachAttrLayoutFreeBuffers())
    return passes


def check(pipeline: str) -> str:
    if pipeline not in PIPELINES:
        from ...errors import UserError
        raise UserError(f"pipeline {pipeline!r}: use one of {', '.join(PIPELINES)}",
                        arg="pipeline")
    return pipeline


def tuning_module(mod, target, pipeline: str):
    """The fused module whose PrimFuncs are the tuning tasks (and the database keys)."""
    import tvm
    with target:
        return tvm.transform.Sequential(_fuse_passes(target, check(pipeline)))(
            _rewrite(mod, pipeline))


def build(mod, target, pipeline: str, database: Any | None = None,
          default_schedules: bool = True):
    """Relax module → VMExecutable: fuse, apply ``database`` (if any), prepack, default
    schedules for what is left (``default_schedules=False``: CPU kernels stay as written,
    for measuring what the defaults bring), then TVM's default lowering (``tvm.compile``)."""
    import contextlib

    import tvm
    from tvm import relax
    from tvm.relax import pipeline as rp
    from tvm.s_tir import dlight as dl

    check(pipeline)
    with contextlib.ExitStack() as stack:
        stack.enter_context(target)
        if database is not None:
            stack.enter_context(database)
        stack.enter_context(tvm.transform.PassContext(opt_level=3))
        m = tvm.transform.Sequential(_fuse_passes(target, pipeline))(_rewrite(mod, pipeline))
        if database is not None:
            m = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(m)
        if pipeline in PREPACKED:
            m = tvm.transform.Sequential([
                relax.transform.SplitLayoutRewritePreproc(),
                relax.transform.LiftTransformParams(),
                relax.transform.FoldConstant()])(m)
        if rp.BackendDispatcher.is_gpu_target(target):
            m = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                        dl.gpu.GeneralReduction(), dl.gpu.Fallback())(m)
        elif target.kind.name == "llvm" and default_schedules:
            m = dl.ApplyDefaultSchedule(cpu_fallback())(m)
        return tvm.compile(m, target)


def extract_tasks(mod, target, pipeline: str):
    """MetaSchedule's extracted tasks of ``mod`` under ``pipeline`` (weights in task order)."""
    from tvm.s_tir import meta_schedule as ms
    return ms.relax_integration.extract_tasks(tuning_module(mod, target, pipeline), target)
