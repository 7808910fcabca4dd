"""The Relax pass lists tuning and building share, so database keys match on both sides.

A pipeline is data (:class:`Pipeline`): which graph rewrites run before fusion, how
``sigmoid`` is computed, whether MetaSchedule may re-layout the weights and whether conv
tasks get seeded tilings. It runs as passes: its rewrites (:func:`rewrite_passes`, each a
named ``yolov7c.*`` module pass) and fusion as one ``Sequential`` (:func:`passes`) under a
``PassContext`` that takes the caller's pass instruments, so TVM's timing and IR-dump
instruments see the project's passes as they see TVM's.

A database records its pipeline's name and is always built with it; a pipeline, once
shipped, never changes meaning (a change is a new name), so an old database keeps building
to what it was tuned for.

- ``"nhwc-winograd"`` (default for new CPU databases): ``"nhwc-fastexp"`` with every
  eligible 3×3 stride-1 convolution computed as Winograd F(4×4, 3×3) (:mod:`.winograd`:
  4× fewer multiplies, one fused kernel per conv, its candidates a few measured parameter
  points instead of a search). The other kernels are those of ``"nhwc-fastexp"``, the same
  PrimFuncs, so their database keys are the same too.
- ``"nhwc-fastexp"``: ``"nhwc"`` with ``sigmoid`` computed
  as ``1 / (1 + fast_exp(-x))`` (:func:`fast_sigmoid`). TVM's own ``sigmoid`` calls the C
  library's scalar ``expf`` per element: in a SiLU model every conv's epilogue, in every
  model the decode. ``topi.fast_exp`` (range reduction, a polynomial, the exponent built in
  the bits) vectorizes; its error against float64 is that of ``expf`` (~1e-7 relative).
- ``"nhwc"``: the graph rewrites of :mod:`.rewrites` first (SPP max-pools chained,
  leaky_relu as max, convolutions in NHWC/OHWI), then as ``"prepack"``. Channels innermost
  let a conv schedule vectorize over output channels; the tuner seeds these conv tasks
  with register-blocked tilings (:mod:`.seeds`).
- ``"prepack"``: the fused module gets its weights marked
  layout-free (``AttachAttrLayoutFreeBuffers``), so MetaSchedule's ``RewriteLayout``
  postprocessor may store each conv's weight in whatever blocked layout its schedule reads
  fastest. At build time the rewrite is split out (``SplitLayoutRewritePreproc``) and,
  since the weights are constants, folded away (``FoldConstant``): the library carries
  pre-packed weights, as onnxruntime's does, and pays nothing per call.
- ``"zero"``: TVM's plain "zero" pipeline (weights stay OIHW). Databases written before
  the prepack pipeline existed are "zero" ones and keep building with it.

Functions that the database does not cover get a default schedule: dlight's rules on GPU
targets; on CPU, with a seeding pipeline, each NHWC conv its first seed tiling
(:func:`.seeds.seed_database`) and every other kernel :mod:`.fallback` (outer loops in
parallel). An untuned CPU build uses the default pipeline (:data:`CPU_DEFAULT`) this way.

Channel multiples (the detect head's padding, Winograd eligibility, vector splits) come
from the target's vector unit (``targets.vector_facts``: 16 fp32 lanes on AVX-512, 8 on
AVX2, 4 on NEON), so a pipeline means the same on every CPU of one vector class.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from .fallback import cpu_fallback


@dataclass(frozen=True)
class Pipeline:
    """What a pipeline does before MetaSchedule sees the kernels (see the module doc)."""
    name: str
    nhwc: bool = False        # the graph rewrites of :mod:`.rewrites` (NHWC convs, ...)
    prepack: bool = False     # weights layout-free: RewriteLayout at tune, folded at build
    fast_exp: bool = False    # sigmoid through topi.fast_exp (vectorizes) instead of expf
    seeds: bool = False       # first rounds: register-blocked conv tilings, measured
    #                           default schedules of injective kernels (:mod:`.seeds`)
    winograd: bool = False    # 3×3 stride-1 convs as Winograd F(4×4, 3×3) (:mod:`.winograd`)


_ALL = (Pipeline("nhwc-winograd", nhwc=True, prepack=True, fast_exp=True, seeds=True,
                 winograd=True),
        Pipeline("nhwc-fastexp", nhwc=True, prepack=True, fast_exp=True, seeds=True),
        Pipeline("nhwc", nhwc=True, prepack=True, seeds=True),
        Pipeline("prepack", prepack=True),
        Pipeline("zero"))
PIPELINES: dict[str, Pipeline] = {p.name: p for p in _ALL}
CPU_DEFAULT = "nhwc-winograd"     # a new CPU database
GPU_DEFAULT = "zero"              # a new GPU database (dlight / MetaSchedule's own layouts)


def default_for(target_kind: str) -> str:
    """The pipeline a new database for a ``target_kind`` ("llvm", "cuda", ...) gets."""
    return CPU_DEFAULT if target_kind == "llvm" else GPU_DEFAULT


def check(pipeline: str) -> str:
    if pipeline not in PIPELINES:
        from ...errors import UserError
        raise UserError(f"pipeline {pipeline!r}: use one of {', '.join(PIPELINES)}",
                        arg="pipeline")
    return pipeline


def get(pipeline: str) -> Pipeline:
    return PIPELINES[check(pipeline)]


def fast_sigmoid(bb, call):
    """Legalization of ``relax.sigmoid`` as ``1 / (1 + fast_exp(-x))`` (float32; other
    dtypes keep TVM's ``sigmoid``)."""
    from tvm import te, tirx, topi
    x = call.args[0]

    def sigmoid(t):
        if t.dtype != "float32":
            return topi.sigmoid(t)
        e = topi.fast_exp(topi.negative(t))
        one = tirx.const(1.0, t.dtype)
        return te.compute(t.shape, lambda *i: one / (one + e(*i)), name="T_sigmoid",
                          tag=topi.tag.ELEMWISE)

    return bb.call_te(sigmoid, x, primfunc_name_hint="tir_sigmoid")


def rewrite_passes(target, pipeline: str) -> list:
    """The graph rewrites of ``pipeline`` as passes, in order (:mod:`.rewrites`, then
    :mod:`.winograd`; none for a pipeline without ``nhwc``); channel multiples from
    ``target``'s vector lanes (16 on AVX-512, 8 on AVX2, 4 on NEON)."""
    p = get(pipeline)
    if not p.nhwc:
        return []
    from . import rewrites, winograd
    from .targets import vector_facts
    lanes = vector_facts(target).lanes
    out = [rewrites.ChainSamePools(), rewrites.ToNHWC(lanes)]
    if p.winograd:
        out.append(winograd.WinogradConv2D(lanes))
    return out


def _fuse_passes(target, pipeline: str) -> list:
    from tvm import relax
    from tvm.relax import pipeline as rp
    p = get(pipeline)
    try:
        dispatch = rp.library_dispatch_passes(target)
    except (ValueError, AttributeError):
        dispatch = []
    legalize = relax.transform.LegalizeOps(
        {"relax.sigmoid": fast_sigmoid} if p.fast_exp else None)
    passes = [*dispatch, legalize, relax.transform.AnnotateTIROpPattern(),
              relax.transform.FoldConstant(), relax.transform.FuseOps(),
              relax.transform.FuseTIR()]
    if p.prepack:
        passes.append(relax.transform.AttachAttrLayoutFreeBuffers())
    return passes


def passes(target, pipeline: str):
    """``pipeline`` up to its tuning tasks, one ``Sequential`` named
    ``yolov7c.pipeline.<name>``: the rewrites (:func:`rewrite_passes`), then fusion."""
    import tvm
    return tvm.transform.Sequential([*rewrite_passes(target, pipeline),
                                     *_fuse_passes(target, pipeline)],
                                    name=f"yolov7c.pipeline.{pipeline}")


@contextlib.contextmanager
def _context(target, instruments: Sequence[Any]) -> Iterator[None]:
    """The target and the ``PassContext`` (opt level 3, the caller's pass instruments:
    ``tvm.ir.instrument.PassTimingInstrument``, ``PrintAfterAll``...) tuning and building
    run their passes in, so both see the same passes."""
    import tvm
    with target, tvm.transform.PassContext(opt_level=3, instruments=list(instruments)):
        yield


def tuning_module(mod, target, pipeline: str, instruments: Sequence[Any] = ()):
    """The fused module whose PrimFuncs are the tuning tasks (and the database keys)."""
    with _context(target, instruments):
        return passes(target, check(pipeline))(mod)


def build(mod, target, pipeline: str, database: Any | None = None,
          default_schedules: bool = True, instruments: Sequence[Any] = ()) -> tuple[Any, int]:
    """Relax module → (VMExecutable, conv tasks that got a seed tiling): the pipeline's
    passes, ``database``'s schedules (if any), prepack, default schedules for what is left,
    then TVM's default lowering (``tvm.compile``), all under one ``PassContext`` with the
    caller's ``instruments``.

    Default schedules (``default_schedules=False``: CPU kernels stay as written, for
    measuring what the defaults bring): on CPU, for a pipeline with seeds, each NHWC conv
    the database does not cover gets its first seed tiling (:func:`.seeds.seed_database`:
    register-blocked, parallel, prepacked weights like a tuned record), a Winograd kernel
    its first parameter point, everything else :mod:`.fallback`; dlight's rules on GPU."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline as rp
    from tvm.s_tir import dlight as dl

    p = get(pipeline)
    cpu = target.kind.name == "llvm"
    seeded = 0
    with _context(target, instruments):
        m = passes(target, pipeline)(mod)
        if cpu and p.seeds and default_schedules:
            from tvm.s_tir.meta_schedule.database import OrderedUnionDatabase

            from .seeds import seed_database
            seeds_db, seeded = seed_database(m, target, database)
            database = seeds_db if database is None else OrderedUnionDatabase(database,
                                                                              seeds_db)
        if database is not None:
            with database:
                m = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(m)
        if p.prepack:
            m = tvm.transform.Sequential([
                relax.transform.SplitLayoutRewritePreproc(),
                relax.transform.LiftTransformParams(),
                relax.transform.FoldConstant()])(m)
        if rp.BackendDispatcher.is_gpu_target(target):
            m = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                        dl.gpu.GeneralReduction(), dl.gpu.Fallback())(m)
        elif cpu and default_schedules:
            from .winograd import default_rule
            m = dl.ApplyDefaultSchedule(default_rule(), cpu_fallback())(m)
        return tvm.compile(m, target), seeded


def extract_tasks(mod, target, pipeline: str, fused: Any | None = None):
    """MetaSchedule's extracted tasks of ``mod`` under ``pipeline`` (weights in task order);
    ``fused``: ``tuning_module(mod, target, pipeline)``, when the caller has it already."""
    from tvm.s_tir import meta_schedule as ms
    if fused is None:
        fused = tuning_module(mod, target, pipeline)
    return ms.relax_integration.extract_tasks(fused, target)
