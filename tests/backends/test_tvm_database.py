"""Tuning database hardening, fast: validation names file and line, the writer lock refuses
a second writer and takes over a dead one's, the database is tied to its CPU, bad arguments
are one-line errors, and a library without its sidecar is refused clearly."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tarfile

import pytest

tvm = pytest.importorskip("tvm")

from yolov7c.backends import tvm as btvm  # noqa: E402
from yolov7c.backends.tvm import database as dbm  # noqa: E402
from yolov7c.backends.tvm import search  # noqa: E402
from yolov7c.backends.tvm import targets as T  # noqa: E402
from yolov7c.errors import UserError  # noqa: E402

WL = '["123", "AAAA"]\n'


def _db(d, workloads: str, records: str, meta: dict | None = None):
    d.mkdir(parents=True, exist_ok=True)
    (d / dbm.WORKLOADS).write_text(workloads)
    (d / dbm.RECORDS).write_text(records)
    if meta is not None:
        (d / dbm.META).write_text(json.dumps(meta))
    return d


def test_record_pointing_at_unknown_workload_names_file_and_line(tmp_path):
    d = _db(tmp_path / "db", WL, '[0, [[], [0.1], {}, []]]\n[3, [[], [0.1], {}, []]]\n')
    with pytest.raises(UserError, match=r"database_tuning_record.json:2: corrupt tuning "
                                        r"database \(record points at workload 3, but "):
        dbm.validate(d)
    with pytest.raises(UserError, match="database_tuning_record.json:2"):
        dbm.open_database(d)   # TVM never sees the bad file


def test_garbage_line_in_the_middle_is_refused(tmp_path):
    d = _db(tmp_path / "db", WL + "not json\n" + WL, "")
    with pytest.raises(UserError, match="database_workload.json:2: corrupt"):
        dbm.validate(d)


def test_torn_last_line_is_tolerated_and_repaired(tmp_path):
    d = _db(tmp_path / "db", WL, '[0, [[], [0.1], {}, []]]\n[0, [[["sample_perf')
    facts = dbm.validate(d)
    assert (facts.workloads, facts.records, facts.torn) == (1, 1, [dbm.RECORDS])
    dbm._drop_torn_tail(d / dbm.RECORDS)
    assert dbm.validate(d).torn == []
    assert (d / dbm.RECORDS).read_text() == '[0, [[], [0.1], {}, []]]\n'


HOLD = """
import sys, time
from yolov7c.backends.tvm.database import DatabaseLock
with DatabaseLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def lock_held_by_another_process(d):
    """A child process holds ``d``'s lock for the block, and is killed (not cleaned up) after."""
    d.mkdir()
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        yield p
    finally:
        p.kill()
        p.wait()


def test_lock_refuses_a_second_writer_and_takes_over_a_dead_one(tmp_path):
    d = tmp_path / "db"
    with lock_held_by_another_process(d) as p:
        with pytest.raises(UserError, match=rf"in use by another tune \(pid {p.pid}\)"):
            with dbm.DatabaseLock(d):
                pass
        assert dbm.writer_alive(d)
    # the holder died without cleaning up: its lock file (with its pid) is taken over
    assert (d / dbm.LOCK).read_text().strip() == str(p.pid)
    assert not dbm.writer_alive(d)
    with dbm.DatabaseLock(d):
        assert (d / dbm.LOCK).read_text().strip() == str(os.getpid())


def test_tune_refuses_a_locked_database(tmp_path, tiny_p5):
    d = tmp_path / "db"
    with lock_held_by_another_process(d) as p:
        with pytest.raises(UserError, match=rf"db_dir .*in use by another tune \(pid {p.pid}\)"):
            btvm.tune(tiny_p5, "llvm", 128, d, trials=2, progress=False)
    assert not (d / dbm.META).exists()  # refused before touching anything


def _meta(mcpu: str, isa: list[str]) -> dict:
    tgt = {"kind": "llvm", "mtriple": "x86_64-conda-linux-gnu", "mcpu": mcpu, "num-cores": 2}
    return {"target": json.dumps(tgt), "cpu": {"mcpu": mcpu, "isa": isa}, "pipeline": "prepack"}


