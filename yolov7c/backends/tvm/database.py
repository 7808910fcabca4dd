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
- Schedules transfer between CPUs of one vector class (avx512, avx2, neon ...), not
  across classes: the meta file records the tuning CPU (``mcpu``, vendor, vector class,
  ISA flags, cache), and :func:`check_cpu` refuses another class in one line naming the
  differing features and an argument that works (``db_any_cpu``, ``--db-any-cpu``).
- Every input is bounded (hostile or broken files end in one line, in bounded memory and
  time): lines of at most ``MAX_LINE_BYTES``, JSON nested at most ``MAX_JSON_DEPTH``, a
  packed database of at most ``MAX_PACKED_MEMBERS`` members and ``MAX_PACKED_BYTES``
  unpacked, regular files only (a FIFO is refused, never waited on), meta fields
  type-checked, and the lock file opened without following a symlink.
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ...errors import UserError, one_line
from ...io_util import atomic_path, open_regular, pid_alive, write_json_atomic

log = logging.getLogger("yolov7c.tvm")

META = "tune_meta.json"
LOCK = "tune.lock"
WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"
DB_FILES = (WORKLOADS, RECORDS)
LEGACY_COST_MODEL = "cost_model.tar"
MAX_PACKED_BYTES = 256 << 20        # a packed database never unpacks to more than this
#                                     (yolov7@640's, unpruned: 13.6 MB)


# --------------------------------------------------------------------------- validation

MAX_LINE_BYTES = 32 << 20           # one JSON line (the largest shipped one is 0.96 MB)
MAX_JSON_DEPTH = 32                 # nesting of a record or workload (shipped ones: 7)
MAX_META_BYTES = 1 << 20
MAX_PACKED_MEMBERS = 16             # a packed database has 3 files
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass
class DatabaseFacts:
    """What :func:`validate` found: counts, whether the last line was torn (a kill), and
    where each torn line starts (its byte offset: the file is cut there on repair)."""

    workloads: int
    records: int
    torn: list[str]
    torn_at: dict[str, int] = field(default_factory=dict)


def _corrupt(path: Path, line: int | None, what: str) -> UserError:
    where = f"{path}:{line}" if line else str(path)
    return UserError(f"db_dir {where}: corrupt tuning database ({what}); delete the folder and "
                     "re-tune, or restore it from a copy", arg="db_dir")


def open_regular_read(path: Path, what: str = "database file"):
    """``path`` opened for reading (binary) if it is a regular file: a FIFO, device or
    folder in its place is refused in one line, never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise UserError(f"db_dir {path}: cannot read the {what} ({e.strerror or e})",
                        arg="db_dir") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"db_dir {path}: the {what} is not a regular file (a FIFO, device "
                            "or folder); remove it", arg="db_dir")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _iter_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of ``path``, one bounded line at a time: a line
    longer than ``MAX_LINE_BYTES`` is refused without reading the rest of it."""
    with open_regular_read(path) as f:
        offset = 0
        for i in itertools.count(1):
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES:
                raise _corrupt(path, i, f"a line longer than {MAX_LINE_BYTES >> 20} MiB")
            yield i, offset, raw
            offset += len(raw)


def _depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of parsed JSON (stops counting past ``limit``)."""
    if limit < 0 or not isinstance(obj, (list, dict)):
        return 0
    items = obj.values() if isinstance(obj, dict) else obj
    return 1 + max((_depth(x, limit - 1) for x in items), default=0)


def _parse(line: bytes) -> Any:
    """The JSON value of a line, or None when it is not JSON or nested too deeply."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return obj if _depth(obj) <= MAX_JSON_DEPTH else None


