"""Resumable MetaSchedule tuning into a database directory (``tvm.s_tir.meta_schedule``).

Why not one ``tune_relax`` call: in TVM 0.27 the gradient task scheduler only writes
records after its first full pass over all tasks (a kill in the first ~15 min loses
everything), its trial budget restarts from zero on every call, its evolutionary search
re-measures candidates already in the database, and the XGB cost model is thrown away.
So this module drives ``tune_tasks`` itself, one task and one round (``per_round`` trials)
at a time, round-robin over tasks:

- records are committed after every task round (a kill loses at most one round);
- the budget ``trials`` is the database's size target: a restart tops it up;
- :class:`DedupSearch` drops candidates whose scheduled IR is already in the database;
- the cost model is shared across tasks and saved in the directory (``cost_model.tar``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from torch import nn

from ...errors import UserError
from ..onnx import check_img_size
from . import rpc as rpcmod
from . import targets as T
from .frontend import to_relax

META = "tune_meta.json"
DB_FILES = ("database_workload.json", "database_tuning_record.json")


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


# --------------------------------------------------------------------------- database


def _repair_jsonl(path: Path) -> None:
    """Drop a torn last line (a kill mid-append) so the database loads; rewrite atomically."""
    if not path.exists():
        return
    lines = path.read_bytes().splitlines(keepends=True)
    keep = len(lines)
    while keep and not _valid_json(lines[keep - 1]):
        keep -= 1
    if keep != len(lines) or (lines and not lines[-1].endswith(b"\n")):
        tmp = path.with_name(path.name + ".repair")
        body = b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in lines[:keep])
        tmp.write_bytes(body)
        os.replace(tmp, path)


def _valid_json(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def is_packed(db: str | os.PathLike) -> bool:
    return str(db).endswith((".tar.gz", ".tgz")) and Path(db).is_file()


def unpack_database(db: str | os.PathLike) -> Path:
    """A packed database (``.tar.gz`` from :func:`pack_database`) extracted to a temp dir."""
    import atexit
    import shutil
    import tarfile
    d = Path(tempfile.mkdtemp(prefix="yolov7c-db-"))
    atexit.register(shutil.rmtree, d, True)
    with tarfile.open(db, "r:gz") as tf:
        members = [m for m in tf.getmembers() if m.isfile() and "/" not in m.name
                   and m.name in (*DB_FILES, META)]
        tf.extractall(d, members=members)
    return d


def pack_database(src: str | os.PathLike, dst: str | os.PathLike, top_k: int = 1) -> int:
    """Best ``top_k`` records per workload of ``src`` as one small ``.tar.gz`` (atomic)."""
    import tarfile
    with tempfile.TemporaryDirectory() as tmp:
        n = prune_database(src, tmp, top_k)
        part = Path(str(dst) + ".part")
        with tarfile.open(part, "w:gz") as tf:
            for f in (*DB_FILES, META):
                if (Path(tmp) / f).exists():
                    tf.add(Path(tmp) / f, arcname=f)
        os.replace(part, dst)
    return n


def open_database(db_dir: str | os.PathLike, create: bool = False):
    """The ``JSONDatabase`` in ``db_dir`` (repaired after a kill; created if asked).

    A ``.tar.gz`` from :func:`pack_database` is accepted read-only (extracted to a temp dir).
    """
    from tvm.s_tir import meta_schedule as ms

    if is_packed(db_dir):
        db_dir = unpack_database(db_dir)
    d = Path(db_dir)
    if not create and not (d / DB_FILES[0]).exists():
        raise UserError(f"--db {d}: no tuning database there; run `yolov7c tune` first")
    d.mkdir(parents=True, exist_ok=True)
    for f in DB_FILES:
        _repair_jsonl(d / f)
    return ms.database.JSONDatabase(work_dir=str(d), module_equality="structural")


def _check_meta(d: Path, target_json: str, img: tuple[int, int]) -> None:
    """A database belongs to one target: refuse to mix schedules for different CPUs/GPUs."""
    p = d / META
    if p.exists():
        old = json.loads(p.read_text())
        if old.get("target") != target_json:
            raise UserError(f"--db {d}: tuned for {old.get('target')}, not {target_json}; use a "
                            "separate --db per target")
        return
    tmp = p.with_name(META + ".tmp")
    tmp.write_text(json.dumps({"target": target_json, "img": list(img)}, indent=1))
    os.replace(tmp, p)


def prune_database(src: str | os.PathLike, dst: str | os.PathLike, top_k: int = 1) -> int:
    """Copy the best ``top_k`` records per workload into a new database (small, for shipping).

    Returns the number of records written. ``tune_meta.json`` is copied along.
    """
    from tvm.s_tir import meta_schedule as ms
    s = open_database(src)
    workloads: list = []
    for rec in s.get_all_tuning_records():
        if not any(w.same_as(rec.workload) for w in workloads):
            workloads.append(rec.workload)
    d = Path(dst)
    d.mkdir(parents=True, exist_ok=True)
    out = ms.database.JSONDatabase(work_dir=str(d), module_equality="structural")
    n = 0
    for wl in workloads:
        new_wl = out.commit_workload(wl.mod)
        for best in s.get_top_k(wl, top_k):
            out.commit_tuning_record(ms.database.TuningRecord(
                best.trace, new_wl, best.run_secs, best.target, best.args_info))
            n += 1
    if (Path(src) / META).exists():
        (d / META).write_text((Path(src) / META).read_text())
    return n


# --------------------------------------------------------------------------- search strategy


def _dedup_search_class():
    """Build the class lazily: ``derived_object`` needs TVM imported."""
    import tvm_ffi
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import RunnerResult
    from tvm.s_tir.meta_schedule.search_strategy import EvolutionarySearch, PySearchStrategy

    @derived_object
    class DedupSearch(PySearchStrategy):
        """EvolutionarySearch that never sends a candidate already in the database.

        TVM 0.27's search only remembers candidates measured in the current call, so after a
        restart it re-measures the database's best records (they seed its population).
        """

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
            for _ in range(16):  # bounded: duplicates still advance the inner trial counter
                cands = self.inner.generate_measure_candidates()
                if cands is None:
                    return None
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


# --------------------------------------------------------------------------- driver


def _builder(num_workers: int):
    import cloudpickle
    from tvm.s_tir.meta_schedule.builder import LocalBuilder
    from . import _msbuild
    cloudpickle.register_pickle_by_value(_msbuild)  # workers need not import yolov7c
    return LocalBuilder(f_build=_msbuild.fast_build, timeout_sec=120, max_workers=num_workers)


def _local_runner():
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, LocalRunner
    # LocalRunner times one candidate at a time in a single popen worker
    return LocalRunner(timeout_sec=60, evaluator_config=EvaluatorConfig(
        number=3, repeat=1, min_repeat_ms=50))


META_SCHEDULE_LOGGER = "tvm.s_tir.meta_schedule"


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
            frontend: str = "torch"):
    """(Relax module, fused module, extracted tasks) for ``model`` on ``spec``."""
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    mod = to_relax(model, img, frontend=frontend)
    target = spec.tvm_target()
    with target:
        fused = relax.get_pipeline("zero")(mod)
    return mod, fused, ms.relax_integration.extract_tasks(fused, target)


def tune(model: nn.Module, target: str, img: int | Sequence[int], db_dir: str | os.PathLike,
         trials: int, *, rpc: str | None = None, op_names: Sequence[str] | None = None,
         per_round: int = 16, arch: str | None = None, mcpu: str | None = None,
         frontend: str = "torch", seed: int = 0, max_seconds: float | None = None,
         cost_model: str = "xgb", progress: bool = True) -> TuneReport:
    """Tune ``model``'s kernels for ``target`` until ``db_dir`` holds ``trials`` measured
    candidates (over the selected tasks); resumes whatever a previous run left.

    ``rpc`` = "host:port:key" measures on a device behind a TVM RPC tracker (needed for
    targets that do not run here). ``op_names`` restricts tuning to tasks whose name contains
    one of the strings. ``max_seconds`` stops after the round that crosses it.
    ``cost_model="random"`` skips XGBoost training (~10 s per round here; for tests).
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts
    from tvm.s_tir.meta_schedule.tune import tune_tasks

    if trials <= 0:
        raise UserError(f"--trials {trials}: must be a positive number of measurements")
    spec = T.resolve(target, arch=arch, mcpu=mcpu)
    addr = rpcmod.parse(rpc) if rpc else None
    if addr is None and not spec.runs_here:
        raise UserError(f"--target {spec.name}: kernels must be measured on the device; pass "
                        "--rpc host:port:key of a TVM RPC tracker with that device")
    if spec.name == "vulkan":
        T.check_toolchain(spec)
    h, w = check_img_size(model, img)
    if addr is not None:
        rpcmod.check(addr)
    log = (lambda s: print(f"[tune] {s}", file=sys.stderr, flush=True)) if progress \
        else (lambda s: None)

    d = Path(db_dir)
    d.mkdir(parents=True, exist_ok=True)
    target_obj = spec.tvm_target()
    _check_meta(d, str(target_obj), (h, w))
    db = open_database(d, create=True)
    before = len(db.get_all_tuning_records())

    t_start = time.perf_counter()
    log(f"extracting tasks of {type(model).__name__} at {h}x{w} for {spec.name}")
    _, _, all_tasks = extract(model, spec, (h, w), frontend)
    log(f"{len(all_tasks)} tasks extracted in {_fmt_s(time.perf_counter() - t_start)}")
    sel = [t for t in all_tasks if not op_names or any(o in t.task_name for o in op_names)]
    if not sel:
        raise UserError(f"--op-names {','.join(op_names or [])}: matches none of the "
                        f"{len(all_tasks)} tasks (e.g. {all_tasks[0].task_name})")
    stats = {"skipped": 0}
    strategy = _dedup_search_class()(None, stats)
    with _foreign_handlers_detached():
        ctxs, weights = extracted_tasks_to_tune_contexts(
            sel, work_dir=str(d), strategy=strategy, seed=seed, num_threads="physical")
    n = len(ctxs)
    wls = [db.commit_workload(c.mod) for c in ctxs]
    count = lambda i: len(db.get_top_k(wls[i], 1 << 30))  # noqa: E731
    have = [count(i) for i in range(n)]
    goal = max(1, math.ceil(trials / n))
    log(f"{n} tasks, goal {goal} trials each ({n * goal} total); database has {sum(have)} "
        f"records for them ({before} in all)")

    cores = T.physical_cores()
    builder = _builder(cores)
    runner = rpcmod.runner(addr) if addr else _local_runner()
    cm_path = d / "cost_model.tar"
    if cost_model == "random":
        cm = ms.cost_model.RandomModel(seed=seed)
    else:
        cm = ms.cost_model.XGBModel(num_tuning_cores=cores, adaptive_training=True)
        if cm_path.exists():
            try:
                cm.load(str(cm_path))
            except Exception:  # noqa: BLE001 - a stale/torn cost model is only an optimisation
                log("cost model file unreadable; starting a fresh one")
    measured, stalled, rnd = 0, [0] * n, 0
    stop = False
    while not stop:
        rnd += 1
        todo = [i for i in range(n) if have[i] < goal and stalled[i] < 2]
        if not todo:
            break
        for i in todo:
            k = min(per_round, goal - have[i])
            tune_tasks(tasks=[ctxs[i]], task_weights=[weights[i]], work_dir=str(d),
                       max_trials_global=k, max_trials_per_task=k, num_trials_per_iter=k,
                       builder=builder, runner=runner, database=db, cost_model=cm,
                       task_scheduler="round-robin")
            new = count(i)
            stalled[i] = stalled[i] + 1 if new == have[i] else 0
            measured += new - have[i]
            have[i] = new
            if getattr(cm, "booster", None) is not None:
                tmp = cm_path.with_name(cm_path.name + ".tmp.tar")
                cm.save(str(tmp))
                os.replace(tmp, cm_path)
            el = time.perf_counter() - t_start
            done = sum(min(v, goal) for v in have)
            left = sum(goal - v for v, st in zip(have, stalled) if v < goal and st < 2)
            rate = el / max(measured, 1)
            best = _best_ms(db, wls[i])
            log(f"round {rnd} task {i + 1}/{n} {ctxs[i].task_name[:40]:40s} {have[i]:4d}/{goal} "
                f"best {'-' if best is None else f'{best:.4f} ms'} | total {done}/{n * goal} "
                f"| {_fmt_s(el)} elapsed, ~{_fmt_s(rate * left)} left")
            if max_seconds is not None and el > max_seconds:
                log(f"--max-seconds {max_seconds:g} reached; rerun the same command to continue")
                stop = True
                break
    est, missing = 0.0, []
    for i in range(n):
        b = _best_ms(db, wls[i])
        if b is None:
            missing.append(ctxs[i].task_name)
        else:
            est += b * weights[i]
    after = len(db.get_all_tuning_records())
    rep = TuneReport(str(d), spec.name, n, before, after, measured, stats["skipped"],
                     time.perf_counter() - t_start, None if missing else est, missing)
    log(f"done: {measured} new records ({after} in database), {stats['skipped']} duplicate "
        f"candidates skipped, {_fmt_s(rep.seconds)}" +
        (f", kernel-sum estimate {est:.2f} ms" if not missing else
         f", {len(missing)} tasks still without a record"))
    return rep


def report_dict(rep: TuneReport) -> dict:
    return asdict(rep)