def test_database_of_another_cpu_is_refused_everywhere(tmp_path, tiny_p5):
    other = "znver4" if T.host_cpu()["mcpu"] != "znver4" else "skylake"
    d = _db(tmp_path / "db", "", "", _meta(other, ["avx2", "avx512f"]))
    here = T.host_cpu()["mcpu"]
    msg = rf"db_dir .*: tuned for {other} \(avx2,avx512f\), this CPU is {here}.*: re-tune"
    with pytest.raises(UserError, match=msg):
        btvm.compile_model(tiny_p5, "llvm", 128, tmp_path / "x.so", db_dir=d, verbose=False)
    with pytest.raises(UserError, match=msg):
        btvm.tune(tiny_p5, "llvm", 128, d, trials=2, progress=False)
    assert not (tmp_path / "x.so").exists()
    # same mcpu but other ISA flags (a VM that hides AVX-512, say): also a mismatch
    ident = T.cpu_identity()
    if ident["isa"]:
        m = _meta(here, ["sse4_2"])
        with pytest.raises(UserError, match="this CPU is"):
            dbm.check_cpu(d, m, T.host_cpu(), ident, explicit_mcpu=False)
        dbm.check_cpu(d, _meta(here, ident["isa"]), T.host_cpu(), ident, explicit_mcpu=False)


def test_shipped_database_records_its_cpu():
    from pathlib import Path
    p = Path(__file__).resolve().parents[2] / "benchmarks" / "tune_db"
    dbs = sorted(p.glob("*.tar.gz"))
    if not dbs:
        pytest.skip("no shipped database")
    for db in dbs:
        meta = dbm.read_meta(dbm.unpack_database(db))
        cpu = dbm.meta_cpu(meta)
        assert cpu["mcpu"] and cpu["mcpu"] in db.name, (db.name, cpu)


def test_packed_database_extracts_only_known_files(tmp_path):
    src = _db(tmp_path / "src", WL, "")
    (tmp_path / "evil").write_text("x")
    packed = tmp_path / "db.tar.gz"
    with tarfile.open(packed, "w:gz") as tf:
        tf.add(src / dbm.WORKLOADS, arcname=dbm.WORKLOADS)
        tf.add(tmp_path / "evil", arcname="../evil2")
        tf.add(tmp_path / "evil", arcname="sub/" + dbm.RECORDS)
    out = dbm.unpack_database(packed)
    assert sorted(os.listdir(out)) == [dbm.WORKLOADS]
    assert not (tmp_path.parent / "evil2").exists()
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(UserError, match="not a readable .tar.gz database"):
        dbm.unpack_database(tmp_path / "bad.tar.gz")


@pytest.mark.parametrize("kw,arg", [({"per_round": 0}, "per_round"),
                                    ({"trials": 0}, "trials"),
                                    ({"per_round": -3}, "per_round"),
                                    ({"pipeline": "fast"}, "pipeline"),
                                    ({"schedule": "random"}, "schedule")])
def test_bad_tune_arguments_are_one_line_errors(tmp_path, tiny_p5, kw, arg):
    args = {"trials": 4, **kw}
    with pytest.raises(UserError) as e:
        btvm.tune(tiny_p5, "llvm", 128, tmp_path / "db", progress=False, **args)
    assert e.value.arg == arg and "\n" not in str(e.value) and str(e.value).startswith(arg)
    assert not (tmp_path / "db").exists()


def test_bad_cuda_arch_is_one_line(tmp_path, tiny_p5):
    with pytest.raises(UserError, match=r"arch 'sm_999': not a CUDA SM architecture") as e:
        btvm.compile_model(tiny_p5, "cuda", 128, tmp_path / "x.so", arch="sm_999")
    assert e.value.arg == "arch" and len(str(e.value)) < 300
    assert T.check_cuda_arch("sm_90a") == "sm_90a"
    assert os.listdir(tmp_path) == []


