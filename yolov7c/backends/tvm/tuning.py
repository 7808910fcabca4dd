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
from typing import Any, Iterator, Sequence

from torch import nn

from ...errors import UserError, one_line
from ..common import check_img_size
from . import database as dbm
from . import pipeline as pl
from . import rpc as rpcmod
from . import search
from . import seeds as seedmod
from . import targets as T
from . import workers
from .frontend import to_relax
from .intrinsics import import_tensor_intrinsics

log = logging.getLogger("yolov7c.tvm")

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


def _remove_new_folder(d: Path) -> None:
    """Undo a database folder this run created and refused to fill: its lock file, then
    the folder if nothing else appeared in it."""
    with contextlib.suppress(OSError):
        os.unlink(d / dbm.LOCK)
    with contextlib.suppress(OSError):
        d.rmdir()


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


TUNE_CPU_FIX = "tune into a new db_dir on this CPU (records timed on another CPU do not compare)"


def _check_meta(d: Path, spec: T.TargetSpec, pipeline: str | None) -> tuple[dict, str]:
    """Check ``d``'s meta against this run (target, CPU class, pipeline) without writing
    anything; returns the meta (a new one for a new database) and the pipeline to use (an
    existing database keeps its own)."""
    meta = dbm.read_meta(d)
    target_json = str(spec.tvm_target())
    identity = T.cpu_facts(spec.target) if spec.target.get("kind") == "llvm" else {}
    if meta:
        old_key = dbm.target_key(meta.get("target", "{}"))
        if old_key.get("kind") == "llvm" == spec.target.get("kind"):
            dbm.check_cpu(d, meta, identity, fix=TUNE_CPU_FIX)
        if old_key != dbm.target_key(spec.target):
            raise UserError(f"db_dir {d}: tuned for {one_line(meta.get('target'), 160)}, not "
                            f"{target_json}; use a separate db_dir per target", arg="db_dir")
        have = meta.get("pipeline", "zero")
        if pipeline is not None and pipeline != have:
            raise UserError(f"pipeline {pipeline}: db_dir {d} holds {have}-pipeline records; "
                            "tune into a new db_dir for another pipeline", arg="pipeline")
        return meta, pl.check(have)
    pipeline = pipeline or pl.default_for(spec.target.get("kind"))
    return ({"target": target_json, "cpu": identity, "pipeline": pipeline, "img": []},
            pl.check(pipeline))


def _settle_meta(d: Path, meta: dict, spec: T.TargetSpec, img: tuple[int, int],
                 timed_here: bool) -> int | None:
    """Write ``d``'s meta for this run (image size added, CPU recorded); returns the CPU
    threads candidates are timed on. ``timed_here``: candidates are timed on this CPU, on
    the thread count the database was first tuned with (a new one:
    ``targets.cpu_threads()``'s); else None."""
    identity = T.cpu_facts(spec.target) if spec.target.get("kind") == "llvm" else {}
    sizes = [list(s) for s in meta.get("img", []) if isinstance(s, list)]
    if list(img) not in sizes:
        sizes.append(list(img))
    meta.update(img=sizes, cpu=meta.get("cpu") or identity)
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
    return meta.get("threads") if timed_here else None


# --------------------------------------------------------------------------- driver


@dataclass
class TaskState:
    """One task during a run: its context and weight, what the database has for it, and
    whether it is still worth a round."""
    ctx: Any
    weight: float
    workload: Any
    flops: float
    have: int                     # records of this task in the database
    best_ms: float | None         # its fastest record
    searched: bool                # False: its candidates are fixed points (decode, Winograd)
    closed: bool = False          # not searched again in this run
    stalled: int = 0              # rounds in a row without a new record
    spent_s: float = 0.0          # seconds its rounds took

    @property
    def open(self) -> bool:
        return not self.closed and self.stalled < MAX_STALLED_ROUNDS


