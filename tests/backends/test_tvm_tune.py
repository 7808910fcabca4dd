"""MetaSchedule tuning: resumes from its database without re-measuring, reuses workloads
another model tuned, measures through an RPC tracker started here, stops on Ctrl-C with the
database intact, never unpickles a file from the database folder, and the tuned (layout-
rewritten) library still equals PyTorch."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

tvm = pytest.importorskip("tvm")

from yolov7c.backends import common as bx  # noqa: E402
from yolov7c.backends import tvm as btvm  # noqa: E402
from yolov7c.backends.tvm import database as dbm  # noqa: E402
from yolov7c.errors import UserError  # noqa: E402

# two cheap tasks of the synthetic P5 net at 128: one conv, one max-pool (names in both the
# nhwc and the prepack pipelines)
OPS = ["conv2d13", "max_pool2d3"]


def _records(db_dir):
    """[(hash of the workload, hash of the scheduled IR)] of every record in the database."""
    import tvm_ffi
    db = dbm.open_database(db_dir)
    return [(tvm_ffi.structural_hash(rec.workload.mod),
             tvm_ffi.structural_hash(rec.as_measure_candidate().sch.mod))
            for rec in db.get_all_tuning_records()]


@pytest.mark.slow
def test_tune_resumes_without_repeats(tmp_path, tiny_p5, bk):
    db = tmp_path / "db"
    kw = dict(op_names=OPS, per_round=2, cost_model="random", progress=False)
    r1 = btvm.tune(tiny_p5, "llvm", 128, db, trials=2, **kw)
    first = _records(db)
    assert r1.tasks == 2 and len(first) == r1.records_after >= 2
    # "killed" after the first run: a torn half-written line at the end must not break resume
    with open(db / "database_tuning_record.json", "a") as f:
        f.write('[0, [[["sample_perfect_tile"')
    r2 = btvm.tune(tiny_p5, "llvm", 128, db, trials=6, **kw)
    second = _records(db)
    # candidates were timed on the thread pool the database records (its first run's)
    threads = json.loads((db / "tune_meta.json").read_text())["threads"]
    assert threads == tvm.get_global_func("runtime.NumThreads")() >= 1
    print(f"records: {len(first)} -> {len(second)}; duplicates skipped {r2.skipped_duplicates}")
    assert r2.records_before == len(first)
    assert len(second) > len(first)
    assert set(first) <= set(second)                       # nothing lost
    assert len(set(second)) == len(second), "a candidate was measured twice"

    # the tuned build (records for 2 tasks, the rest untuned) still equals PyTorch
    out = tmp_path / "tuned.so"
    meta = btvm.compile_model(tiny_p5, "llvm", 128, out, db_dir=db, verbose=False)
    assert meta.tuned_records == len(second)
    x = bx.example_input(tiny_p5, 128, seed=7)
    with torch.no_grad():
        ref = [t.numpy() for t in bx.Outputs(tiny_p5)(x)]
    bk.assert_close(ref, btvm.load(out)(x), "tvm-tuned")


def test_db_for_other_target_is_refused(tmp_path, tiny_p5):
    db = tmp_path / "db"
    db.mkdir()
    (db / dbm.META).write_text('{"target": "{\\"kind\\":\\"llvm\\",\\"mcpu\\":\\"x\\"}"}')
    # an unknown mcpu is LLVM's generic CPU: another vector class than any real host's
    with pytest.raises(UserError, match=r"tuned for sse \(x\), this CPU is .*: .*tune into "
                                        r"a new db_dir on this CPU"):
        btvm.tune(tiny_p5, "llvm", 128, db, trials=2, op_names=OPS, progress=False)
    (db / dbm.META).write_text('{"target": "{\\"kind\\":\\"cuda\\",\\"arch\\":\\"sm_90\\"}"}')
    with pytest.raises(UserError, match="separate db_dir per target"):
        btvm.tune(tiny_p5, "llvm", 128, db, trials=2, op_names=OPS, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rpc_tracker():
    """A TVM RPC tracker and one CPU server on 127.0.0.1 (key 'ci'), stopped afterwards."""
    tport, sport = _free_port(), _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host",
                               "127.0.0.1", "--port", str(tport), "--port-end",
                               str(tport + 1)], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        from yolov7c.backends.tvm import rpc
        addr = rpc.TrackerAddress("127.0.0.1", tport, "ci")
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", tport), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port",
             str(sport), "--port-end", str(sport + 1), "--tracker", f"127.0.0.1:{tport}",
             "--key", "ci"], env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while True:
            try:
                if rpc.check(addr) >= 1:
                    break
            except UserError:
                pass
            if time.time() > deadline:
                raise RuntimeError("RPC server did not register with the tracker")
            time.sleep(0.5)
        yield str(addr)
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, 15)   # the group we created: the process and its workers
            except ProcessLookupError:
                pass
            p.wait(timeout=30)


@pytest.mark.slow
def test_tune_through_rpc_tracker(tmp_path, tiny_p5, rpc_tracker):
    db = tmp_path / "db"
    rep = btvm.tune(tiny_p5, "llvm", 128, db, trials=2, op_names=["max_pool2d3"],
                    per_round=2, rpc=rpc_tracker, cost_model="random", progress=False)
    print(f"rpc tuning: {rep.records_after} records in {rep.seconds:.0f} s")
    assert rep.records_after >= 1 and rep.untuned_tasks == []


def test_unreachable_tracker(tmp_path, tiny_p5):
    port = _free_port()  # nothing listens there
    t0 = time.time()
    with pytest.raises(UserError, match="tracker unreachable"):
        btvm.tune(tiny_p5, "llvm", 128, tmp_path / "db", trials=2,
                  rpc=f"127.0.0.1:{port}:rk3588", progress=False)
    assert time.time() - t0 < 30
    assert not (tmp_path / "db").exists()


def test_bad_rpc_and_device_targets(tmp_path, tiny_p5):
    with pytest.raises(UserError, match="expected host:port:key"):
        btvm.tune(tiny_p5, "llvm", 128, tmp_path / "db", trials=2, rpc="localhost:9190")
    with pytest.raises(UserError, match="must be measured on the device"):
        btvm.tune(tiny_p5, "mali", 128, tmp_path / "db", trials=2)
    with pytest.raises(UserError, match="max stride 32"):
        btvm.tune(tiny_p5, "llvm", 100, tmp_path / "db", trials=2)
    assert not (tmp_path / "db").exists()


def test_tvm_logger_setup_survives_foreign_handlers(tmp_path) -> None:
    """A handler TVM did not create on its meta-schedule logger (test runners and apps add
    them) must not break tuning: TVM 0.27 rebuilds its dictConfig from handler names."""
    import logging

    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from yolov7c.backends.tvm.tuning import META_SCHEDULE_LOGGER, _foreign_handlers_detached

    logger = logging.getLogger(META_SCHEDULE_LOGGER)
    foreign = logging.NullHandler()  # unnamed, like a capture handler
    logger.addHandler(foreign)
    try:
        with pytest.raises(AttributeError):  # what TVM does on its own
            get_loggers_from_work_dir(str(tmp_path / "a"), ["task"])
        with _foreign_handlers_detached():
            get_loggers_from_work_dir(str(tmp_path / "b"), ["task"])
        assert foreign in logger.handlers  # restored afterwards
    finally:
        logger.removeHandler(foreign)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["nhwc-fastexp", "prepack"])
def test_shared_workloads_are_not_tuned_again_and_the_build_equals_torch(tmp_path, bk,
                                                                         pipeline):
    """A database tuned for one model serves another with the same shapes (here: other
    weights), without re-measuring; the build from it (NHWC with seeded conv tilings, or
    NCHW; weights layout-rewritten in both) equals PyTorch; at another image size nothing
    matches and the build says "untuned"."""
    a, b = bk.make_tiny("p5", seed=0), bk.make_tiny("p5", seed=1)
    db = tmp_path / "db"
    kw = dict(per_round=2, cost_model="random", progress=False)
    r1 = btvm.tune(a, "llvm", 128, db, trials=2, op_names=["conv2d13"], pipeline=pipeline,
                   **kw)
    assert r1.pipeline == pipeline and r1.records_after == 2 and r1.reused_tasks == 0
    first = _records(db)
    r2 = btvm.tune(b, "llvm", 128, db, trials=4, op_names=OPS, **kw)
    second = _records(db)
    print(f"second model: {r2.reused_tasks} task reused, {r2.measured} new records")
    assert r2.reused_tasks == 1 and r2.measured == 2      # only the max-pool task was tuned
    conv_wl = {w for w, _ in first}
    assert [r for r in second if r[0] in conv_wl] == first  # conv records untouched

    out = tmp_path / "tuned.so"
    meta = btvm.compile_model(b, "llvm", 128, out, db_dir=db, verbose=False)
    assert meta.tasks_tuned == 2 and meta.pipeline == pipeline and "tuned:" in meta.notes[0]
    x = bx.example_input(b, 128, seed=7)
    with torch.no_grad():
        ref = [t.numpy() for t in bx.Outputs(b)(x)]
    bk.assert_close(ref, btvm.load(out)(x), f"tvm-{pipeline}-tuned")

    other = btvm.compile_model(b, "llvm", 64, tmp_path / "u.so", db_dir=db, verbose=False)
    assert other.tasks_tuned == 0 and other.tuned_records == 0
    assert other.notes[0].startswith("untuned: the database covers none of the")


CHILD = """
import signal, sys
sys.path.insert(0, sys.argv[2])
from conftest import make_tiny
from yolov7c.backends import tvm as btvm
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    btvm.tune(make_tiny("p5"), "llvm", 128, sys.argv[1], trials=1000, op_names=["conv2d"],
              per_round=2, cost_model="random", progress=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_and_a_second_tune_is_refused(tmp_path, tiny_p5):
    from pathlib import Path

    from yolov7c.backends.tvm import database as dbm
    db = tmp_path / "db"
    here = str(Path(__file__).parent)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(db), here],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    rec = db / dbm.RECORDS
    try:
        deadline = time.time() + 600
        while not (rec.exists() and rec.stat().st_size > 0):  # a round has been committed
            assert p.poll() is None and time.time() < deadline, "tuning did not start"
            time.sleep(0.5)
        # a second tune on the same database while the first runs: refused, clearly
        with pytest.raises(UserError, match=rf"in use by another tune \(pid {p.pid}\)"):
            btvm.tune(tiny_p5, "llvm", 128, db, trials=2, progress=False)
        time.sleep(3)  # let it get into the next round (TVM's C++ loop)
        t0 = time.time()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=120)
        took = time.time() - t0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    print(f"stopped {took:.1f} s after SIGINT, exit {rc}")
    assert rc == 130 and took < 30
    facts = dbm.validate(db)                  # intact: every line parses, no torn tail
    assert facts.torn == [] and facts.records >= 1
    assert len(dbm.open_database(db).get_all_tuning_records()) == facts.records
    assert not dbm.writer_alive(db)           # the lock went with it


