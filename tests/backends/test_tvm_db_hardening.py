"""Hostile tuning databases (issue 20 §2): each is refused in one line, exit 2, before any
model is built, with nothing written and in bounded memory and time.

The cases run through the CLI (``yolov7c compile … --db X``, ``yolov7c tune …``) in one
subprocess (``DRIVER``): its peak RSS covers every case and must stay under 1 GB, and a
case that blocks (a FIFO waited on) ends the subprocess by timeout instead of the suite.
Before these checks: a 400 MB record line reached 2.0 GB and a TVM InternalError, a
4.3 MB ``.tar.gz`` of 2 million empty members took 600 s, a 1 MB gz bomb 100 s and 1.5 GB,
a FIFO blocked forever, deep nesting raised RecursionError, ``["0x1", "garbage"]`` a TVM
InternalError and a meta file with wrong types a TypeError.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

tvm = pytest.importorskip("tvm")

from yolov7c.backends.tvm import database as dbm  # noqa: E402

# the model of the tune cases: the refusals come after the model is built and its tasks
# extracted, and this 11-layer cfg makes that 3x cheaper than yolov7-tiny (the model is not
# what these cases test)
SMALL_CFG = str(Path(__file__).resolve().parents[1] / "small_cfg.yaml")
WL_GRAPH = '{"root_index": 0, "nodes": []}'


def _wl(h: str = "123") -> str:
    import base64
    body = WL_GRAPH.encode()
    return json.dumps([h, base64.b64encode(len(body).to_bytes(8, "little") + body).decode()])


REC = '[0, [[], [0.1], {}, []]]'


def _folder(d, workloads=None, records=None, meta=None):
    d.mkdir(parents=True, exist_ok=True)
    (d / dbm.WORKLOADS).write_text(_wl() + "\n" if workloads is None else workloads)
    (d / dbm.RECORDS).write_text(REC + "\n" if records is None else records)
    if meta is not None:
        (d / dbm.META).write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return d


def _tar(path, members):
    """A .tar.gz of (name, size, data-or-None: zeros streamed) members, written streaming."""
    with gzip.open(path, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        for name, size, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = size
            tf.addfile(ti, io.BytesIO(data) if data is not None else _Zeros(size))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


DRIVER = r"""
import contextlib, io, json, sys
from yolov7c.cli import main
from yolov7c.limits import peak_rss_mb
out = {}
for name, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        except BaseException as e:  # a traceback: the case failed
            rc = f"{type(e).__name__}: {e}"[:300]
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    out[name] = {"rc": rc, "lines": lines,
                 "rss_mb": peak_rss_mb()}
    print(json.dumps({name: out[name]}), flush=True)
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Every hostile database, refused through the CLI in one subprocess: {case: result}."""
    t = tmp_path_factory.mktemp("hostile")
    cases: dict[str, list[str]] = {}

    def compile_with(name, db):
        cases[name] = ["compile", "yolov7-tiny", "--img", "64", "--out",
                       str(t / f"{name}.so"), "--db", str(db)]

    # a record line of 100 MB (the cap is 32 MiB; the probe's was 400 MB)
    big = _folder(t / "long_line", records="")
    with open(big / dbm.RECORDS, "w") as f:
        f.write('[0, [[["' + "a" * (100 << 20) + '"]], [0.1], {}, []]]\n')
    compile_with("long_line", big)
    # 50,000 empty members in a .tar.gz (the probe's had 2 million: 600 s)
    members = [(f"m{i}", 0, b"") for i in range(50_000)]
    compile_with("many_members", _tar(t / "many.tar.gz", members))
    # a gz bomb: one member declaring 300 MB of zeros (the probe's 1 GiB passed the cap)
    compile_with("gz_bomb", _tar(t / "bomb.tar.gz", [(dbm.WORKLOADS, 300 << 20, None)]))
    # a bomb under the cap: 200 MB of zeros, one "line"
    compile_with("gz_bomb_small", _tar(t / "bomb2.tar.gz", [(dbm.WORKLOADS, 200 << 20, None)]))
    # deep nesting, a workload that is not one, a hash that is not a number
    compile_with("deep_nesting", _folder(t / "deep", records="[" * 200_000 + "]" * 200_000
                                         + "\n"))
    compile_with("garbage_workload", _folder(t / "garbage", workloads='["0x1","garbage"]\n'))
    compile_with("bad_base64", _folder(t / "b64", workloads='["1","garbage"]\n'))
    # meta files with wrong types
    for i, meta in enumerate([{"img": "abc"}, {"threads": "x"}, {"cpu": []},
                              {"target": 5}, {"cpu": {"isa": [1]}}, "[[[[" * 5000]):
        compile_with(f"meta_types_{i}", _folder(t / f"meta{i}", meta=meta))
    # FIFOs in place of the database's files: never waited on
    fifo_wl = _folder(t / "fifo_wl")
    os.unlink(fifo_wl / dbm.WORKLOADS)
    os.mkfifo(fifo_wl / dbm.WORKLOADS)
    compile_with("fifo_workloads", fifo_wl)
    fifo_meta = _folder(t / "fifo_meta")
    os.mkfifo(fifo_meta / dbm.META)
    compile_with("fifo_meta", fifo_meta)
    # tune.lock: a symlink to a victim (was truncated), a FIFO
    victim = t / "victim.txt"
    victim.write_text("precious\n")
    lock_link = _folder(t / "lock_link")
    os.symlink(victim, lock_link / dbm.LOCK)
    lock_fifo = _folder(t / "lock_fifo")
    os.mkfifo(lock_fifo / dbm.LOCK)
    for name, d in (("lock_symlink", lock_link), ("lock_fifo", lock_fifo)):
        cases[name] = ["tune", SMALL_CFG, "--img", "64", "--db", str(d), "--trials", "1"]
    # --op-names that match nothing: an error, exit 2, no database folder left behind
    cases["op_names_zzz"] = ["tune", SMALL_CFG, "--img", "64", "--db", str(t / "new_db"),
                             "--trials", "1", "--op-names", "zzz"]
    before = {p: p.stat().st_size for p in t.rglob("*") if p.is_file()}
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(list(cases.items()))],
                       capture_output=True, text=True, timeout=900, cwd=t)
    results = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    after = {p: p.stat().st_size for p in t.rglob("*") if p.is_file()}
    return {"results": results, "cases": cases, "stderr": r.stderr[-3000:], "tmp": t,
            "written": sorted(str(p.relative_to(t)) for p in set(after) - set(before)),
            "changed": sorted(str(p.relative_to(t)) for p in before
                              if p in after and after[p] != before[p]),
            "victim": victim.read_text()}


CASES = {
    "long_line": "longer than 32 MiB",
    "many_members": "more than 16 members",
    "gz_bomb": "unpacks to over 256 MiB",
    "gz_bomb_small": "longer than 32 MiB",
    "deep_nesting": "not JSON, or nested too deeply",
    "garbage_workload": "is not a decimal 64-bit number",
    "bad_base64": "workload",
    "meta_types_0": "meta field 'img'",
    "meta_types_1": "meta field 'threads'",
    "meta_types_2": "meta field 'cpu'",
    "meta_types_3": "meta field 'target'",
    "meta_types_4": "meta field 'cpu.isa'",
    "meta_types_5": "unreadable meta file",
    "fifo_workloads": "not a regular file",
    "fifo_meta": "not a regular file",
    "lock_symlink": "symbolic link",
    "lock_fifo": "not a regular file",
    "op_names_zzz": "--op-names zzz: matches none of the",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_database_is_one_line_exit_2(hostile, case):
    res = hostile["results"].get(case)
    assert res is not None, f"{case} did not finish (blocked?): {hostile['stderr']}"
    print(case, res)
    assert res["rc"] == 2, res
    errors = [ln for ln in res["lines"] if "error" in ln.lower()]
    # one error line, the last one (a progress line may come before it)
    assert len(errors) == 1 and res["lines"][-1] == errors[0], res["lines"]
    assert CASES[case] in errors[0], res["lines"]
    assert not any("Traceback" in ln for ln in res["lines"])


@pytest.mark.slow
def test_hostile_databases_stay_in_bounded_memory_and_write_nothing(hostile):
    rss = max(r["rss_mb"] for r in hostile["results"].values())
    print(f"peak RSS over all cases {rss:.0f} MB; written {hostile['written']}")
    assert rss < 1024, rss
    assert hostile["written"] == [] and hostile["changed"] == []
    assert hostile["victim"] == "precious\n"          # the symlinked lock truncated nothing
    assert not (hostile["tmp"] / "new_db").exists()   # op-names: no folder left behind


def test_torn_tail_and_validation_unit_cases(tmp_path):
    """The bounded validator in-process: a good folder passes, a torn last line is
    tolerated and cut at its offset, a complete bad last line is not."""
    d = _folder(tmp_path / "db", records=REC + "\n" + '[0, [[["sample_perf')
    facts = dbm.validate(d)
    assert facts.torn == [dbm.RECORDS] and facts.torn_at[dbm.RECORDS] == len(REC) + 1
    dbm._drop_torn_tail(d / dbm.RECORDS, facts.torn_at[dbm.RECORDS])
    assert (d / dbm.RECORDS).read_text() == REC + "\n" and not dbm.validate(d).torn
    (d / dbm.RECORDS).write_text(REC + "\n" + "[0, 7]\n")
    with pytest.raises(Exception, match=r"database_tuning_record.json:2: corrupt"):
        dbm.validate(d)
    assert dbm._depth([[[1]]]) == 3 and dbm._parse(b"[" * 5000 + b"]" * 5000) is None