@dataclass
class _Run:
    """What one call of :func:`tune` works with, and its running totals."""
    d: Path
    spec: T.TargetSpec
    pipeline: str
    trials: int
    per_round: int
    schedule: str
    seeding: bool
    db: Any
    tasks: list[TaskState]
    builder: Any
    runner: Any
    cost_model: Any
    stats: dict
    stop: _Stop
    say: Any
    verbose_tvm: bool
    max_seconds: float | None
    t_start: float
    before: int
    reused: int
    measured: int = 0
    curve: list[tuple[float, int, float, int]] = field(default_factory=list)

    def records(self) -> int:
        return sum(t.have for t in self.tasks)

    def estimate(self) -> tuple[float, int]:
        """(kernel-sum latency estimate over tuned tasks, tasks without a record)."""
        return (sum(t.best_ms * t.weight for t in self.tasks if t.best_ms is not None),
                sum(1 for t in self.tasks if t.best_ms is None))


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
    (convolutions in NHWC, SPP pools chained, a vectorizing sigmoid, the first round of
    each conv task seeded with register-blocked tilings, weights in the layout each
    schedule wants), "nhwc" (the same with TVM's scalar sigmoid), "prepack" (the weight
    layout rewrite alone, NCHW, no seeds) or "zero" (TVM's plain pipeline; the default for
    GPU targets); an existing database keeps its own (:mod:`.pipeline`).
    ``schedule``: "weighted" (rounds where the latency is) or "round-robin". ``builder``:
    "inprocess" (build and time candidates in this process: fast) or "popen" (TVM's
    worker processes). ``cost_model="random"`` skips XGBoost training (for tests).
    """
    spec, addr, (h, w) = _check_tune_args(model, target, img, db_dir, trials, per_round,
                                          rpc, arch, mcpu, pipeline, schedule, builder)
    say = log.info if progress else log.debug
    d = Path(db_dir)
    stop = _Stop()
    created = not d.exists()
    with dbm.locked(d), stop.installed():
        run = _prepare(model, spec, addr, (h, w), d, created, trials, per_round, op_names,
                       frontend, seed, cost_model, pipeline, schedule, builder, verbose_tvm,
                       max_seconds, stop, say)
        while stop.signal is None and run.records() < trials:
            i = search.next_task([t.have for t in run.tasks], [t.best_ms for t in run.tasks],
                                 [t.weight for t in run.tasks], [t.open for t in run.tasks],
                                 schedule, [t.flops for t in run.tasks],
                                 [t.spent_s for t in run.tasks])
            if i is None:
                break
            _run_round(run, i)
        after = len(run.db.get_all_tuning_records())
    return _finish(run, after)


def _check_tune_args(model: nn.Module, target: str, img: int | Sequence[int],
                     db_dir: str | os.PathLike, trials: int, per_round: int,
                     rpc: str | None, arch: str | None, mcpu: str | None,
                     pipeline: str | None, schedule: str,
                     builder: str) -> tuple[T.TargetSpec, Any, tuple[int, int]]:
    """Every argument checked before the database is touched: (spec, RPC address, size)."""
    _check_args(trials, per_round)
    if schedule not in ("weighted", "round-robin"):
        raise UserError(f"schedule {schedule!r}: use weighted or round-robin", arg="schedule")
    if pipeline is not None:
        pl.check(pipeline)
    if builder not in ("inprocess", "popen"):
        raise UserError(f"builder {builder!r}: use inprocess or popen", arg="builder")
    spec = T.resolve(target, arch=arch, mcpu=mcpu)
    addr = rpcmod.parse(rpc) if rpc else None
    if addr is None and not (spec.runs_here or T.device_present(spec)):
        raise UserError(f"target {spec.name}: kernels must be measured on the device; pass "
                        "rpc=host:port:key of a TVM RPC tracker with that device", arg="rpc")
    if spec.name == "vulkan":
        T.check_toolchain(spec)
    size = check_img_size(model, img)
    if dbm.is_packed(db_dir):
        raise UserError(f"db_dir {db_dir}: a packed database is read-only; tune into a folder",
                        arg="db_dir")
    if addr is not None:
        rpcmod.check(addr)
    return spec, addr, size


def _select_tasks(model: nn.Module, spec: T.TargetSpec, size: tuple[int, int], d: Path,
                  created: bool, op_names: Sequence[str] | None, frontend: str,
                  pipeline: str | None, say) -> tuple[dict, str, list]:
    """(meta, pipeline, the tasks to tune), checked before anything is written: a refusal
    here leaves nothing behind (a folder this call created goes too)."""
    try:
        meta, pipeline = _check_meta(d, spec, pipeline)
        say("[tune] extracting tasks of %s at %dx%d for %s (%s pipeline)",
            type(model).__name__, *size, spec.name, pipeline)
        _, all_tasks = extract(model, spec, size, frontend, pipeline)
        sel = [t for t in all_tasks if not op_names or any(o in t.task_name for o in op_names)]
        if not sel:
            raise UserError(f"op_names {','.join(op_names or [])}: matches none of the "
                            f"{len(all_tasks)} tasks (e.g. {all_tasks[0].task_name})",
                            arg="op_names")
    except BaseException:
        if created:
            _remove_new_folder(d)
        raise
    return meta, pipeline, sel


def _prepare(model: nn.Module, spec: T.TargetSpec, addr: Any, size: tuple[int, int],
             d: Path, created: bool, trials: int, per_round: int,
             op_names: Sequence[str] | None, frontend: str, seed: int, cost_model: str,
             pipeline: str | None, schedule: str, builder: str, verbose_tvm: bool,
             max_seconds: float | None, stop: _Stop, say) -> _Run:
    """Check and write the meta, open the database, make the tasks' contexts, the
    builder, runner and cost model: the run, ready for its first round."""
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts
    here = addr is None and spec.target.get("kind") == "llvm"
    t_start = time.perf_counter()
    meta, pipeline, sel = _select_tasks(model, spec, size, d, created, op_names, frontend,
                                        pipeline, say)
    threads = _settle_meta(d, meta, spec, size, timed_here=here)
    if threads:
        say("[tune] candidates timed on %d threads", threads)
    seeding = pl.get(pipeline).seeds and spec.target.get("kind") == "llvm"
    db = dbm.open_database(d, create=True, write=True)
    before = len(db.get_all_tuning_records())
    stats = {"skipped": 0}
    _quiet_tvm(verbose_tvm)
    import_tensor_intrinsics()   # what the contexts import, in seconds (see .intrinsics)
    with _foreign_handlers_detached():
        ctxs, weights = extracted_tasks_to_tune_contexts(
            sel, work_dir=str(d), strategy=search.dedup_search(stats), seed=seed,
            num_threads="physical")
    tasks = []
    for c, wt in zip(ctxs, weights):
        wl = db.commit_workload(c.mod)
        searched = not seeding or seedmod.searchable(c)
        have = len(db.get_top_k(wl, 1 << 30))
        # a large injective kernel (the fused decode) keeps its measured default schedule
        tasks.append(TaskState(c, float(wt), wl, _flops(c.mod), have, _best_ms(db, wl),
                               searched, closed=not searched and have > 0))
    reused = sum(1 for t in tasks if t.have)
    say("[tune] %d tasks (%d already in the database from earlier runs or models); "
        "target %d records, %d there now (%d in the database)",
        len(tasks), reused, trials, sum(t.have for t in tasks), before)
    cores = T.physical_cores()
    inproc = builder == "inprocess"
    cm = search.cost_model(cost_model, cores, seed)
    if reused and cost_model == "xgb":
        t0 = time.perf_counter()
        k = search.retrain(cm, ctxs, db)
        say("[tune] cost model retrained from %d database records in %.1f s", k,
            time.perf_counter() - t0)
    return _Run(d, spec, pipeline, trials, per_round, schedule, seeding, db, tasks,
                workers.in_process_builder() if inproc else workers.popen_builder(cores),
                rpcmod.runner(addr) if addr else
                workers.in_process_runner() if inproc else workers.local_runner(),
                cm, stats, stop, say, verbose_tvm, max_seconds, t_start, before, reused)


def _run_round(run: _Run, i: int) -> None:
    """One round of task ``i``: its seeds first (a task without records), then up to
    ``per_round`` searched candidates; the database and the task's state are updated."""
    from tvm.s_tir.meta_schedule.tune import tune_tasks
    t = run.tasks[i]
    k = min(run.per_round, max(1, run.trials - run.records()))
    t_round, exhausted = time.perf_counter(), run.stats.get("exhausted", 0)
    _quiet_tvm(run.verbose_tvm)
    run.stop.in_round = True   # a signal from here on ends the round, not the process
    try:
        if t.have == 0 and run.seeding:
            k -= seedmod.measure_seeds(t.ctx, run.builder, run.runner, run.db,
                                       limit=min(k, 4))
        if not t.searched:
            k, t.closed = 0, True
        if k > 0 and run.stop.signal is None:
            with _foreign_handlers_detached():
                tune_tasks(tasks=[t.ctx], task_weights=[t.weight], work_dir=str(run.d),
                           max_trials_global=k, max_trials_per_task=k, num_trials_per_iter=k,
                           builder=run.builder, runner=run.runner, database=run.db,
                           cost_model=run.cost_model, task_scheduler="round-robin")
    finally:
        run.stop.in_round = False
    t.spent_s += time.perf_counter() - t_round
    new = len(run.db.get_top_k(t.workload, 1 << 30))
    t.stalled = t.stalled + 1 if new == t.have else 0
    if run.stats.get("exhausted", 0) > exhausted:   # the search found nothing unmeasured
        t.closed = True
    run.measured += new - t.have
    t.have, t.best_ms = new, _best_ms(run.db, t.workload)
    _log_round(run, i)


