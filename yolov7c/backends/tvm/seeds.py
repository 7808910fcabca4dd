"""Seeded search: known-good tilings of NHWC convolutions, measured before the evolution.

MetaSchedule's evolutionary search starts from random points of a conv's design space; on
a 2-core CPU, after 60+ measured candidates the best tiling of yolov7-tiny's 3×3/2 conv
still kept one vector accumulator per inner loop (6.1 ms), while the register-blocked
tiling every hand-written x86 conv uses (a row of ``w4`` output pixels × ``oc4`` output
channels held in vector registers, the whole reduction inside) ran in 2.7 ms at the first
try. So the first round of every NHWC conv task measures a few such tilings; their records
enter the database, and the search's initial population (which draws on the database's
best) mutates around them.

The seeds are points of the task's own design space (the same trace, other decisions),
so the database, the postprocessors and the layout rewrite treat them like any candidate.

Kernels without a reduction (concats, transposes, the fused detect decode) are seeded with
their default CPU schedule (:mod:`.fallback`), measured like any candidate, so the
database never keeps a schedule slower than what an untuned build would run. The fused
decode (52 blocks in yolov7-tiny) is not searched at all (:func:`searchable`): each
generation of MetaSchedule's search took 2.5 minutes there, found one schedule, and that
one ran in 4.8 ms against the default's 1.6 ms.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

from .shapes import divisors
from .targets import AVX512, VectorFacts, vector_facts
from .winograd import candidate_schedules, is_winograd

# SSRSRS tiling of conv2d_nhwc's loops (n, h, w, oc, kh, kw, ic): 4-way spatial splits,
# 2-way reduction splits, in that order
CONV_TILE_PARTS = (4, 4, 4, 4, 2, 2, 2)
UNROLL_CHOICE = 1            # index into MetaSchedule's unroll candidates [0, 16, 64, 512]
MAX_VECTORIZE = 64           # MetaSchedule's vectorize extent for llvm (the trace's annotation)
# An injective kernel with more blocks keeps its default schedule. Blocks stand for the
# search's cost (each sampled candidate is postprocessed block by block): the fused decode
# of a P5 model has 52 (a fast_exp sigmoid is 11 of them), a BN + SiLU epilogue 16.
MAX_SEARCHED_BLOCKS = 40


def register_tiles(w: int, oc: int, vec: VectorFacts = AVX512) -> Iterator[tuple[int, int]]:
    """(w4, oc4) register blocks for a CPU with the vector unit ``vec``, best first: ``oc4``
    output channels in whole vectors where ``oc`` allows (two vectors first; else the
    largest divisor ≤ 4 vectors), ``w4`` the widest row that fits the accumulators."""
    lanes = vec.lanes
    ocs = [d for d in (2 * lanes, lanes, 4 * lanes) if oc % d == 0] or \
        [max(d for d in divisors(oc) if d <= 4 * lanes)]
    seen = set()
    for oc4 in ocs:
        vecs = -(-oc4 // lanes)
        fits = [d for d in divisors(w) if d * vecs <= vec.accumulators and d <= 16]
        for w4 in sorted(fits, reverse=True)[:2]:
            if (w4, oc4) not in seen:
                seen.add((w4, oc4))
                yield w4, oc4


def conv_decisions(extents: list[int], limit: int = 4,
                   vec: VectorFacts = AVX512) -> list[list[list[int]]]:
    """Tile decisions for conv loop extents (n, h, w, oc, kh, kw, ic): rows in parallel, a
    register block innermost, the reduction inside it whole (or in 64-channel slices when
    the weight block would not stay in L2)."""
    n, h, w, oc, kh, kw, ic = extents
    out: list[list[list[int]]] = []
    for w4, oc4 in register_tiles(w, oc, vec):
        slices = [ic]
        if kh * kw * ic * oc4 * 4 > 256 * 1024 and ic % 64 == 0:
            slices = [64, ic]
        # the innermost tile loops (w, oc) are fused into one vector loop when their
        # product fits MetaSchedule's vectorize extent. Where the channel tile is all the
        # channels, that loop runs over whole output pixels, and TVM 0.27 miscompiled it
        # (a 3->8 channel stride-2 conv read out of bounds: NaN); such a row goes one tile
        # level out instead, so only channels are vectorized. (With a partial channel
        # tile, as in yolov7's convs, the fused loop computed correctly: kept, it is
        # what the register blocking wants.)
        inner = oc4 == oc and w4 * oc4 <= MAX_VECTORIZE
        ws = [1, w // w4, w4, 1] if inner else [1, w // w4, 1, w4]
        for ic2 in slices:
            out.append([[n, 1, 1, 1], [h, 1, 1, 1], ws,
                        [1, oc // oc4, 1, oc4], [1, kh], [1, kw], [ic // ic2, ic2]])
    return out[:limit]


def _conv_tiles(trace) -> list | None:
    """The seven SamplePerfectTile instructions of an SSRSRS-tiled conv2d_nhwc trace."""
    tiles = [i for i in trace.insts if i.kind.name == "SamplePerfectTile"]
    if len(tiles) != len(CONV_TILE_PARTS):
        return None
    if [int(i.attrs[0]) for i in tiles] != list(CONV_TILE_PARTS):
        return None
    return tiles


def _extent(trace, inst) -> int:
    return math.prod(int(d) for d in trace.decisions[inst])


def seed_schedules(ctx, limit: int = 4) -> list:
    """Postprocessed schedules of ``ctx``'s task at the seed tilings ([] for tasks that are
    not NHWC convolutions)."""
    from tvm.s_tir import Schedule
    if "conv2d_nhwc" not in ctx.mod.script(show_meta=False):
        return []
    out = []
    spaces = ctx.space_generator.generate_design_space(ctx.mod)
    # spaces that compute the epilogue inside the tile first (one pass over the output)
    spaces = sorted(spaces, key=lambda sp: "ReverseComputeAt" not in
                    [i.kind.name for i in sp.trace.insts])
    per_space = max(1, limit // max(1, len(spaces) - 1))
    vec = vector_facts(ctx.target)
    for space in spaces:
        trace = space.trace
        tiles = _conv_tiles(trace)
        if tiles is None:
            continue
        unroll = [i for i in trace.insts if i.kind.name == "SampleCategorical"]
        for decisions in conv_decisions([_extent(trace, t) for t in tiles], per_space, vec):
            t = trace
            for inst, d in zip(tiles, decisions):
                t = t.with_decision(inst, d, remove_postproc=True)
            if unroll:
                t = t.with_decision(unroll[0], UNROLL_CHOICE, remove_postproc=True)
            sch = Schedule(ctx.mod)
            try:
                t.apply_to_schedule(sch, remove_postproc=True)
            except Exception:  # noqa: BLE001 - a tiling this space cannot express: skip it
                continue
            sch.enter_postproc()   # a replay (the search's, the build's) strips what follows
            if all(p.apply(sch) for p in ctx.space_generator.postprocs):
                out.append(sch)
        if len(out) >= limit:
            break
    return out[:limit]


def _injective_blocks(mod) -> int | None:
    """Blocks of an injective PrimFunc (None when some block reduces: a conv, a pool)."""
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    infos = normalize_prim_func(s_tir.Schedule(mod))
    if infos is None or any("R" in i.dom_kind() for i in infos):
        return None
    return len(infos)


def searchable(ctx) -> bool:
    """False for a large injective kernel, which keeps its (measured) default schedule, and
    for a Winograd kernel, whose candidates are its parameter points (:mod:`.winograd`)."""
    if is_winograd(ctx.mod["main"]):
        return False
    n = _injective_blocks(ctx.mod)
    return n is None or n <= MAX_SEARCHED_BLOCKS


def fallback_schedule(ctx):
    """The default CPU schedule of an injective task as a postprocessed, replayable
    schedule (None for a task with a reduction)."""
    from .fallback import cpu_fallback
    if _injective_blocks(ctx.mod) is None:
        return None
    sch = cpu_fallback().apply(ctx.mod["main"], ctx.target, False)
    if sch is None:
        return None
    sch.enter_postproc()
    return sch if all(p.apply(sch) for p in ctx.space_generator.postprocs) else None


def measure_seeds(ctx, builder, runner, database, limit: int = 4) -> int:
    """Build, time (on the CPU ``runner`` measures) and commit the seed tilings of ``ctx``'s
    task (its default schedule, for an injective task; every parameter point, for a
    Winograd task); returns the records added."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.database import TuningRecord
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    schs = candidate_schedules(ctx) or seed_schedules(ctx, limit)
    fallback = fallback_schedule(ctx) if not schs else None
    if fallback is not None:
        schs = [fallback]
    if not schs:
        return 0
    args = [ArgInfo.from_entry_func(s.mod, remove_preproc=True) for s in schs]
    built = builder.build([BuilderInput(s.mod, ctx.target) for s in schs])
    todo = [(s, a, b) for s, a, b in zip(schs, args, built) if b.error_msg is None]
    futures = runner.run([RunnerInput(b.artifact_path, "cpu", a) for _, a, b in todo])
    workload = database.commit_workload(ctx.mod)
    added = 0
    for (s, a, _), fut in zip(todo, futures):
        res = fut.result()
        if res.error_msg is None and res.run_secs:
            database.commit_tuning_record(TuningRecord(s.trace, workload, res.run_secs,
                                                       ctx.target, a))
            added += 1
    if hasattr(builder, "cleanup"):
        builder.cleanup()
    return added


