"""Atomic file writes: an artifact is either complete or absent, never half-written.

A write goes to a hidden temp file beside the destination, ``.<name>.~<pid>-<random><suffix>``,
then one ``os.replace``. The temp file is removed on an exception, on Ctrl-C and on SIGTERM
(a handler removes live temp files, then lets the signal do what it did before). A SIGKILL
cannot be caught, so every write first sweeps the folder for temp files of this naming whose
writer pid is dead (or that are older than a day, in case the pid was reused).

What a write may replace: only a regular file (or nothing). A destination that is a device
node, a FIFO, a socket or a folder (also through a symlink, so ``/dev/null`` and
``/dev/stdout`` too) is refused in one line: a rename would put a regular file in place of
``/dev/null``. Missing parent folders are created, but never directly in the file system
root. ``open_regular`` and ``private_dir`` are the same rules for files opened in place
(logs, locks): no symlink followed, no FIFO waited on, no folder someone else owns.
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import signal
import stat
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

from .errors import UserError

STALE_AFTER_S = 24 * 3600      # a temp file this old is stale even if its pid is alive (reuse)
LEGACY_STALE_AFTER_S = 600     # temp files of the pre-pid naming: stale after 10 minutes
_TEMP = re.compile(r"^\.(?P<name>.+)\.~(?P<pid>\d+)-[0-9a-f]{8}(?P<suffix>\.[^.]*)?$")

_live: set[str] = set()        # temp paths being written now (read by the signal handler)
_install_lock = threading.Lock()
_installed: dict[int, Any] = {}


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (ours counts): who still holds a temp file
    or a lock."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # someone else's live process
    except OSError:
        return True
    try:  # a killed child that its parent has not reaped yet is a zombie: dead for us
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def sweep_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove temp files of our naming in ``folder`` left by dead writers; return them.

    ``name``: also remove the legacy mkstemp temps (``.<name>.<8 chars><suffix>``) of that
    destination once they are older than ``LEGACY_STALE_AFTER_S``."""
    removed: list[Path] = []
    legacy = re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}(\.[^.]*)?$") if name else None
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith("."):
            continue
        m = _TEMP.match(e.name)
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            age = now - e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if m:
            stale = (not pid_alive(int(m["pid"])) or age > STALE_AFTER_S) and e.path not in _live
        else:
            stale = bool(legacy and legacy.match(e.name) and age > LEGACY_STALE_AFTER_S)
        if stale:
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError:
                pass
    return removed


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Remove live temp files, then act as the handler we replaced would have."""
    for tmp in list(_live):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    _live.clear()
    previous = _installed.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)  # re-raise: the process dies of the signal as before
    with _install_lock:
        _installed.pop(signum, None)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """Install the SIGTERM/SIGHUP cleanup once (only possible from the main thread; other
    threads' writes are still cleaned on exceptions and by the next sweep)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _install_lock:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if sig in _installed:
                continue
            current = signal.getsignal(sig)
            if current in (signal.SIG_IGN, None) or current is _on_signal:
                continue
            _installed[sig] = current
            signal.signal(sig, _on_signal)


def _new_temp(dest: Path, suffix: str) -> Path:
    for _ in range(100):
        tmp = dest.parent / f".{dest.name}.~{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{dest}: could not create a unique temp file")


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a folder', 'a FIFO', ... for a non-regular ``st_mode`` ('a special file' otherwise)."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


_SPECIAL_FS = ("/dev", "/proc", "/sys")


def check_replaceable(dest: str | os.PathLike, arg: str = "path") -> Path:
    """The path a rename may replace for ``dest``: ``dest`` itself when absent or a regular
    file; for a symlink, its final target (the link is kept, the file it names is
    replaced), judged the same way. A device node, FIFO, socket or folder, and anything in
    /dev, /proc or /sys (``/dev/null``, ``/dev/stdout``), is a one-line ``UserError``:
    a rename would put a regular file in place of the device or of the link."""
    p = Path(dest)
    hops = [Path(os.path.abspath(p))]
    while os.path.islink(hops[-1]) and len(hops) < 40:  # every hop: /dev/stdout → /proc/...
        hops.append(Path(os.path.abspath(hops[-1].parent / os.readlink(hops[-1]))))
    for h in hops + [Path(os.path.realpath(hops[-1]))]:
        top = "/" + h.parts[1] if len(h.parts) > 1 else "/"
        if top in _SPECIAL_FS:
            raise UserError(f"{p}: is in {top}, not a regular file; give a regular file name "
                            f"(leave the option out to print instead)", arg=arg)
    if len(hops) > 1:
        p = Path(os.path.realpath(hops[-1]))
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):  # absent (a parent's problem is said later)
        return p
    except OSError as e:
        raise UserError(f"{p}: cannot check it ({e.strerror or e}); choose another path",
                        arg=arg) from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{p}: is a folder; give a file name", arg=arg)
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{p}: is {file_kind(st.st_mode)}, not a regular file; give a regular "
                        f"file name (leave the option out to print instead)", arg=arg)
    return p