def _log_round(run: _Run, i: int) -> None:
    """The round's progress line (and the curve point); ends the run past max_seconds."""
    t = run.tasks[i]
    el = time.perf_counter() - run.t_start
    est, untuned = run.estimate()
    run.curve.append((el, run.measured, est, untuned))
    left = el / max(run.measured, 1) * max(run.trials - run.records(), 0)
    if run.max_seconds is not None:
        left = min(left, max(run.max_seconds - el, 0.0))
    run.say("[tune] task %d/%d %-32s %4d records, best %s | %d/%d | estimate %.2f ms%s | "
            "%s elapsed, ~%s left", i + 1, len(run.tasks), t.ctx.task_name[:32], t.have,
            "-" if t.best_ms is None else f"{t.best_ms:.4f} ms", run.records(), run.trials,
            est, f" ({untuned} tasks untuned)" if untuned else "", _fmt_s(el), _fmt_s(left))
    if run.max_seconds is not None and el > run.max_seconds and run.stop.signal is None:
        run.say("[tune] max_seconds %g reached; rerun the same command to continue",
                run.max_seconds)
        run.stop.signal = "max_seconds"


def _finish(run: _Run, after: int) -> TuneReport:
    """The report and its closing line; a Ctrl-C or SIGTERM that stopped the run is
    re-raised once the lock is released."""
    est, _ = run.estimate()
    missing = [t.ctx.task_name for t in run.tasks if t.best_ms is None]
    rep = TuneReport(str(run.d), run.spec.name, len(run.tasks), run.before, after,
                     run.measured, run.stats["skipped"], time.perf_counter() - run.t_start,
                     None if missing else est, missing, run.reused, run.pipeline,
                     run.stop.signal, run.curve)
    run.say("[tune] %s: %d new records (%d in database), %d duplicate candidates skipped, "
            "%s%s", "stopped" if run.stop.signal else "done", run.measured, after,
            run.stats["skipped"], _fmt_s(rep.seconds),
            f", kernel-sum estimate {est:.2f} ms" if not missing else
            f", {len(missing)} tasks still without a record")
    if run.stop.signal == "SIGINT":
        raise KeyboardInterrupt
    if run.stop.signal == "SIGTERM":
        os.kill(os.getpid(), signal.SIGTERM)  # the previous handler is back: act as it would
    return rep


def report_dict(rep: TuneReport) -> dict:
    return asdict(rep)


__all__ = ["TuneReport", "extract", "report_dict", "tune"]