def _workload_ok(row: Any) -> str | None:
    """None if ``row`` is a workload line as TVM writes it (``[structural hash, base64 of an
    8-byte length + the module's JSON graph]``), else what is wrong."""
    if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, str) for v in row)):
        return "expected [hash, workload]"
    h, body = row
    if not (h.isdigit() and h.isascii() and len(h) <= 20 and int(h) < 1 << 64):
        return f"workload hash {h[:24]!r} is not a decimal 64-bit number"
    if not _B64.fullmatch(body):
        return "workload is not base64"
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError:
        return "workload is not base64"
    if len(raw) < 9 or int.from_bytes(raw[:8], "little") != len(raw) - 8:
        return "workload has a wrong length header"
    graph = _parse(raw[8:])
    if not (isinstance(graph, dict) and isinstance(graph.get("nodes"), list)
            and isinstance(graph.get("root_index"), int)):
        return "workload is not a serialized module"
    return None


def _record_ok(row: Any, n_wl: int) -> str | None:
    """None if ``row`` is ``[workload index, [trace, run_secs, target, args_info]]``."""
    if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], list)):
        return "expected [workload index, record]"
    idx, rec = row
    if isinstance(idx, bool) or not isinstance(idx, int):
        return "expected [workload index, record]"
    if not 0 <= idx < n_wl:
        return f"record points at workload {idx}, but {WORKLOADS} has {n_wl}"
    if len(rec) == 0:   # older tests and tools wrote bare records; TVM reads the fields
        return None
    if not isinstance(rec[0], list):
        return "record trace is not a list"
    if len(rec) > 1 and rec[1] is not None and not (
            isinstance(rec[1], list) and all(isinstance(v, (int, float))
                                             and not isinstance(v, bool) for v in rec[1])):
        return "record run_secs is not a list of numbers"
    if len(rec) > 2 and not isinstance(rec[2], (dict, str)):
        return "record target is not a target"
    if len(rec) > 3 and not isinstance(rec[3], list):
        return "record args_info is not a list"
    return None


def validate(d: str | os.PathLike) -> DatabaseFacts:
    """Check every line of the database in ``d`` without TVM (so nothing bad reaches it).

    Each file is read one bounded line at a time (a huge line, a FIFO, deep nesting and
    malformed fields are refused, not handed to TVM). A torn last line (an append cut by a
    kill) is tolerated and reported in ``torn``; any other malformed line, or a record
    pointing at a workload the file does not have, is a one-line UserError naming the file
    and line.
    """
    d = Path(d)
    torn: list[str] = []
    torn_at: dict[str, int] = {}
    counts = []
    n_wl = 0
    for name in DB_FILES:
        p = d / name
        n = 0
        pending: tuple[int, int, str] | None = None   # an unparsable line: torn if last
        if p.exists() or p.is_symlink():
            for i, off, raw in _iter_lines(p):
                if pending is not None:
                    raise _corrupt(p, pending[0], pending[2])
                row = _parse(raw)
                what = (_workload_ok(row) if name == WORKLOADS else _record_ok(row, n_wl)) \
                    if row is not None else "not JSON, or nested too deeply"
                if what is None:
                    n += 1
                elif row is None and not raw.endswith(b"\n"):
                    pending = (i, off, what)   # an append cut short, if nothing follows
                else:
                    raise _corrupt(p, i, what)
        if pending is not None:
            torn.append(name)
            torn_at[name] = pending[1]
        if name == WORKLOADS:
            n_wl = n
        counts.append(n)
    return DatabaseFacts(counts[0], counts[1], torn, torn_at)


def _drop_torn_tail(path: Path, offset: int | None = None) -> None:
    """Rewrite ``path`` without its torn last line (atomically, streaming)."""
    if offset is None:
        offset = validate(path.parent).torn_at.get(path.name)
        if offset is None:
            return
    with open_regular_read(path) as src, atomic_path(path) as tmp:
        with open(tmp, "wb") as dst:
            left = offset
            while left > 0:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)


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
        # never through a symlink (a link to a victim file would be truncated below), never
        # a FIFO or device: io_util.open_regular refuses those in one line
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o644, arg="db_dir")
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
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
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
    """Is there a (packed or folder) database at ``db``? (A database file that is not a
    regular file counts: :func:`validate` then refuses it by name.)"""
    return is_packed(db) or os.path.lexists(Path(db, WORKLOADS))


