"""Image sizes from headers, checked without decoding pixels, in a bounded thread pool.

A load used to decode every image fully and serially to learn its size and that it is whole.
The size is in the header (``Image.open`` reads no pixels); wholeness is checked as cheaply
as the format allows, with the same verdict as a decode on truncated and bit-flipped files
(tests/data/test_dataset_cache.py): PNG by ``verify()`` (every chunk's CRC up to IEND, no
inflate), JPEG by its end-of-image marker (a file without one is decoded to decide: trailing
bytes after the marker are legal), any other format by a full decode. File reads release the
GIL, so threads overlap them (benchmarks/dataset_load.py).
"""
from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

from PIL import Image

T = TypeVar("T")
R = TypeVar("R")

WORKERS = min(8, (os.cpu_count() or 1) + 4)
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _jpeg_complete(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-2, os.SEEK_END)
        return f.read(2) == b"\xff\xd9"


def image_size(path: str, st: os.stat_result | None,
               absent: str = "not a regular file") -> tuple[tuple[int, int] | None, str | None]:
    """((H, W), None) for a whole image; (None, warning) for one that does not decode or is
    not a regular file (a FIFO would block the run forever) — the caller logs and skips it."""
    if st is None or not stat.S_ISREG(st.st_mode):
        return None, f"{path}: {absent}; skipped"
    try:
        with Image.open(path) as im:
            hw = im.height, im.width
            if im.format == "PNG":
                im.verify()
            elif im.format != "JPEG" or not _jpeg_complete(path):
                im.load()
        return hw, None
    except _DECODE_ERRORS as e:
        return None, f"{path}: image does not decode ({e.__class__.__name__}); skipped"


def map_ordered(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` on ``WORKERS`` threads, in chunks (a future per item costs
    more than a 64 px header); the first exception in item order is raised, as the serial
    loop would raise it, and the chunks not yet started are cancelled."""
    size = -(-len(items) // (WORKERS * 8))
    if WORKERS < 2 or len(items) < 2:
        return [fn(x) for x in items]
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    ex = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="yolov7c-load")
    try:
        return [r for done in ex.map(lambda c: [fn(x) for x in c], chunks) for r in done]
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