EVIL = """
import os, sys, tarfile, numpy as np
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
d = sys.argv[1]
arr = np.empty(1, dtype=object); arr[0] = (Evil(), [], np.zeros(1))
np.save(os.path.join(d, "data.npy"), arr, allow_pickle=True)
with tarfile.open(os.path.join(d, "cost_model.tar"), "w") as tf:
    tf.add(os.path.join(d, "data.npy"), arcname="data.npy")
os.remove(os.path.join(d, "data.npy"))
"""


@pytest.mark.slow
def test_crafted_cost_model_file_is_never_unpickled(tmp_path, tiny_p5):
    db = tmp_path / "db"
    db.mkdir()
    sentinel = tmp_path / "pwned"
    subprocess.run([sys.executable, "-c", EVIL, str(db), str(sentinel)], check=True)
    # the file is a real threat: TVM's own loader runs the command
    probe = ("import sys; from tvm.s_tir.meta_schedule.cost_model import XGBModel\n"
             "try:\n    XGBModel().load(sys.argv[1])\nexcept Exception:\n    pass\n")
    subprocess.run([sys.executable, "-c", probe, str(db / "cost_model.tar")], check=True)
    assert sentinel.exists(), "the crafted file did not reproduce the attack"
    sentinel.unlink()
    # tuning into that folder (XGBoost cost model, records to retrain from) never loads it
    kw = dict(op_names=["max_pool2d3"], per_round=2, progress=False)
    btvm.tune(tiny_p5, "llvm", 128, db, trials=2, cost_model="random", **kw)
    rep = btvm.tune(tiny_p5, "llvm", 128, db, trials=4, cost_model="xgb", **kw)
    assert rep.reused_tasks == 1 and rep.records_after >= 3
    assert not sentinel.exists()


