"""The tuning database folder: open, validate, lock, describe, pack and prune it.

A database is MetaSchedule's ``JSONDatabase`` (two JSON-lines files) plus ``tune_meta.json``
(target, CPU identity, pipeline, image sizes). Why the extra care here:

- TVM trusts the files: a record whose workload index points elsewhere (two tunes that
  appended to one database at once did that) makes a later build crash deep inside TVM.
  :func:`validate` checks every line first and names the file and line of the first bad one.
- Two writers corrupt it for good, so a writer holds :class:`DatabaseLock` (an ``flock`` on
  ``tune.lock``, which holds the pid for the message; the kernel drops the lock when its
  process dies, so a stale lock of a dead process is simply taken over).
- Nothing in the folder is ever unpickled: the XGBoost cost model is retrained from the
  JSON records (see :mod:`.search`); a ``cost_model.tar`` left by older versions is ignored.
- Schedules are only fast on the CPU they were measured on: the meta file records ``mcpu``
  and the ISA flags, and :func:`check_cpu` refuses a mismatch in one line.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ...errors import UserError, one_line
from ...io_util import atomic_path, pid_alive, write_json_atomic

log = logging.getLogger("yolov7c.tvm")

META = "tune_meta.json"
LOCK = "tune.lock"
WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"
DB_FILES = (WORKLOADS, RECORDS)
LEGACY_COST_MODEL = "cost_model.tar"
MAX_PACKED_BYTES = 1 << 30          # a packed database never unpacks to more than this


# --------------------------------------------------------------------------- validation


@dataclass
class DatabaseFacts:
    """What :func:`validate` found: counts, and whether the last line was torn (a kill)."""

    workloads: int
    records: int
    torn: list[str]


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def validate(d: str | os.PathLike) -> DatabaseFacts:
    """Check every line of the database in ``d`` without TVM (so nothing bad reaches it).

    A torn last line (an append cut by a kill) is tolerated and reported in ``torn``; any
    other malformed line, or a record pointing at a workload the file does not have, is a
    one-line UserError naming the file and line.
    """
    d = Path(d)
    torn: list[str] = []
    counts = []
    n_wl = 0
    for name in DB_FILES:
        p = d / name
        lines = _lines(p)
        n = 0
        for i, raw in enumerate(lines, 1):
            row = _parse(raw)
            last = i == len(lines)
            if row is None and last:
                torn.append(name)
                break
            if name == WORKLOADS:
                ok = isinstance(row, list) and len(row) == 2 and isinstance(row[1], str)
                what = "expected [hash, workload]"
            else:
                ok = (isinstance(row, list) and len(row) == 2 and isinstance(row[0], int)
                      and not isinstance(row[0], bool) and 0 <= row[0] < n_wl
                      and isinstance(row[1], list))
                what = (f"record points at workload {row[0]}, but {WORKLOADS} has {n_wl}"
                        if isinstance(row, list) and row and isinstance(row[0], int)
                        else "expected [workload index, record]")
            if not ok:
                raise UserError(f"db_dir {p}:{i}: corrupt tuning database ({what}); delete the "
                                "folder and re-tune, or restore it from a copy", arg="db_dir")
            n += 1
        if name == WORKLOADS:
            n_wl = n
        counts.append(n)
    return DatabaseFacts(counts[0], counts[1], torn)


def _drop_torn_tail(path: Path) -> None:
    """Rewrite ``path`` without its torn last line (atomically)."""
    lines = _lines(path)
    while lines and _parse(lines[-1]) is None:
        lines.pop()
    body = b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in lines)
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)


# --------------------------------------------------------------------------- lock


class DatabaseLock:
    """Exclusive writer lock on a database folder (``flock`` on ``tune.lock`` + our pid).

    ``with DatabaseLock(d):`` refuses, in one line naming the holder's pid, while another
    live process holds it. The kernel releases an ``flock`` when its holder dies (even by
    SIGKILL), so a lock file left by a dead process is taken over without any guessing.
    """

    def __init__(self, d: str | os.PathLike) -> None:
        self.path = Path(d) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> DatabaseLock:
        import fcntl
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise UserError(f"db_dir {self.path.parent}: in use by another tune ({who}); wait "
                            "for it to finish, or tune into a different folder",
                            arg="db_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            import fcntl
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        pid = int(text)
        return pid if pid_alive(pid) else None
    except (OSError, ValueError):
        return None


def writer_alive(d: str | os.PathLike) -> bool:
    """Is a tune writing into ``d`` right now (its lock held)?"""
    p = Path(d) / LOCK
    if not p.exists():
        return False
    import fcntl
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- open


def is_packed(db: str | os.PathLike) -> bool:
    return str(db).endswith((".tar.gz", ".tgz")) and Path(db).is_file()


def exists(db: str | os.PathLike) -> bool:
    """Is there a (packed or folder) database at ``db``?"""
    return is_packed(db) or Path(db, WORKLOADS).is_file()


def unpack_database(db: str | os.PathLike) -> Path:
    """A packed database (``.tar.gz`` from :func:`pack_database`) extracted to a temp dir.

    Only the three known regular files are extracted, each size-checked before reading."""
    import atexit
    d = Path(tempfile.mkdtemp(prefix="yolov7c-db-"))
    atexit.register(shutil.rmtree, d, True)
    try:
        with tarfile.open(db, "r:gz") as tf:
            total = 0
            for m in tf.getmembers():
                if not (m.isfile() and m.name in (*DB_FILES, META)):
                    continue
                total += m.size
                if total > MAX_PACKED_BYTES:
                    raise UserError(f"db_dir {db}: unpacks to over {MAX_PACKED_BYTES >> 20} MiB; "
                                    "not a database packed by yolov7c", arg="db_dir")
                src = tf.extractfile(m)
                if src is not None:
                    (d / m.name).write_bytes(src.read())
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"db_dir {db}: not a readable .tar.gz database ({one_line(e, 120)})",
                        arg="db_dir") from None
    return d


def resolve_dir(db: str | os.PathLike) -> Path:
    """The folder holding the database files (a packed one is unpacked first)."""
    return unpack_database(db) if is_packed(db) else Path(db)


def open_database(db_dir: str | os.PathLike, create: bool = False, write: bool = False):
    """The validated ``JSONDatabase`` in ``db_dir`` (a packed ``.tar.gz`` is read-only).

    ``write`` means the caller holds :class:`DatabaseLock`: a torn tail is repaired in place.
    A reader never rewrites a folder a live tune is appending to; it works on a copy.
    """
    from tvm.s_tir import meta_schedule as ms

    d = resolve_dir(db_dir)
    if not (d / WORKLOADS).exists():
        if not create:
            raise UserError(f"db_dir {db_dir}: no tuning database there; tune into it first",
                            arg="db_dir")
        d.mkdir(parents=True, exist_ok=True)
    facts = validate(d)
    if facts.torn:
        if write or not writer_alive(d):
            for name in facts.torn:
                _drop_torn_tail(d / name)
        else:  # a tune is appending right now: read a consistent copy, leave its files alone
            copy = Path(tempfile.mkdtemp(prefix="yolov7c-db-"))
            import atexit
            atexit.register(shutil.rmtree, copy, True)
            for name in DB_FILES:
                if (d / name).exists():
                    shutil.copyfile(d / name, copy / name)
                    if name in facts.torn:
                        _drop_torn_tail(copy / name)
            d = copy
    if write and (d / LEGACY_COST_MODEL).exists():
        log.warning("[tune] ignoring %s (older versions pickled the cost model; it is never "
                    "loaded now: the model is retrained from the records)",
                    d / LEGACY_COST_MODEL)
    return ms.database.JSONDatabase(work_dir=str(d), module_equality="structural")


# --------------------------------------------------------------------------- meta / CPU


def read_meta(d: str | os.PathLike) -> dict[str, Any]:
    """``tune_meta.json`` of the folder ``d`` ({} if absent); a malformed one is an error."""
    p = Path(d) / META
    if not p.exists():
        return {}
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"db_dir {p}: unreadable meta file; delete the folder and re-tune",
                        arg="db_dir") from None
    if not isinstance(meta, dict):
        raise UserError(f"db_dir {p}: meta file is not a JSON object", arg="db_dir")
    return meta


def target_key(target: dict[str, Any] | str) -> dict[str, Any]:
    """The parts of a target that decide whether schedules transfer (not num-cores, tags)."""
    if isinstance(target, str):
        try:
            target = json.loads(target)
        except ValueError:
            return {"raw": target}
    return {k: target[k] for k in ("kind", "mcpu", "mtriple", "arch", "device") if k in target}


def meta_cpu(meta: dict[str, Any]) -> dict[str, Any]:
    """The CPU a database was tuned on (older databases only stored the target's mcpu)."""
    if isinstance(meta.get("cpu"), dict):
        return meta["cpu"]
    return {"mcpu": target_key(meta.get("target", "{}")).get("mcpu"), "isa": []}


def check_cpu(db: str | os.PathLike, meta: dict[str, Any], target: dict[str, Any],
              identity: dict[str, Any], explicit_mcpu: bool) -> None:
    """Refuse a database tuned for another CPU, in one line saying both CPUs and the fix.

    ``explicit_mcpu``: the caller asked for the database's CPU on purpose (a cross build),
    so only the target's own ``mcpu`` has to agree."""
    if target.get("kind") != "llvm" or not meta:
        return
    have = meta_cpu(meta)
    want_isa = set(identity.get("isa") or [])
    have_isa = set(have.get("isa") or [])
    same = have.get("mcpu") == target.get("mcpu") and (
        explicit_mcpu or not (have_isa and want_isa) or have_isa == want_isa)
    if not same:
        def desc(c: dict[str, Any]) -> str:
            isa = [f for f in (c.get("isa") or []) if f.startswith(("avx", "amx", "sve"))]
            return str(c.get("mcpu")) + (f" ({','.join(isa[:4])})" if isa else "")
        raise UserError(f"db_dir {db}: tuned for {desc(have)}, this CPU is {desc(identity)}: "
                        "re-tune with `tune` into a new db_dir (or pass "
                        f"mcpu={have.get('mcpu')} to build for that CPU)", arg="db_dir")


def write_meta(d: Path, meta: dict[str, Any]) -> None:
    write_json_atomic(d / META, meta)


# --------------------------------------------------------------------------- pack / prune


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
    src_dir = resolve_dir(src)
    if (src_dir / META).exists():
        (d / META).write_text((src_dir / META).read_text())
    return n


def pack_database(src: str | os.PathLike, dst: str | os.PathLike, top_k: int = 1) -> int:
    """Best ``top_k`` records per workload of ``src`` as one small ``.tar.gz`` (atomic)."""
    from ...io_util import atomic_path
    with tempfile.TemporaryDirectory() as tmp:
        n = prune_database(src, tmp, top_k)
        with atomic_path(dst, ".tar.gz") as part, tarfile.open(part, "w:gz") as tf:
            for f in (*DB_FILES, META):
                if (Path(tmp) / f).exists():
                    tf.add(Path(tmp) / f, arcname=f)
    return n


@contextlib.contextmanager
def locked(d: Path) -> Iterator[None]:
    """``with locked(d):`` = ``with DatabaseLock(d):`` (folder created first)."""
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"db_dir {d}: cannot create the folder ({e.strerror or e}); choose a "
                        "writable folder", arg="db_dir") from None
    with DatabaseLock(d):
        yield