_UNPACKED: dict[tuple[str, int, int], Path] = {}


def unpack_database(db: str | os.PathLike) -> Path:
    """A packed database (``.tar.gz`` from :func:`pack_database`) extracted to a temp dir
    (once per process and file version).

    Only the three known regular files are extracted, streamed in chunks; at most
    ``MAX_PACKED_MEMBERS`` members are read and ``MAX_PACKED_BYTES`` unpacked (a tar of
    millions of empty members, a gz bomb: refused in one line, in bounded memory)."""
    import atexit
    st = os.stat(db)
    key = (str(Path(db).resolve()), st.st_mtime_ns, st.st_size)
    if key in _UNPACKED and _UNPACKED[key].is_dir():
        return _UNPACKED[key]
    d = Path(tempfile.mkdtemp(prefix="yolov7c-db-"))
    atexit.register(shutil.rmtree, d, True)

    def refuse(why: str) -> UserError:
        return UserError(f"db_dir {db}: {why}; not a database packed by yolov7c",
                         arg="db_dir")
    try:
        with tarfile.open(db, "r:gz") as tf:
            total = 0
            for i, m in enumerate(tf, 1):
                if i > MAX_PACKED_MEMBERS:
                    raise refuse(f"more than {MAX_PACKED_MEMBERS} members")
                if not (m.isfile() and m.name in (*DB_FILES, META)):
                    continue
                total += m.size
                if total > MAX_PACKED_BYTES:
                    raise refuse(f"unpacks to over {MAX_PACKED_BYTES >> 20} MiB")
                src = tf.extractfile(m)
                if src is None:
                    continue
                with open(d / m.name, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UserError(f"db_dir {db}: not a readable .tar.gz database ({one_line(e, 120)})",
                        arg="db_dir") from None
    _UNPACKED[key] = d
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
                _drop_torn_tail(d / name, facts.torn_at[name])
        else:  # a tune is appending right now: read a consistent copy, leave its files alone
            copy = Path(tempfile.mkdtemp(prefix="yolov7c-db-"))
            import atexit
            atexit.register(shutil.rmtree, copy, True)
            for name in DB_FILES:
                if (d / name).exists():
                    shutil.copyfile(d / name, copy / name)
                    if name in facts.torn:
                        _drop_torn_tail(copy / name, facts.torn_at[name])
            d = copy
    if write and (d / LEGACY_COST_MODEL).exists():
        log.warning("[tune] ignoring %s (older versions pickled the cost model; it is never "
                    "loaded now: the model is retrained from the records)",
                    d / LEGACY_COST_MODEL)
    return ms.database.JSONDatabase(work_dir=str(d), module_equality="structural")


# --------------------------------------------------------------------------- meta / CPU


def read_meta(d: str | os.PathLike) -> dict[str, Any]:
    """``tune_meta.json`` of the folder ``d`` ({} if absent), its fields type-checked (a
    malformed one is a one-line error naming the field). The older form of ``img`` (one
    flat ``[h, w]``) is read as ``[[h, w]]``."""
    p = Path(d) / META
    if not (p.exists() or p.is_symlink()):
        return {}
    with open_regular_read(p, "meta file") as f:
        text = f.read(MAX_META_BYTES + 1)
    if len(text) > MAX_META_BYTES:
        raise UserError(f"db_dir {p}: meta file over {MAX_META_BYTES >> 10} KiB; not written "
                        "by yolov7c", arg="db_dir")
    meta = _parse(text)
    if meta is None:
        raise UserError(f"db_dir {p}: unreadable meta file; delete the folder and re-tune",
                        arg="db_dir")
    if not isinstance(meta, dict):
        raise UserError(f"db_dir {p}: meta file is not a JSON object", arg="db_dir")
    return _check_meta(p, meta)


def _check_meta(p: Path, meta: dict[str, Any]) -> dict[str, Any]:
    def bad(field_: str, want: str) -> UserError:
        return UserError(f"db_dir {p}: meta field {field_!r} must be {want}; delete the "
                         "folder and re-tune", arg="db_dir")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)
    if "target" in meta:
        t = meta["target"]
        if isinstance(t, str):
            t = _parse(t.encode("utf-8", "replace"))
        if not isinstance(t, dict) or not all(isinstance(k, str) for k in t):
            raise bad("target", "a target as a JSON object")
    if "pipeline" in meta and not isinstance(meta["pipeline"], str):
        raise bad("pipeline", "a pipeline name")
    img = meta.get("img", [])
    if isinstance(img, list) and len(img) == 2 and all(is_int(v) for v in img):
        img = [img]   # written by older versions: one [h, w]
    if not (isinstance(img, list) and all(isinstance(s, list) and len(s) == 2
                                          and all(is_int(v) and 0 < v < 1 << 16 for v in s)
                                          for s in img)):
        raise bad("img", "a list of [height, width]")
    meta["img"] = img
    if "threads" in meta and not (is_int(meta["threads"]) and 0 < meta["threads"] < 1 << 16):
        raise bad("threads", "a positive number of threads")
    cpu = meta.get("cpu")
    if cpu is not None:
        if not isinstance(cpu, dict):
            raise bad("cpu", "an object")
        for k in ("mcpu", "vector", "vendor", "arch"):
            if k in cpu and not isinstance(cpu[k], str):
                raise bad(f"cpu.{k}", "a string")
        if "isa" in cpu and not (isinstance(cpu["isa"], list)
                                 and all(isinstance(f, str) for f in cpu["isa"])):
            raise bad("cpu.isa", "a list of strings")
        if cpu.get("cache_kb") is not None and not is_int(cpu["cache_kb"]):
            raise bad("cpu.cache_kb", "a number")
    return meta