def light_context(mod, target, task_name: str = "main", seed: int = 0):
    """A ``TuneContext`` that can generate ``mod``'s design space, without the search.

    ``TuneContext.__init__`` imports ``tvm.s_tir.tensor_intrin`` (every tensor intrinsic of
    every target: 47 s of CPU on this project's 2-core machines, for fp32 CPU kernels that
    tensorize nothing), so this builds the context through its FFI constructor with the
    plain LLVM rules, which name no intrinsic. For an untuned build's seeds, never for
    tuning (the tuner's contexts keep TVM's own rules for the target)."""
    from tvm.s_tir.meta_schedule import TuneContext, _ffi_api
    from tvm.s_tir.meta_schedule.logging import get_logger, get_logging_func
    from tvm.s_tir.meta_schedule.space_generator import PostOrderApply
    space = PostOrderApply(sch_rules="llvm", postprocs="llvm", mutator_probs="llvm")
    ctx = TuneContext.__new__(TuneContext)
    ctx.__init_handle_by_constructor__(_ffi_api.TuneContext, mod, target, space, None,
                                       task_name, 1, seed,
                                       get_logging_func(get_logger("yolov7c.tvm.seeds")))
    _ffi_api.TuneContextInitialize(ctx)
    return ctx


SEED_RUN_SECS = 1.0     # an unmeasured seed's "time": worse than any measured record


