"""Atomic file writes: an artifact is either complete or absent, never half-written."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename,
    on failure (or a kill) it is removed. Missing folders are created; a destination that is
    a folder or cannot be created is a one-line user error."""
    dest = Path(path)
    if dest.is_dir():
        raise UserError(f"--out {dest}: is a folder; give a file name")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix or ".tmp",
                                   dir=dest.parent)
    except OSError as e:
        raise UserError(f"--out {dest}: cannot write there ({e.strerror or e}); choose a "
                        f"writable folder") from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files: give the artifact the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if os.access(tmp, os.X_OK) else 0o666) & ~umask)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)

