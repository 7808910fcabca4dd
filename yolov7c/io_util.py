"""Atomic file writes: an artifact is either complete or absent, never half-written.

A write goes to a hidden temp file beside the destination, ``.<name>.~<pid>-<random><suffix>``,
then one ``os.replace``. The temp file is removed on an exception, on Ctrl-C and on SIGTERM
(a handler removes live temp files, then lets the signal do what it did before). A SIGKILL
cannot be caught, so every write first sweeps the folder for temp files of this naming whose
writer pid is dead (or that are older than a day, in case the pid was reused).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
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


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename,
    on failure (exception, Ctrl-C, SIGTERM) it is removed. Missing folders are created; a
    destination that is a folder or cannot be created is a one-line user error."""
    dest = Path(path)
    if dest.is_dir():
        raise UserError(f"{dest}: is a folder; give a file name", arg="path")
    _install_handlers()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
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
