"""The default CPU schedule for kernels without a tuning record: outer loops in parallel,
results unchanged (every kernel of the synthetic net, against its unscheduled self)."""
from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")


def test_every_kernel_runs_in_parallel_and_computes_the_same(bk):
    """Each kernel is compiled twice (as is, and scheduled) with LLVM's optimizer off: the
    schedule's loops, not LLVM's, are under test, and it compiles 5-6x faster."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from yolov7c.backends.tvm import targets as T
    from yolov7c.backends.tvm import tuning
    from yolov7c.backends.tvm.fallback import cpu_fallback
    target = bk.llvm_o0()   # what a schedule computes does not depend on LLVM's optimizer
    _, tasks = tuning.extract(bk.make_tiny("p5"), T.resolve("llvm"), (64, 64),
                              pipeline="nhwc-fastexp")
    rule, rng, parallel = cpu_fallback(), np.random.default_rng(0), 0
    for task in tasks:
        mod = task.dispatched[0]
        sch = rule.apply(mod["main"], target, False)
        assert sch is not None, task.task_name
        parallel += "T.parallel" in sch.mod.script(show_meta=False)
        args = [(0.5 + rng.random([int(d) for d in a.shape])).astype(a.dtype)  # > 0: BN var
                for a in ArgInfo.from_prim_func(mod["main"])]
        outs = []
        for m in (mod, sch.mod):
            lib = tvm.compile(m, target=target)
            arrs = [tvm.runtime.tensor(a) for a in args]
            lib["main"](*arrs)
            outs.append(arrs[-1].numpy())
        err = float(np.abs(outs[0] - outs[1]).max())
        assert err <= 1e-5 * max(1.0, float(np.abs(outs[0]).max())), (task.task_name, err)
    print(f"{parallel} of {len(tasks)} kernels got a parallel loop")
    assert parallel >= len(tasks) - 2   # all but kernels too small to split
