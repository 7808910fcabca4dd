"""Search strategy: which candidates to measure, which task gets the next round, and the
cost model that ranks candidates.

- :func:`dedup_search` wraps MetaSchedule's EvolutionarySearch so a candidate whose
  scheduled IR is already in the database is never measured again (TVM 0.27 only remembers
  candidates of the current call, so a resume re-measured the database's best ones), and
  ends a round when the search keeps coming back empty (TVM would loop until the trial
  count is reached, which an exhausted space never reaches).
- :func:`next_task` spends the budget where the time is: every task first gets one round
  (an untuned CPU kernel runs at naive speed, ~100x slower), then the task with the largest
  share of the estimated latency per trial already spent goes next.
- :func:`cost_model` is an XGBoost model retrained from the database's JSON records at the
  start of a run (features come from the records' traces). That is how it persists: nothing
  is pickled, so a crafted file in the folder cannot run code (older versions loaded
  ``cost_model.tar`` through ``numpy.load(allow_pickle=True)``).
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

log = logging.getLogger("yolov7c.tvm")

MAX_EMPTY_GENERATIONS = 2    # generations with no unmeasured candidate before a round ends


def dedup_search(stats: dict, population_size: int = 128, genetic_num_iters: int = 2,
                 init_min_unmeasured: int = 16):
    """An EvolutionarySearch that skips candidates already measured (``stats['skipped']``
    counts them across all tasks)."""
    return _dedup_search_class()(None, stats, population_size, genetic_num_iters,
                                 init_min_unmeasured)


def _dedup_search_class():
    """Build the class lazily: ``derived_object`` needs TVM imported."""
    import tvm_ffi
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import RunnerResult
    from tvm.s_tir.meta_schedule.search_strategy import EvolutionarySearch, PySearchStrategy

    @derived_object
    class DedupSearch(PySearchStrategy):
        """EvolutionarySearch that never sends a candidate already in the database."""

        def __init__(self, inner=None, stats: dict | None = None, population_size: int = 128,
                     genetic_num_iters: int = 2, init_min_unmeasured: int = 16) -> None:
            self.inner = inner if inner is not None else EvolutionarySearch(
                population_size=population_size, genetic_num_iters=genetic_num_iters,
                init_min_unmeasured=init_min_unmeasured)
            self.seen: set[int] = set()
            self.stats = stats if stats is not None else {"skipped": 0}  # shared by clones
            self.ctx = None

        def _initialize_with_tune_context(self, context) -> None:
            self.ctx = context
            self.inner._initialize_with_tune_context(context)

        def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None,
                       cost_model=None) -> None:
            self.inner.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database,
                                  cost_model)
            self.seen = set()
            if database is not None and self.ctx is not None:
                wl = database.commit_workload(self.ctx.mod)
                for rec in database.get_top_k(wl, 1 << 30):
                    self.seen.add(tvm_ffi.structural_hash(rec.as_measure_candidate().sch.mod))

        def post_tuning(self) -> None:
            self.inner.post_tuning()

        def generate_measure_candidates(self):
            empty = 0
            for _ in range(16):  # bounded: duplicates still advance the inner trial counter
                cands = self.inner.generate_measure_candidates()
                if cands is None:
                    return None
                if not cands:
                    # The evolutionary search found nothing unmeasured: a small design
                    # space (the fused decode) is exhausted. It would keep sampling, a
                    # generation a minute, without advancing; end the task's round.
                    empty += 1
                    if empty >= MAX_EMPTY_GENERATIONS:
                        self.stats["exhausted"] = self.stats.get("exhausted", 0) + 1
                        return None
                    continue
                fresh, dup = [], []
                for c in cands:
                    h = tvm_ffi.structural_hash(c.sch.mod)
                    (dup if h in self.seen else fresh).append(c)
                    self.seen.add(h)
                if dup:
                    self.stats["skipped"] += len(dup)
                    self.inner.notify_runner_results(
                        dup, [RunnerResult(None, "duplicate of a database record") for _ in dup])
                if fresh:
                    return fresh
            return None

        def notify_runner_results(self, measure_candidates, results) -> None:
            self.inner.notify_runner_results(measure_candidates, results)

        def clone(self):
            return DedupSearch(self.inner.clone(), self.stats)

    return DedupSearch


def next_task(have: Sequence[int], best_ms: Sequence[float | None],
              weights: Sequence[float], open_: Sequence[bool],
              schedule: str = "weighted", flops: Sequence[float] | None = None,
              spent_s: Sequence[float] | None = None) -> int | None:
    """Index of the task that gets the next round, or None when no task is open.

    ``round-robin``: the open task with the fewest records. ``weighted``: tasks without a
    record first (the most FLOPs x weight first, when ``flops`` is given, so a run cut short
    has tuned the heavy kernels); then the largest ``weight * best_ms / sqrt(records)``, i.e.
    the share of the end-to-end latency, discounted by the trials it already had, or, given
    ``spent_s``, by the seconds its rounds took: a task whose rounds are slow (yolov7's
    fused detect decode: ~3 min a round for one new candidate) then waits while cheaper
    tasks with a similar share go first.
    """
    idx = [i for i, o in enumerate(open_) if o]
    if not idx:
        return None
    fresh = [i for i in idx if have[i] == 0 or best_ms[i] is None]
    if fresh:
        if flops is None or schedule == "round-robin":
            return fresh[0]
        return max(fresh, key=lambda i: (weights[i] * flops[i], -i))
    if schedule == "round-robin":
        return min(idx, key=lambda i: (have[i], i))
    def spent(i: int) -> float:
        return max(have[i], 1) if spent_s is None else max(spent_s[i], 1.0)
    return max(idx, key=lambda i: (weights[i] * float(best_ms[i] or 0.0)
                                   / math.sqrt(spent(i)), -i))


def cost_model(kind: str, cores: int, seed: int = 0):
    """A fresh cost model: ``xgb`` (XGBoost) or ``random`` (no training; for tests)."""
    from tvm.s_tir import meta_schedule as ms
    if kind == "random":
        return ms.cost_model.RandomModel(seed=seed)
    if kind != "xgb":
        from ...errors import UserError
        raise UserError(f"cost_model {kind!r}: use xgb or random", arg="cost_model")
    return ms.cost_model.XGBModel(num_tuning_cores=cores, adaptive_training=True)


def retrain(cm, contexts: Sequence, database, max_per_task: int = 64) -> int:
    """Teach ``cm`` what ``database`` already measured for ``contexts`` (the safe way to
    persist a cost model: from the JSON records). XGBoost is trained once, at the end, not
    after every task's records. Returns the number of records used."""
    from tvm.s_tir.meta_schedule.runner import RunnerResult
    if not hasattr(cm, "booster"):
        return 0
    items = []
    for ctx in contexts:
        if not database.has_workload(ctx.mod):
            continue
        wl = database.commit_workload(ctx.mod)
        recs = [r for r in database.get_top_k(wl, max_per_task) if r.run_secs]
        if recs:
            items.append((ctx, recs))
    adaptive = getattr(cm, "adaptive_training", None)
    cm.adaptive_training = True  # the threshold below defers training to the last update
    n = 0
    try:
        for j, (ctx, recs) in enumerate(items):
            cm.last_train_size = 0 if j == len(items) - 1 else 1 << 60
            cm.update(ctx, [r.as_measure_candidate() for r in recs],
                      [RunnerResult(list(r.run_secs), None) for r in recs])
            n += len(recs)
    finally:
        cm.adaptive_training = adaptive
    return n