def target_key(target: dict[str, Any] | str) -> dict[str, Any]:
    """The parts of a target that decide whether schedules transfer (not num-cores, tags)."""
    if isinstance(target, str):
        try:
            target = json.loads(target)
        except (ValueError, RecursionError):
            return {"raw": target}
    if not isinstance(target, dict):
        return {"raw": str(target)}
    return {k: target[k] for k in ("kind", "mcpu", "mtriple", "arch", "device") if k in target}


# the ISA flags databases recorded before the vector class was (a shorter list): an older
# record is compared on these only
OLD_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                 "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "neon",
                 "asimd", "sve")


def meta_cpu(meta: dict[str, Any]) -> dict[str, Any]:
    """The CPU a database was tuned on, as :func:`targets.cpu_facts` describes one. Older
    databases stored only ``mcpu`` and ISA flags (or only the target): the rest is derived
    (the flags from LLVM's model of that ``mcpu`` where none were stored)."""
    from . import targets as T
    cpu = dict(meta["cpu"]) if isinstance(meta.get("cpu"), dict) else {}
    key = target_key(meta.get("target", "{}"))
    cpu.setdefault("mcpu", key.get("mcpu"))
    arch = "aarch64" if str(key.get("mtriple", "")).startswith(("aarch64", "arm")) \
        else "x86_64"
    cpu.setdefault("arch", arch)
    cpu.setdefault("vendor", "")
    cpu.setdefault("cache_kb", None)
    if "vector" not in cpu:   # an older record
        if not cpu.get("isa"):
            cfg = {"kind": "llvm", **{k: key[k] for k in ("mcpu", "mtriple") if k in key}}
            cpu["isa"] = T._llvm_isa(cfg) if cpu.get("mcpu") else []
        cpu["known"] = list(OLD_ISA_FLAGS)
        cpu["vector"] = T.vector_class(cpu["isa"], cpu["arch"])
    return cpu