def missing_folders(dest: str | os.PathLike) -> list[Path]:
    """The parent folders of ``dest`` that do not exist yet, outermost first."""
    out: list[Path] = []
    for parent in Path(dest).parents:
        if os.path.lexists(parent):
            break
        out.append(parent)
    return out[::-1]


def make_parents(dest: str | os.PathLike, arg: str = "path") -> None:
    """Create the missing parent folders of ``dest``, never one directly in the file system
    root (a typo such as ``/nonexistent/x.ckpt`` must not create ``/nonexistent``)."""
    missing = missing_folders(dest)
    if missing and missing[0].absolute().parent == Path(missing[0].absolute().anchor):
        raise UserError(f"{dest}: folder {missing[0]} does not exist; create it first "
                        f"(folders are never created in the file system root)", arg=arg)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename,
    on failure (exception, Ctrl-C, SIGTERM) it is removed. Missing folders are created (not
    in the root); a destination that is not a regular file (folder, device, FIFO, socket) or
    cannot be created is a one-line user error."""
    dest = check_replaceable(path)  # a symlink's target: the link itself stays
    _install_handlers()
    try:
        make_parents(dest)
        sweep_stale_temps(dest.parent, dest.name)
        tmp = _new_temp(dest, suffix or dest.suffix or ".tmp")
    except OSError as e:
        raise UserError(f"{dest}: cannot write there ({e.strerror or e}); choose a writable "
                        f"folder", arg="path") from None
    _live.add(str(tmp))
    try:
        yield tmp
        # the temp file is 0600: give the artifact the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if os.access(tmp, os.X_OK) else 0o666) & ~umask)
        check_replaceable(dest)  # again: it may have become a FIFO or a link meanwhile
        os.replace(tmp, dest)
    finally:
        _live.discard(str(tmp))
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + "\n")


def open_regular(path: str | os.PathLike, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                 mode: int = 0o600, arg: str = "path") -> int:
    """``os.open`` for a file opened in place (a log, a lock): a symlink in the last component
    is not followed (O_NOFOLLOW), a FIFO is not waited on (O_NONBLOCK, cleared after), and
    anything but a regular file is refused in one line. Returns the descriptor.

    Truncation happens only after the checks, so refusing never empties anything."""
    p = Path(path)
    want_trunc = bool(flags & os.O_TRUNC)
    try:
        fd = os.open(p, (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(p):
            raise UserError(f"{p}: is a symbolic link; refusing to write through it (remove "
                            f"it)", arg=arg) from None
        if e.errno == errno.ENXIO:  # a FIFO with no reader
            raise UserError(f"{p}: is a FIFO, not a regular file; remove it", arg=arg) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{p}: is {file_kind(st.st_mode)}, not a regular file; remove it",
                            arg=arg)
        os.set_blocking(fd, True)
        if want_trunc:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder only this user can enter: created 0700 when missing; an existing
    one must be a real folder (not a symlink) owned by us with no group/other access, else
    a ``UserError`` (someone else prepared it: writing there would let them redirect us)."""
    p = Path(path)
    try:
        os.mkdir(p, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(p)
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else file_kind(st.st_mode)
        raise UserError(f"{p}: is {kind}, not a private folder; remove it")
    if st.st_uid != os.getuid():
        raise UserError(f"{p}: owned by uid {st.st_uid}, not by you ({os.getuid()}); remove it")
    if st.st_mode & 0o077:
        raise UserError(f"{p}: mode {stat.S_IMODE(st.st_mode):o} lets others in; "
                        f"`chmod 700 {p}` or remove it")
    return p
