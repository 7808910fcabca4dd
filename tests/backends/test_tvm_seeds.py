"""Seeded conv tilings: valid decisions for every conv shape of the zoo, and seeds that are
real points of the task's design space: they replay the way the search and the build
replay records (the first version stored its postprocessing in the replayable part and
crashed the search), and compute what the unscheduled kernel computes."""
from __future__ import annotations

import numpy as np
import pytest

from yolov7c.backends.tvm import seeds

tvm = pytest.importorskip("tvm")


@pytest.mark.parametrize("w,oc", [(104, 64), (13, 512), (52, 255), (208, 32), (7, 3)])
def test_register_tiles_divide_the_loops_and_fit_the_registers(w, oc):
    tiles = list(seeds.register_tiles(w, oc))
    assert tiles, (w, oc)
    for w4, oc4 in tiles:
        vecs = -(-oc4 // seeds.VECTOR_LANES)
        assert w % w4 == 0 and oc % oc4 == 0 and w4 * vecs <= seeds.MAX_ACCUMULATORS
    if oc % 16 == 0:
        assert tiles[0][1] % 16 == 0        # whole vectors first where the channels allow


def test_conv_decisions_are_perfect_tilings():
    ext = [1, 52, 52, 128, 3, 3, 256]
    decisions = seeds.conv_decisions(ext, limit=8)
    assert decisions
    for dec in decisions:
        assert [len(d) for d in dec] == list(seeds.CONV_TILE_PARTS)
        assert [int(np.prod(d)) for d in dec] == ext
    # a 3x3x256 weight block for 32 channels is 288 KB: a 64-channel slice is offered too
    assert any(dec[6] == [4, 64] for dec in decisions)


def _conv_context(bk, work_dir):
    """A tuning context of the heaviest NHWC conv task of the synthetic P5 net at 64."""
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts
    from tvm.s_tir.analysis import estimate_tir_flops

    from yolov7c.backends.tvm import targets as T
    from yolov7c.backends.tvm import tuning
    _, tasks = tuning.extract(bk.make_tiny("p5"), T.resolve("llvm"), (64, 64),
                              pipeline="nhwc")
    convs = [t for t in tasks if "conv2d_nhwc" in t.dispatched[0].script(show_meta=False)]
    task = max(convs, key=lambda t: float(estimate_tir_flops(t.dispatched[0])))
    ctxs, _ = extracted_tasks_to_tune_contexts([task], work_dir=str(work_dir), seed=0,
                                               num_threads=1)
    return ctxs[0]


def _run(mod, args):
    lib = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    out = [tvm.runtime.tensor(a) for a in args]
    lib["main"](*out)
    return out[-1].numpy()


@pytest.mark.slow
def test_seeds_replay_like_records_and_equal_the_unscheduled_kernel(bk, tmp_path):
    from tvm.s_tir import Schedule
    ctx = _conv_context(bk, tmp_path)
    schs = seeds.seed_schedules(ctx, limit=4)
    assert schs, "no seed for an NHWC conv task"
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    rng = np.random.default_rng(0)
    args = [rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype)
            for a in ArgInfo.from_prim_func(ctx.mod["main"])]
    ref = _run(ctx.mod, args)
    for sch in schs:
        replay = Schedule(ctx.mod)
        sch.trace.apply_to_schedule(replay, remove_postproc=True)   # what the search does
        assert all(p.apply(replay) for p in ctx.space_generator.postprocs)
        got = _run(sch.mod, args)
        err = float(np.abs(got - ref).max())
        print(f"seed max abs err {err:.3g} (max |ref| {np.abs(ref).max():.3g})")
        assert err <= 1e-4 * float(np.abs(ref).max())