CPU_THREADS = """
import json, os, sys
os.environ.pop("TVM_NUM_THREADS", None)
import tvm
from yolov7c.backends.tvm import targets as T
num = tvm.get_global_func("runtime.NumThreads")
print(json.dumps({"physical": T.physical_cores(), "first": T.cpu_threads(),
                  "pool": num(), "lowered": T.cpu_threads(1), "pool_after": num()}))
"""


def test_tvm_cpu_pool_runs_one_thread_per_physical_core():
    """TVM sizes its pool as half the logical CPUs on x86 (assumed hyper-threading): one
    thread on a 2-core VM. The tuner and the runtime size it to the physical cores."""
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", CPU_THREADS], env=env, check=True,
                         capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    print(got)
    assert got["first"] == got["pool"] == got["physical"]
    assert got["lowered"] == got["pool_after"] == 1


def test_a_resumed_tune_times_on_the_threads_the_database_was_made_with(tmp_path, tiny_p5):
    db = tmp_path / "db"
    kw = dict(op_names=["max_pool2d3"], per_round=2, cost_model="random", progress=False)
    btvm.tune(tiny_p5, "llvm", 128, db, trials=1, **kw)
    meta = json.loads((db / "tune_meta.json").read_text())
    num = tvm.get_global_func("runtime.NumThreads")
    before = num()
    try:
        (db / "tune_meta.json").write_text(json.dumps(dict(meta, threads=1)))
        btvm.tune(tiny_p5, "llvm", 128, db, trials=2, **kw)
        assert num() == 1
        assert json.loads((db / "tune_meta.json").read_text())["threads"] == 1
    finally:
        from yolov7c.backends.tvm.targets import cpu_threads
        cpu_threads(before)