def test_missing_database_and_library_sidecar(tmp_path, tiny_p5):
    with pytest.raises(UserError, match="no tuning database there") as e:
        btvm.compile_model(tiny_p5, "llvm", 128, tmp_path / "x.so", db_dir=tmp_path / "no")
    assert e.value.arg == "db_dir"
    lib = tmp_path / "m.so"
    lib.write_bytes(b"\x7fELF")
    with pytest.raises(UserError, match=r"no sidecar m.so.json beside the library") as e:
        btvm.load(lib)
    assert e.value.arg == "path"
    (tmp_path / "m.so.json").write_text('{"target": "llvm"}')
    with pytest.raises(UserError, match="not a sidecar written by compile"):
        btvm.load(lib)


def test_next_task_spends_the_budget_where_the_time_is():
    # every task gets a first round, in order
    assert search.next_task([3, 0, 0], [1.0, None, None], [1, 1, 1], [True] * 3) == 1
    # then the largest latency share per trial spent: task 2 (weight 4 x 1 ms / sqrt 4)
    assert search.next_task([4, 4, 4], [1.0, 0.5, 1.0], [1, 1, 4], [True] * 3) == 2
    assert search.next_task([4, 4, 16], [1.0, 0.5, 1.0], [1, 1, 4], [True] * 3) == 2
    assert search.next_task([4, 4, 64], [1.0, 0.5, 1.0], [1, 1, 4], [True] * 3) == 0
    # closed (stalled) tasks are skipped; round-robin takes the fewest records
    assert search.next_task([4, 4, 4], [1.0, 0.5, 1.0], [1, 1, 4], [True, True, False]) == 0
    assert search.next_task([4, 2, 4], [1.0, 0.5, 9.0], [1, 1, 4], [True] * 3,
                            "round-robin") == 1
    assert search.next_task([1], [1.0], [1], [False]) is None
    # by seconds spent: task 2 has the largest share (4 ms) but its rounds took 10 min,
    # task 0 (1 ms) took 10 s: task 0 goes next (1/sqrt(10) > 4/sqrt(600))
    assert search.next_task([4, 4, 4], [1.0, 0.5, 1.0], [1, 1, 4], [True] * 3,
                            spent_s=[10.0, 10.0, 600.0]) == 0
    assert search.next_task([4, 4, 4], [1.0, 0.5, 1.0], [1, 1, 4], [True] * 3,
                            spent_s=[10.0, 10.0, 60.0]) == 2



class _ExhaustedSearch:
    """An inner search whose design space has nothing left to measure: every generation
    comes back empty (TVM's EvolutionarySearch would be asked again and again)."""

    def __init__(self) -> None:
        self.calls = 0

    def generate_measure_candidates(self):
        self.calls += 1
        return []


def test_a_round_ends_when_the_search_comes_back_empty():
    stats = {"skipped": 0}
    inner = _ExhaustedSearch()
    strategy = search._dedup_search_class()(inner, stats)
    assert strategy.generate_measure_candidates() is None
    assert inner.calls == search.MAX_EMPTY_GENERATIONS and stats["exhausted"] == 1

@pytest.mark.slow
def test_shipped_database_builds_a_complete_library_equal_to_torch_on_its_cpu(tmp_path, bk):
    """On the CPU a shipped database was tuned for, it covers every kernel of its model and
    the library equals PyTorch (elsewhere the CPU check refuses it: tested above)."""
    import re
    from pathlib import Path

    import torch

    from yolov7c.backends import common as bx
    dbs = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "tune_db")
                 .glob("*_*_*.tar.gz"))
    here = [d for d in dbs if d.name.endswith(f"_{T.host_cpu()['mcpu']}.tar.gz")]
    if not here:
        pytest.skip(f"no shipped database for {T.host_cpu()['mcpu']}")
    db = here[0]
    name, img = re.match(r"(.+)_(\d+)_[^_]+\.tar\.gz$", db.name).groups()
    model = bk.deploy_model(name)
    meta = btvm.compile_model(model, "llvm", int(img), tmp_path / "m.so", db_dir=db,
                              verbose=False)
    print(meta.notes[0])
    assert meta.tasks_tuned == meta.tasks
    x = bx.example_input(model, int(img), seed=1)
    with torch.no_grad():
        ref = [t.numpy() for t in bx.Outputs(model)(x)]
    bk.assert_close(ref, btvm.load(tmp_path / "m.so")(x), f"shipped-{db.name}")
