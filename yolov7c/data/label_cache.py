"""The label cache: a split's checked labels and image sizes in one file beside its labels, so
the next load reads that file (and stats every file) instead of opening every image and label.

Why a cache can be trusted: it holds only labels that already passed the loader's checks, and
it is used only when its key equals the key of the files on disk now — a SHA-256 of the cache
version, the class count, the limits and ``(path, size, mtime_ns, inode, ctime_ns)`` of every
image and label file. Any edit, touch, copy or replacement changes ctime, which no one can set,
so a cache shipped inside a download never matches: it is rebuilt from the files. File times
are coarse (a kernel tick, seconds on some file systems), so a file rewritten with the same size
in the tick it was read in would keep its key ("racy git"): a scan that saw a file changed less
than ``RACY_NS`` before it started is not saved, and the next load scans again.

The file is JSON with base64 little-endian arrays (never pickle): reading runs no code and
allocates at most a bounded multiple of its size, which is capped before it is read. A missing,
stale, corrupt or foreign-version cache is rebuilt silently; one that cannot be written
(read-only folder, a link or a FIFO in its place) is left out, logged at debug level.
Anchor: ultralytics ``YOLODataset.cache_labels`` (the idea; this is our own format).
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UserError
from ..io_util import write_json_atomic
from ..limits import MAX_LABEL_LINES
from .checks import read_text

log = logging.getLogger(__name__)

VERSION = 1
RACY_NS = 2_000_000_000   # files changed this close before a scan: that scan is not cached


@dataclass
class Scan:
    """What a load learns per image: (H, W) from the header ((-1, -1): skipped), its checked
    labels (k, 5) float32, and the warning that was logged for it, if any."""
    shapes: np.ndarray                # (n, 2) int32
    labels: list[np.ndarray]
    warnings: dict[int, str]


def stat_or_none(path: str | os.PathLike) -> os.stat_result | None:
    """``os.stat`` (following links, as ``open`` does), None when it fails."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def file_key(files: Iterable[tuple[str, os.stat_result | None]], *extra: object) -> str:
    """SHA-256 of ``extra`` and each file's path and stat identity (size, mtime, inode,
    ctime); a file that does not exist is part of the key too."""
    h = hashlib.sha256(json.dumps([VERSION, *map(str, extra)]).encode())
    for path, st in files:
        ident = "-" if st is None else \
            f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}:{st.st_mode}"
        h.update(f"{path}\0{ident}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def racy(stats: Iterable[os.stat_result | None], started_ns: int) -> bool:
    """Whether a file changed (ctime, which no one can set) within ``RACY_NS`` before the
    scan that started at ``started_ns`` (``time.time_ns()`` before the files were statted)."""
    newest = max((st.st_ctime_ns for st in stats if st is not None), default=0)
    return newest >= started_ns - RACY_NS


def size_limit(n: int, label_bytes: int) -> int:
    """The largest cache ``n`` images with ``label_bytes`` of label text can need: a box line
    has at least 10 bytes and costs 27 in the cache; an image, its shape and one warning."""
    return (1 << 20) + 1024 * n + 4 * label_bytes


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype).tobytes()).decode("ascii")


def _unb64(s: object, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(s, str):
        raise ValueError("not base64 text")
    raw = base64.b64decode(s.encode("ascii"), validate=True)
    if len(raw) != np.dtype(dtype).itemsize * shape[0] * shape[1]:
        raise ValueError("array size")
    return np.frombuffer(bytearray(raw), dtype).astype(dtype[1:]).reshape(shape)


def read_cache(path: Path, key: str, n: int, limit: int) -> Scan | None:
    """The cached scan at ``path`` when it is a current cache for ``key`` of ``n`` images;
    None (silently) when it is missing, stale, corrupt or of another version."""
    if not path.is_file():
        return None
    try:
        d = json.loads(read_text(path, limit, "label cache"))
        if not isinstance(d, dict) or d.get("version") != VERSION or d.get("key") != key \
                or d.get("n") != n:
            return None
        counts = _unb64(d["counts"], "<i8", (n, 1)).ravel()
        if n and not 0 <= counts.min() <= counts.max() <= MAX_LABEL_LINES:
            raise ValueError("box count out of range")
        shapes = _unb64(d["shapes"], "<i4", (n, 2))
        if not ((shapes > 0) | (shapes == -1)).all():
            raise ValueError("image size out of range")
        flat = _unb64(d["labels"], "<f4", (int(counts.sum()), 5))
        warnings = {int(i): str(m) for i, m in d["warnings"]
                    if isinstance(i, int) and 0 <= i < n and isinstance(m, str)}
    except (UserError, ValueError, KeyError, TypeError, RecursionError) as e:
        log.debug("%s: unreadable label cache (%s); rebuilding it", path, e)
        return None
    return Scan(shapes, np.split(flat, np.cumsum(counts)[:-1]) if n else [], warnings)


def write_cache(path: Path, key: str, scan: Scan, is_racy: bool = False) -> None:
    """Save ``scan`` for ``key`` atomically; where that cannot be done, or the files are too
    fresh to trust (``racy``), leave it out (the load works the same, just uncached) and say
    why at debug level."""
    if is_racy:
        log.debug("%s: label cache not written (files changed in the last %.0f s)", path,
                  RACY_NS / 1e9)
        return
    if not path.parent.is_dir() or os.path.islink(path):   # never create folders or write
        log.debug("%s: label cache not written (no folder, or a link there)", path)  # via links
        return
    counts = np.array([len(x) for x in scan.labels], np.int64)
    flat = np.concatenate(scan.labels) if scan.labels else np.zeros((0, 5), np.float32)
    obj = {"version": VERSION, "key": key, "n": len(scan.labels),
           "counts": _b64(counts, "<i8"), "shapes": _b64(scan.shapes, "<i4"),
           "labels": _b64(flat, "<f4"), "warnings": sorted(scan.warnings.items())}
    try:
        write_json_atomic(path, obj, indent=None)
    except (UserError, OSError) as e:
        log.debug("%s: label cache not written (%s)", path, e)
