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

def _workload_line(graph: str = '{"root_index": 0, "nodes": []}', h: str = "123") -> str:
    """A workload line as TVM writes it: [hash, base64(8-byte length + JSON graph)]."""
    import base64
    body = graph.encode()
    return json.dumps([h, base64.b64encode(len(body).to_bytes(8, "little") + body).decode()])


WL = _workload_line() + "\n"


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


# faked /proc/cpuinfo texts: an emeraldrapids VM (the tuning machine of the shipped
# databases), the same model with three extensions hidden (the CI machine of issue 23), one
# with an extra extension, an AMD AVX-512 CPU and an AMD AVX2 one (this project's Zen 3)
EMR_FLAGS = ("fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 movbe popcnt avx f16c abm bmi1 avx2 "
             "bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx512ifma avx512vbmi "
             "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq "
             "avx_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8")
HIDDEN = ("avx_vnni", "avx512_bf16", "avx512_fp16")
ZEN4_FLAGS = ("fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 movbe popcnt avx f16c abm bmi1 avx2 "
              "bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx512ifma avx512vbmi "
              "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg "
              "avx512_vpopcntdq avx512_bf16")
ZEN3_FLAGS = ("fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 movbe popcnt avx f16c abm bmi1 avx2 "
              "bmi2 vaes vpclmulqdq")


def _cpuinfo(vendor: str, flags: str, cache: str = "2048 KB") -> str:
    return (f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: fake\n"
            f"cache size\t: {cache}\nflags\t\t: {flags}\n\nprocessor\t: 1\n")


INTEL, AMD = "GenuineIntel", "AuthenticAMD"
EMR = _cpuinfo(INTEL, EMR_FLAGS)
EMR_HIDDEN = _cpuinfo(INTEL, " ".join(f for f in EMR_FLAGS.split() if f not in HIDDEN))
EMR_MORE = _cpuinfo(INTEL, EMR_FLAGS + " avx512_vp2intersect amx_fp16")
ZEN4 = _cpuinfo(AMD, ZEN4_FLAGS, "1024 KB")
ZEN3 = _cpuinfo(AMD, ZEN3_FLAGS, "512 KB")


def _facts(text: str, monkeypatch) -> dict:
    """This machine's CPU facts as if /proc/cpuinfo read ``text``."""
    monkeypatch.setattr(T, "read_cpuinfo", lambda: text)
    return T.cpu_facts()


def _tuned_on(text: str, monkeypatch) -> dict:
    """The meta a tune on a CPU with cpuinfo ``text`` writes."""
    facts = _facts(text, monkeypatch)
    return {"target": json.dumps(T.host_cpu()), "cpu": facts, "pipeline": "nhwc-winograd",
            "img": [[416, 416]]}


@pytest.mark.parametrize("tuned,here,expect", [
    (EMR, EMR, None),                                          # identical
    (EMR, EMR_MORE, "+amx_fp16 +avx512_vp2intersect"),         # superset: more here
    (EMR, EMR_HIDDEN, "-avx512_bf16 -avx512_fp16 -avx_vnni"),  # subset: issue 23's CI VM
    (ZEN4, EMR, "vendor AuthenticAMD→GenuineIntel"),           # other vendor, same class
])
def test_database_of_the_same_vector_class_is_used(tmp_path, monkeypatch, tuned, here, expect):
    meta = _tuned_on(tuned, monkeypatch)
    ident = _facts(here, monkeypatch)
    note = dbm.check_cpu(tmp_path, meta, ident)
    if expect is None:
        assert note is None
    else:
        assert expect in note and "\n" not in note, note
    # the library is built with this CPU's own features: never an instruction it lacks
    mattr = T.host_mattr(here)
    for flag in HIDDEN:
        feat = T.X86_FEATURES[flag]
        assert (f"-{feat}" in mattr) == (flag not in here.split())


def test_database_of_another_vector_class_is_refused_with_the_features_and_a_flag(
        tmp_path, monkeypatch):
    meta = _tuned_on(EMR, monkeypatch)
    ident = _facts(ZEN3, monkeypatch)
    with pytest.raises(UserError) as e:
        dbm.check_cpu(tmp_path, meta, ident)
    msg = str(e.value)
    assert e.value.arg == "db_dir" and "\n" not in msg
    assert "tuned for avx512" in msg and "this CPU is avx2" in msg
    assert "-avx512f" in msg and "-avx512_fp16" in msg and "db_any_cpu=True" in msg
    note = dbm.check_cpu(tmp_path, meta, ident, any_cpu=True)   # the fix it names works
    assert "used on avx2" in note
    assert T.vector_class(ident["isa"]) == "avx2"
    assert T.VECTOR_CLASSES["avx2"].lanes == 8 and T.VECTOR_CLASSES["avx2"].registers == 16


