"""The Relax pass lists tuning and building share, so database keys match on both sides.

Two pipelines:

- ``"prepack"`` (default for new databases): the fused module gets its weights marked
  layout-free (``AttachAttrLayoutFreeBuffers``), so MetaSchedule's ``RewriteLayout``
  postprocessor may store each conv's weight in whatever blocked layout its schedule reads
  fastest. At build time the rewrite is split out (``SplitLayoutRewritePreproc``) and,
  since the weights are constants, folded away (``FoldConstant``): the library carries
  pre-packed weights, as onnxruntime's does, and pays nothing per call.
- ``"zero"``: TVM's plain "zero" pipeline (weights stay OIHW). Databases written before
  the prepack pipeline existed are "zero" ones and keep building with it.

Functions that the database does not cover stay unscheduled on CPU (TVM has no CPU
fallback schedule for conv2d); on GPU targets dlight schedules them.
"""
from __future__ import annotations

from typing import Any

PIPELINES = ("prepack", "zero")


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
    if pipeline == "prepack":
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
        return tvm.transform.Sequential(_fuse_passes(target, check(pipeline)))(mod)


def build(mod, target, pipeline: str, database: Any | None = None):
    """Relax module → VMExecutable: fuse, apply ``database`` (if any), prepack, then TVM's
    default lowering (``tvm.compile``)."""
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
        m = tvm.transform.Sequential(_fuse_passes(target, pipeline))(mod)
        if database is not None:
            m = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(m)
        if pipeline == "prepack":
            m = tvm.transform.Sequential([
                relax.transform.SplitLayoutRewritePreproc(),
                relax.transform.LiftTransformParams(),
                relax.transform.FoldConstant()])(m)
        if rp.BackendDispatcher.is_gpu_target(target):
            m = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                        dl.gpu.GeneralReduction(), dl.gpu.Fallback())(m)
        return tvm.compile(m, target)


def extract_tasks(mod, target, pipeline: str):
    """MetaSchedule's extracted tasks of ``mod`` under ``pipeline`` (weights in task order)."""
    from tvm.s_tir import meta_schedule as ms
    return ms.relax_integration.extract_tasks(tuning_module(mod, target, pipeline), target)
