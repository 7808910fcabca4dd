"""A default CPU schedule for kernels the tuning database does not cover.

TVM 0.27 has no CPU counterpart of dlight's GPU fallback: a kernel without a record runs as
written, one scalar loop nest on one core (the untuned yolov7-tiny took 2.8 s where
onnxruntime takes 25 ms). This rule inlines what can be inlined, then runs each remaining
block's outer spatial loops in parallel and leaves the innermost loop to LLVM's vectorizer.
No search: a partly tuned database (a run cut short, a model with one new kernel) builds
into a library whose untuned kernels use every core instead of one.
"""
from __future__ import annotations

MIN_PARALLEL_EXTENT = 2      # a fused outer loop shorter than this is not worth a thread


def cpu_fallback():
    """A dlight ``ScheduleRule`` for llvm targets (None for anything else)."""
    from tvm import s_tir
    from tvm.s_tir import dlight as dl
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline

    class CpuFallback(dl.ScheduleRule):
        def apply(self, func, target, _tunable):
            if target.kind.name != "llvm":
                return None
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            if infos is None:
                return None
            for info in try_inline(sch, infos):
                block = info.block_rv
                loops = sch.get_loops(block)
                kinds = info.dom_kind()
                if not loops or "O" in kinds or len(kinds) != len(loops):
                    continue
                spatial = [lp for lp, k in zip(loops, kinds) if k == "S"]
                reduce = [lp for lp, k in zip(loops, kinds) if k == "R"]
                if not spatial:
                    continue
                sch.reorder(*spatial, *reduce)
                # keep the innermost spatial loop whole when there is no reduction (the
                # vectorizer's loop); parallelize the rest, fused
                outer = spatial[:-1] if (not reduce and len(spatial) > 1) else spatial
                extents = [sch.get(lp).extent for lp in outer]
                if not all(hasattr(e, "value") for e in extents):
                    continue            # a symbolic extent: leave the block as written
                extent = 1
                for e in extents:
                    extent *= int(e.value)
                if extent >= MIN_PARALLEL_EXTENT:
                    sch.parallel(sch.fuse(*outer))
            return sch

    return CpuFallback()


__all__ = ["cpu_fallback"]
