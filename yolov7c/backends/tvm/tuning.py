"""The tuning driver: resumable MetaSchedule tuning of a model into a database folder.

Why not one ``tune_relax`` call: in TVM 0.27 the task scheduler only writes records after
its first full pass over all tasks (a kill in the first ~15 min loses everything), its trial
budget restarts from zero on every call, and its cost model is thrown away. So this driver
calls ``tune_tasks`` for one task and one round (``per_round`` trials) at a time:

- records are committed after every round (a kill loses at most one round), under the
  database's writer lock (:mod:`.database`);
- ``trials`` is the size target of the database over the model's tasks: a restart tops it
  up, and tasks whose workload is already in the database (another model, another image
  size with the same shapes) count what they have and are not tuned again first;
- rounds go where the latency is (:func:`.search.next_task`), candidates already measured
  are skipped, and the XGBoost cost model is retrained from the records (never unpickled);
- Ctrl-C or SIGTERM stops within seconds: the current round's workers are ended, its
  results discarded or committed whole, the lock released.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from torch import nn

from ...errors import UserError
from ..common import check_img_size
from . import database as dbm
from . import pipeline as pl
from . import rpc as rpcmod
from . import search
from . import seeds as seedmod
from . import targets as T
from . import workers
from .frontend import to_relax

log = logging.getLogger("yolov7c.tvm")

META = dbm.META                      # kept: tests and older callers use these names
DB_FILES = dbm.DB_FILES
open_database = dbm.open_database
is_packed = dbm.is_packed
unpack_database = dbm.unpack_database
pack_database = dbm.pack_database
prune_database = dbm.prune_database
META_SCHEDULE_LOGGER = "tvm.s_tir.meta_schedule"
MAX_STALLED_ROUNDS = 2     # rounds in a row without a new record close a task


@dataclass
class TuneReport:
    db_dir: str
    target: str
    tasks: int
    records_before: int
    records_after: int
    measured: int
    skipped_duplicates: int
    seconds: float
    estimated_ms: float | None
    untuned_tasks: list[str] = field(default_factory=list)
    reused_tasks: int = 0              # tasks whose workload the database already had
    pipeline: str = pl.CPU_DEFAULT
    stopped: str | None = None         # "SIGINT"/"SIGTERM"/"max_seconds" when cut short
    # (seconds, records measured, kernel-sum estimate over tuned tasks, tasks untuned)
    curve: list[tuple[float, int, float, int]] = field(default_factory=list)


# --------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def _foreign_handlers_detached() -> Iterator[None]:
    """TVM 0.27 rebuilds its logging dictConfig from the names of the handlers already on its
    logger: a handler it did not create (a test runner's capture handler, an application's)
    makes that crash (unnamed: ``None.format``) or fail (named: unknown to dictConfig). Detach
    such handlers while TVM configures its loggers, then put them back."""
    logger = logging.getLogger(META_SCHEDULE_LOGGER)
    foreign = [h for h in logger.handlers
               if not (h.get_name() or "").startswith(META_SCHEDULE_LOGGER)]
    for h in foreign:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in foreign:
            logger.addHandler(h)


def _quiet_tvm(verbose: bool) -> None:
    """TVM's scheduler logs every step to stdout; keep them in ``<db>/logs`` unless verbose
    (its console handler takes the logger's level at each ``tune_tasks`` call)."""
    logging.getLogger(META_SCHEDULE_LOGGER).setLevel(logging.INFO if verbose
                                                     else logging.WARNING)


class _Stop:
    """Ctrl-C / SIGTERM during tuning: set a flag and end the round's worker processes, so
    the round returns within seconds; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.previous: dict[int, object] = {}
        self.in_round = False   # inside TVM's C++ loop, an exception would be swallowed

    def _handler(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None or not self.in_round:  # Python code, or a second signal
            self.signal = name
            raise KeyboardInterrupt
        self.signal = name
        log.warning("[tune] %s: stopping after this round (the database keeps every "
                    "committed record; rerun the same command to continue)", name)
        _end_workers()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Stop]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # only the main thread may handle signals; the caller handles them
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)
        try:
            yield self
        finally:
            for sig, prev in self.previous.items():
                signal.signal(sig, prev)  # type: ignore[arg-type]


def _end_workers() -> None:
    """Kill this process's own worker children (TVM's popen builders and runners)."""
    try:
        import psutil
        kids = psutil.Process(os.getpid()).children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing or racing exits: nothing to end
        return
    for k in kids:
        with contextlib.suppress(Exception):
            k.kill()


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _best_ms(db, wl) -> float | None:
    top = db.get_top_k(wl, 1)
    if not top or top[0].run_secs is None:
        return None
    secs = [float(v) for v in top[0].run_secs]
    return 1e3 * sum(secs) / len(secs) if secs and max(secs) < 1e9 else None


def extract(model: nn.Module, spec: T.TargetSpec, img: tuple[int, int],
            frontend: str = "torch", pipeline: str = pl.CPU_DEFAULT):
    """(Relax module, extracted tasks) for ``model`` on ``spec`` under ``pipeline``."""
    mod = to_relax(model, img, frontend=frontend)
    return mod, pl.extract_tasks(mod, spec.tvm_target(), pipeline)


def _flops(mod) -> float:
    try:
        from tvm.s_tir.analysis import estimate_tir_flops
        return float(estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001 - only orders the first pass; 0 keeps extraction order
        return 0.0


def _check_args(trials: int, per_round: int) -> None:
    for name, v in (("trials", trials), ("per_round", per_round)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise UserError(f"{name} {v!r}: must be a positive number of measurements",
                            arg=name)


def _settle_meta(d: Path, spec: T.TargetSpec, img: tuple[int, int], pipeline: str | None,
                 explicit_mcpu: bool, timed_here: bool) -> tuple[str, int | None]:
    """Check ``d``'s meta against this run (target, CPU, pipeline) or write it; returns the
    pipeline to use (an existing database keeps its own) and the CPU threads candidates are
    timed on. ``timed_here``: candidates are timed on this CPU, on the thread count the
    database was first tuned with (a new one: ``targets.cpu_threads()``'s); else None."""
    meta = dbm.read_meta(d)
    target_json = str(spec.tvm_target())
    identity = T.cpu_identity(spec.target) if spec.target.get("kind") == "llvm" else {}
    if meta:
        old_key = dbm.target_key(meta.get("target", "{}"))
        if old_key != dbm.target_key(spec.target):
            if old_key.get("kind") == "llvm" == spec.target.get("kind"):
                dbm.check_cpu(d, meta, spec.target, identity, explicit_mcpu)
            raise UserError(f"db_dir {d}: tuned for {meta.get('target')}, not {target_json}; "
                            "use a separate db_dir per target", arg="db_dir")
        dbm.check_cpu(d, meta, spec.target, identity, explicit_mcpu)
        have = meta.get("pipeline", "zero")
        if pipeline is not None and pipeline != have:
            raise UserError(f"pipeline {pipeline}: db_dir {d} holds {have}-pipeline records; "
                            "tune into a new db_dir for another pipeline", arg="pipeline")
        pipeline = have
    else:
        pipeline = pipeline or pl.default_for(spec.target.get("kind"))
        meta = {"target": target_json, "cpu": identity, "pipeline": pipeline, "img": []}
    sizes = [list(s) for s in meta.get("img", []) if isinstance(s, list)]
    if list(img) not in sizes:
        sizes.append(list(img))
    meta.update(img=sizes, cpu=meta.get("cpu") or identity, pipeline=pipeline)
    if timed_here:   # records stay comparable: a resumed run times on the first run's count
        had = meta.get("threads")
        want = had if isinstance(had, int) and had > 0 else None
        got = T.cpu_threads(want)
        if want is not None and got != want:
            log.warning("[tune] db_dir %s was tuned on %d threads, this process runs %d: "
                        "its new records will not compare (set TVM_NUM_THREADS=%d)",
                        d, want, got, want)
        meta["threads"] = want or got
    dbm.write_meta(d, meta)
    return pl.check(pipeline), meta.get("threads") if timed_here else None


# --------------------------------------------------------------------------- driver


def tune(model: nn.Module, target: str, img: int | Sequence[int], db_dir: str | os.PathLike,
         trials: int, *, rpc: str | None = None, op_names: Sequence[str] | None = None,
         per_round: int = 16, arch: str | None = None, mcpu: str | None = None,
         frontend: str = "torch", seed: int = 0, max_seconds: float | None = None,
         cost_model: str = "xgb", progress: bool = True, pipeline: str | None = None,
         schedule: str = "weighted", builder: str = "inprocess",
         verbose_tvm: bool = False) -> TuneReport:
    """Tune ``model``'s kernels for ``target`` until ``db_dir`` holds ``trials`` measured
    candidates over the model's tasks; resumes whatever a previous run left.

    ``rpc`` = "host:port:key" measures on a device behind a TVM RPC tracker (needed for
    targets that do not run here). ``op_names`` restricts tuning to tasks whose name contains
    one of the strings. ``max_seconds`` stops after the round that crosses it.
    ``pipeline``: "nhwc-winograd" (default for a new CPU database: "nhwc-fastexp" with the
    3×3 stride-1 convolutions as Winograd F(4×4, 3×3) kernels), "nhwc-fastexp"
    (convolutions in NHWC, SPP
    pools chained, a vectorizing sigmoid, the first round of each conv task seeded with
    register-blocked tilings, weights in the layout each schedule wants), "nhwc" (the same
    with TVM's scalar sigmoid), "prepack" (the weight layout rewrite alone, NCHW, no seeds)
    or "zero" (TVM's plain pipeline; the default for GPU targets); an existing database
    keeps its own (:mod:`.pipeline`).
    ``schedule``: "weighted" (rounds where the latency is) or "round-robin". ``builder``:
    "inprocess" (build and time candidates in this process: fast) or "popen" (TVM's
    worker processes).
    ``cost_model="random"`` skips XGBoost training (for tests).
    """
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts
    from tvm.s_tir.meta_schedule.tune import tune_tasks

    _check_args(trials, per_round)
    if schedule not in ("weighted", "round-robin"):
        raise UserError(f"schedule {schedule!r}: use weighted or round-robin", arg="schedule")
    if pipeline is not None:
        pl.check(pipeline)
    if builder not in ("inprocess", "popen"):
        raise UserError(f"builder {builder!r}: use inprocess or popen", arg="builder")
    builder_kind = builder
    spec = T.resolve(target, arch=arch, mcpu=mcpu)
    addr = rpcmod.parse(rpc) if rpc else None
    if addr is None and not (spec.runs_here or T.device_present(spec)):
        raise UserError(f"target {spec.name}: kernels must be measured on the device; pass "
                        "rpc=host:port:key of a TVM RPC tracker with that device", arg="rpc")
    if spec.name == "vulkan":
        T.check_toolchain(spec)
    h, w = check_img_size(model, img)
    if dbm.is_packed(db_dir):
        raise UserError(f"db_dir {db_dir}: a packed database is read-only; tune into a folder",
                        arg="db_dir")
    if addr is not None:
        rpcmod.check(addr)
    say = log.info if progress else log.debug
    d = Path(db_dir)
    stop = _Stop()
    with dbm.locked(d), stop.installed():
        here = addr is None and spec.target.get("kind") == "llvm"
        pipeline, threads = _settle_meta(d, spec, (h, w), pipeline,
                                         explicit_mcpu=mcpu is not None, timed_here=here)
        seeding = pl.get(pipeline).seeds and spec.target.get("kind") == "llvm"
        db = dbm.open_database(d, create=True, write=True)
        before = len(db.get_all_tuning_records())
        t_start = time.perf_counter()
        say("[tune] extracting tasks of %s at %dx%d for %s (%s pipeline%s)",
            type(model).__name__, h, w, spec.name, pipeline,
            f", timed on {threads} threads" if threads else "")
        _, all_tasks = extract(model, spec, (h, w), frontend, pipeline)
        sel = [t for t in all_tasks if not op_names or any(o in t.task_name for o in op_names)]
        if not sel:
            raise UserError(f"op_names {','.join(op_names or [])}: matches none of the "
                            f"{len(all_tasks)} tasks (e.g. {all_tasks[0].task_name})",
                            arg="op_names")
        stats = {"skipped": 0}
        strategy = search.dedup_search(stats)
        _quiet_tvm(verbose_tvm)
        with _foreign_handlers_detached():
            ctxs, weights = extracted_tasks_to_tune_contexts(
                sel, work_dir=str(d), strategy=strategy, seed=seed, num_threads="physical")
        n = len(ctxs)
        weights = [float(x) for x in weights]
        wls = [db.commit_workload(c.mod) for c in ctxs]
        count = lambda i: len(db.get_top_k(wls[i], 1 << 30))  # noqa: E731
        have = [count(i) for i in range(n)]
        best = [_best_ms(db, wl) for wl in wls]
        flops = [_flops(c.mod) for c in ctxs]
        reused = sum(1 for v in have if v)
        say("[tune] %d tasks (%d already in the database from earlier runs or models); "
            "target %d records, %d there now (%d in the database)",
            n, reused, trials, sum(have), before)
        cores = T.physical_cores()
        inproc = builder_kind == "inprocess"
        builder = workers.in_process_builder() if inproc else workers.popen_builder(cores)
        runner = (rpcmod.runner(addr) if addr else
                  workers.in_process_runner() if inproc else workers.local_runner())
        cm = search.cost_model(cost_model, cores, seed)
        if reused and cost_model == "xgb":
            t0 = time.perf_counter()
            k = search.retrain(cm, ctxs, db)
            say("[tune] cost model retrained from %d database records in %.1f s", k,
                time.perf_counter() - t0)
        measured, stalled, rounds, spent = 0, [0] * n, [0] * n, [0.0] * n
        # a large injective kernel (the fused decode) keeps its measured default schedule;
        # closed: not searched again in this run (that, or its search space is used up)
        searched = [not seeding or seedmod.searchable(c) for c in ctxs]
        closed = [not searched[j] and have[j] > 0 for j in range(n)]
        curve: list[tuple[float, int, float, int]] = []

        def estimate() -> tuple[float, int]:
            return (sum(b * wt for b, wt in zip(best, weights) if b is not None),
                    sum(1 for b in best if b is None))

        while stop.signal is None:
            open_ = [not closed[j] and stalled[j] < MAX_STALLED_ROUNDS for j in range(n)]
            if sum(have) >= trials:
                break
            i = search.next_task(have, best, weights, open_, schedule, flops, spent)
            if i is None:
                break
            k = min(per_round, max(1, trials - sum(have)))
            t_round, exhausted = time.perf_counter(), stats.get("exhausted", 0)
            _quiet_tvm(verbose_tvm)
            stop.in_round = True   # a signal from here on ends the round, not the process
            try:
                if have[i] == 0 and seeding:
                    k -= seedmod.measure_seeds(ctxs[i], builder, runner, db, limit=min(k, 4))
                if not searched[i]:
                    k, closed[i] = 0, True
                if k > 0 and stop.signal is None:
                    with _foreign_handlers_detached():
                        tune_tasks(tasks=[ctxs[i]], task_weights=[weights[i]],
                                   work_dir=str(d), max_trials_global=k,
                                   max_trials_per_task=k, num_trials_per_iter=k,
                                   builder=builder, runner=runner, database=db,
                                   cost_model=cm, task_scheduler="round-robin")
            finally:
                stop.in_round = False
            spent[i] += time.perf_counter() - t_round
            new = count(i)
            stalled[i] = stalled[i] + 1 if new == have[i] else 0
            if stats.get("exhausted", 0) > exhausted:   # the search found nothing unmeasured
                closed[i] = True
            measured += new - have[i]
            have[i], rounds[i] = new, rounds[i] + 1
            best[i] = _best_ms(db, wls[i])
            el = time.perf_counter() - t_start
            est, untuned = estimate()
            curve.append((el, measured, est, untuned))
            left = el / max(measured, 1) * max(trials - sum(have), 0)
            if max_seconds is not None:
                left = min(left, max(max_seconds - el, 0.0))
            b = best[i]
            say("[tune] task %d/%d %-32s %4d records, best %s | %d/%d | estimate %.2f ms%s | "
                "%s elapsed, ~%s left", i + 1, n, ctxs[i].task_name[:32], have[i],
                "-" if b is None else f"{b:.4f} ms", sum(have), trials, est,
                f" ({untuned} tasks untuned)" if untuned else "", _fmt_s(el), _fmt_s(left))
            if max_seconds is not None and el > max_seconds and stop.signal is None:
                say("[tune] max_seconds %g reached; rerun the same command to continue",
                    max_seconds)
                stop.signal = "max_seconds"
        est, untuned = estimate()
        missing = [ctxs[i].task_name for i in range(n) if best[i] is None]
        after = len(db.get_all_tuning_records())
    rep = TuneReport(str(d), spec.name, n, before, after, measured, stats["skipped"],
                     time.perf_counter() - t_start, None if missing else est, missing,
                     reused, pipeline, stop.signal, curve)
    say("[tune] %s: %d new records (%d in database), %d duplicate candidates skipped, %s%s",
        "stopped" if stop.signal else "done", measured, after, stats["skipped"],
        _fmt_s(rep.seconds), f", kernel-sum estimate {est:.2f} ms" if not missing else
        f", {len(missing)} tasks still without a record")
    if stop.signal == "SIGINT":
        raise KeyboardInterrupt
    if stop.signal == "SIGTERM":
        os.kill(os.getpid(), signal.SIGTERM)  # the previous handler is back: act as it would
    return rep


def report_dict(rep: TuneReport) -> dict:
    return asdict(rep)


def coverage(mod, spec: T.TargetSpec, db, pipeline: str) -> tuple[int, int, int]:
    """(tasks with a record, tasks, records for them) of ``mod`` in ``db``: what a build
    from ``db`` will actually use (without committing anything to the database)."""
    target = spec.tvm_target()
    tasks = pl.extract_tasks(mod, target, pipeline)
    covered = records = 0
    for t in tasks:
        m = t.dispatched[0]
        if db.has_workload(m):
            k = len(db.get_top_k(db.commit_workload(m), 1 << 30))
            covered += k > 0
            records += k
    return covered, len(tasks), records


__all__ = ["TuneReport", "coverage", "extract", "report_dict", "tune"]