def cpu_difference(have: dict[str, Any], here: dict[str, Any]) -> str:
    """The ways the CPU ``here`` differs from the database's ``have``, as one short line
    (``-f``: a feature the database's CPU had and this one lacks; ``+f``: the reverse)."""
    known = set(have.get("known") or here.get("known") or ()) or None
    a, b = set(have.get("isa") or ()), set(here.get("isa") or ())
    if known is not None:
        a, b = a & known, b & known
    parts = [f"{k} {have[k]}→{here[k]}" for k in ("vector", "mcpu", "vendor")
             if have.get(k) and here.get(k) and have[k] != here[k]]
    parts += [f"-{f}" for f in sorted(a - b)] + [f"+{f}" for f in sorted(b - a)]
    return " ".join(parts)


def _cpu_desc(c: dict[str, Any]) -> str:
    extra = ", ".join(v for v in (c.get("mcpu"), c.get("vendor")) if v)
    return f"{c.get('vector')}" + (f" ({extra})" if extra else "")


ANY_CPU_FIX = ("tune for this CPU into a new folder, or pass db_any_cpu=True to build with "
               "it anyway (correct, slower)")


def check_cpu(db: str | os.PathLike, meta: dict[str, Any], identity: dict[str, Any],
              any_cpu: bool = False, fix: str = ANY_CPU_FIX) -> str | None:
    """Refuse a database whose schedules do not transfer to the CPU ``identity`` (from
    :func:`targets.cpu_facts`), in one line naming both CPUs, the differing features and a
    fix that works; return a note when they transfer but the CPUs differ (None if alike).

    What decides: the architecture and the vector width class (avx512 / avx2 / neon ...).
    A schedule is a loop nest, not machine code: the library is built with this CPU's own
    features (``targets.host_mattr``), so a database of a CPU with more or fewer
    extensions of the same class (a VM that hides avx512_fp16, a sibling model, another
    vendor) runs correctly and near its tuned speed. Its register blocking and vector
    splits assume its own register width, so another class is refused unless ``any_cpu``.
    """
    if not meta:
        return None
    t = target_key(meta.get("target", "{}"))
    if t.get("kind", "llvm") != "llvm":
        return None
    have = meta_cpu(meta)
    diff = cpu_difference(have, identity)
    same_class = (have.get("arch") == identity.get("arch")
                  and have.get("vector") == identity.get("vector"))
    if not same_class and not any_cpu:
        raise UserError(f"db_dir {db}: tuned for {_cpu_desc(have)}, this CPU is "
                        f"{_cpu_desc(identity)}: {diff}; {fix}", arg="db_dir")
    if not diff:
        return None
    if not same_class:
        return (f"database tuned for {_cpu_desc(have)}, used on {_cpu_desc(identity)} as "
                f"asked (db_any_cpu): {diff}; expect it slower than a database tuned here")
    return (f"database tuned for {_cpu_desc(have)}; this CPU differs ({diff}): its schedules "
            "apply, the library uses this CPU's own features")


def write_meta(d: Path, meta: dict[str, Any]) -> None:
    write_json_atomic(d / META, meta)


# --------------------------------------------------------------------------- coverage


@dataclass(frozen=True)
class DbCoverage:
    """What a database brings to one build: the model's kernels, how many of them have a
    record, the records matched, the pipeline the build used (the database's), the conv
    kernels that got a seed tiling instead, and how the database's CPU differs."""
    tasks: int = 0
    tuned: int = 0
    records: int = 0
    pipeline: str = "default"
    seeded: int = 0
    cpu_note: str | None = None


def coverage(mod, target, db, pipeline: str) -> DbCoverage:
    """How much of ``mod`` (under ``pipeline``, for the ``tvm.target.Target``) ``db`` has
    schedules for: its tasks, those with a record, the records; what a build from ``db``
    will actually use (nothing is committed to the database)."""
    from . import pipeline as pl
    tasks = pl.extract_tasks(mod, target, pipeline)
    covered = records = 0
    for t in tasks:
        m = t.dispatched[0]
        if db.has_workload(m):
            k = len(db.get_top_k(db.commit_workload(m), 1 << 30))
            covered += k > 0
            records += k
    return DbCoverage(tasks=len(tasks), tuned=covered, records=records, pipeline=pipeline)


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
    meta = read_meta(resolve_dir(src))
    if meta:
        write_meta(d, meta)
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
