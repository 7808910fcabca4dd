"""The resource limits of untrusted input, in one place (bottom layer: imports nothing).

Every number here bounds what a file or a flag can make the process allocate or loop over
before the work starts; each refusal is a one-line ``UserError`` that names the limit and how
to raise it. ``memory_limit`` is the one adjustable cap (``--max-memory`` on the CLI).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

MAX_NC = 10_000                 # classes (LVIS has 1,203; Objects365 365; OpenImages 601)
MAX_IMG = 8192                  # square input side of any verb
MAX_LABEL_LINES = 100_000       # lines in one YOLO label file (boxes per image)
MAX_LABEL_BYTES = 16 << 20      # bytes of one YOLO label file
MAX_DATA_FILE_BYTES = 64 << 20  # a data YAML or an image list file
MAX_COCO_BYTES = 2 << 30        # a COCO instances JSON (COCO train2017 is 448 MB)
MAX_COCO_RECORDS = 5_000_000    # images + annotations of a COCO file (train2017: 978k)
MAX_IMAGES = 5_000_000          # images in one split
DEFAULT_MAX_MEMORY_GB = 4.0     # a model's activations of one image; its weights get ¼ of it

_max_memory: contextvars.ContextVar[float] = contextvars.ContextVar(
    "yolov7c_max_memory", default=DEFAULT_MAX_MEMORY_GB)


def max_memory_gb() -> float:
    """The memory cap now in force, in GiB (see ``memory_limit``)."""
    return _max_memory.get()


@contextlib.contextmanager
def memory_limit(gb: float | None) -> Iterator[None]:
    """Raise (or lower) the model memory cap inside the block; None keeps the current one."""
    if gb is None:
        yield
        return
    token = _max_memory.set(float(gb))
    try:
        yield
    finally:
        _max_memory.reset(token)