def seed_database(fused, target, tuned: Any | None = None):
    """An in-memory database holding, for each NHWC convolution task of the fused module
    that ``tuned`` (a tuning database, or None) has no record of, its first seed tiling
    (unmeasured: the register-blocked tiling :func:`register_tiles` ranks first for the
    target's vector unit). Returns (database, tasks seeded).

    This is what makes an untuned CPU build sane: without it every conv runs as written
    (one scalar loop nest per output element, 28x slower than onnxruntime on yolov7-tiny at
    416); with it convs run register-blocked and in parallel. Other kernels get the
    default rules of the build (:mod:`.fallback`, the Winograd first point)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.database import TuningRecord
    db = ms.database.MemoryDatabase(module_equality="structural")
    n = 0
    for task in ms.relax_integration.extract_tasks(fused, target):
        mod = task.dispatched[0]
        if "conv2d_nhwc" not in mod.script(show_meta=False):
            continue
        if tuned is not None and tuned.has_workload(mod) and \
                tuned.get_top_k(tuned.commit_workload(mod), 1):
            continue
        schs = seed_schedules(light_context(mod, target, task.task_name), limit=1)
        if not schs:
            continue
        sch = schs[0]
        db.commit_tuning_record(TuningRecord(
            sch.trace, db.commit_workload(mod), [SEED_RUN_SECS], target,
            ArgInfo.from_entry_func(sch.mod, remove_preproc=True)))
        n += 1
    return db, n


__all__ = ["conv_decisions", "fallback_schedule", "measure_seeds", "register_tiles",
           "searchable", "seed_database", "seed_schedules"]