def test_database_of_another_class_is_refused_before_anything_is_built(tmp_path, tiny_p5,
                                                                        monkeypatch):
    """compile, tune and bench refuse at once (it took 158 s of building before), and
    db_any_cpu gets past the check; nothing is written."""
    from yolov7c.backends import bench
    from yolov7c.backends.tvm import compile as C
    from yolov7c.backends.tvm import tuning
    other = ZEN3 if T.cpu_facts()["vector"] != "avx2" else EMR
    d = _db(tmp_path / "db", WL, "", _tuned_on(other, monkeypatch))
    monkeypatch.undo()

    def no_build(*a, **k):
        raise AssertionError("the model was imported before the database was checked")
    monkeypatch.setattr(C, "to_relax", no_build)
    monkeypatch.setattr(tuning, "to_relax", no_build)
    msg = r"db_dir .*: tuned for .*, this CPU is .*db_any_cpu=True"
    with pytest.raises(UserError, match=msg):
        btvm.compile_model(tiny_p5, "llvm", 128, tmp_path / "x.so", db_dir=d, verbose=False)
    with pytest.raises(UserError, match=r"tuned for .*tune into a new db_dir on this CPU"):
        btvm.tune(tiny_p5, "llvm", 128, d, trials=2, progress=False)
    with pytest.raises(UserError, match=msg):
        bench.check_db(d, 0, ["tvm-tuned"])
    with pytest.raises(AssertionError, match="imported before"):   # past the check
        btvm.compile_model(tiny_p5, "llvm", 128, tmp_path / "x.so", db_dir=d, verbose=False,
                           db_any_cpu=True)
    assert sorted(os.listdir(tmp_path)) == ["db"]


def test_old_database_metadata_keeps_loading(tmp_path):
    """The znver4 database's meta (no CPU record, img as one flat pair) and the first CPU
    records (mcpu + a short flag list) still read, and their CPU class is derived."""
    old = _db(tmp_path / "old", WL, "", {"target": json.dumps(
        {"kind": "llvm", "mtriple": "x86_64-conda-linux-gnu", "mcpu": "znver4"}),
        "img": [416, 416]})
    meta = dbm.read_meta(old)
    assert meta["img"] == [[416, 416]]
    cpu = dbm.meta_cpu(meta)
    assert cpu["mcpu"] == "znver4" and cpu["vector"] == "avx512" and "avx512f" in cpu["isa"]
    first = dbm.meta_cpu(_meta("emeraldrapids", ["avx2", "avx512f", "avx512bw"]))
    assert first["vector"] == "avx512"
    here = {"mcpu": "emeraldrapids", "arch": "x86_64", "vector": "avx512",
            "isa": ["pni", "avx2", "avx512f", "avx512bw"]}
    assert dbm.cpu_difference(first, here) == ""   # compared on the flags it recorded


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
        assert cpu["vector"] in T.VECTOR_CLASSES, (db.name, cpu)


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

def shipped_for_this_cpu() -> tuple[list, str]:
    """(the shipped databases whose schedules transfer to this CPU, why none do)."""
    from pathlib import Path
    dbs = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "tune_db")
                 .glob("*_*_*.tar.gz"))
    here, classes = [], []
    ident = T.cpu_facts()
    for db in dbs:
        meta = dbm.read_meta(dbm.unpack_database(db))
        classes.append(f"{db.name}: {dbm.meta_cpu(meta)['vector']}")
        try:
            dbm.check_cpu(db, meta, ident)
            here.append(db)
        except UserError:
            pass
    return here, (f"no shipped database for this CPU class ({ident['vector']}, "
                  f"{ident['mcpu']}); shipped: {'; '.join(classes) or 'none'}")


@pytest.mark.slow
def test_shipped_database_builds_a_complete_library_equal_to_torch_on_its_cpu(tmp_path, bk):
    """Precondition: a shipped database of this CPU's vector class (skipped with the reason
    otherwise; another class is refused: tested above). On such a CPU the database covers
    every kernel of its model and the library equals PyTorch."""
    import re

    import torch

    from yolov7c.backends import common as bx
    here, why = shipped_for_this_cpu()
    if not here:
        pytest.skip(why)
    db = here[0]
    name, img = re.match(r"(.+)_(\d+)_[^_]+\.tar\.gz$", db.name).groups()
    model = bk.deploy_model(name)
    meta = btvm.compile_model(model, "llvm", int(img), tmp_path / "m.so", db_dir=db,
                              verbose=False)
    print(meta.notes)
    assert meta.tasks_tuned == meta.tasks
    x = bx.example_input(model, int(img), seed=1)
    with torch.no_grad():
        ref = [t.numpy() for t in bx.Outputs(model)(x)]
    bk.assert_close(ref, btvm.load(tmp_path / "m.so")(x), f"shipped-{db.name}")
