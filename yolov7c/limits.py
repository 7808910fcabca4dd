"""The resource limits of untrusted input, in one place (bottom layer: imports only errors).

Every number here bounds what a file or a flag can make the process allocate or loop over
before the work starts; each refusal is a one-line ``UserError`` that names the limit and how
to raise it. ``memory_limit`` is the one adjustable cap (``--max-memory`` on the CLI).
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterator

MAX_NC = 10_000                 # classes (LVIS has 1,203; Objects365 365; OpenImages 601)
MAX_IMG = 8192                  # square input side of any verb
MAX_LABEL_LINES = 100_000       # lines in one YOLO label file (boxes per image)
MAX_LABEL_BYTES = 16 << 20      # bytes of one YOLO label file
MAX_DATA_FILE_BYTES = 64 << 20  # a data YAML or an image list file
MAX_COCO_BYTES = 2 << 30        # a COCO instances JSON (COCO train2017 is 448 MB)
MAX_COCO_RECORDS = 5_000_000    # images + annotations of a COCO file (train2017: 978k)
MAX_IMAGES = 5_000_000          # images in one split
DEFAULT_MAX_MEMORY_GB = 4.0     # a model's activations of one image; its weights get ¼ of it

# The range of every numeric CLI flag, by the option's dest (cli/bounds.py applies them at
# the parser; train/resume.py holds a resumed run's settings to the same ranges);
# (verb, dest) overrides the shared entry for one verb.
FLAG_RANGES: dict[str, tuple[int | float, int | float]] = {
    # model and input
    "img": (1, MAX_IMG),               # a multiple of the stride is checked by the API
    "nc": (1, MAX_NC),
    "seed": (0, 2**32 - 1),            # numpy's and torch's seeds alike
    "max_memory": (0.01, 4096.0),      # GiB: the model memory cap (limits.memory_limit)
    "classes": (0, MAX_NC - 1),
    # thresholds
    "conf": (0.0, 1.0),
    "iou": (0.0, 1.0),
    "score": (0.0, 1.0),
    "rtol": (1e-12, 1.0),
    "max_det": (1, 100_000),
    "pad": (0.0, 64.0),                # strides of border around rectangular val batches
    # scaling
    "depth": (0.05, 16.0),
    "width": (0.05, 16.0),
    "round_to": (1, 1024),
    "groups": (1, 1024),               # g of grouped E-ELAN blocks
    "target_gflops": (1e-6, 1e7),
    "target_params": (1.0, 1e12),
    # backends
    "opset": (17, 30),
    "threads": (1, 1024),
    "repeat": (1, 100_000),
    "warmup": (0, 10_000),
    "trials": (0, 10_000_000),
    "tune_trials": (0, 10_000_000),
    "per_round": (1, 100_000),
    "max_seconds": (1e-3, 1e7),
    # data and training
    "batch_size": (1, 4096),
    "val_batch": (1, 4096),
    "batch": (1, 4096),
    "nominal_batch": (1, 65_536),
    "epochs": (1, 100_000),
    "workers": (0, 256),
    "min_warmup_iters": (0, 10_000_000),
    "clip": (1e-6, 1e6),
    "time_limit": (1e-3, 1e8),
    "train": (0, 1_000_000),
    "val": (0, 1_000_000),
    "train_images": (1, 1_000_000),
    "val_images": (1, 1_000_000),
}

FLAG_RANGES_PER_VERB: dict[tuple[str, str], tuple[int | float, int | float]] = {
    ("e2e", "epochs"): (0, 100_000),   # 0: no training step
    ("data", "nc"): (1, 8),            # the synthetic generator draws 8 shapes
    ("data", "img"): (32, 4096),
}

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


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB, for the bounded-memory checks of tests and
    benchmarks. Why not ``getrusage().ru_maxrss``: Linux keeps that across ``execve``, so a
    child started from a large process (a test session at 3 GB) reports its parent's peak;
    ``VmHWM`` belongs to the new address space and counts only the child's own pages."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # no /proc: the best there is
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fmt_bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def number_problem(value: Any, kind: type = float, lo: float = -math.inf,
                   hi: float = math.inf) -> str | None:
    """What is wrong with ``value`` read from a file as a ``kind`` (int or float) in
    ``[lo, hi]``, as the end of a one-line error (``is 'x', expected an integer``, ``is 9,
    expected 1..8``), or None. The one wording of resumed settings and checkpoint records;
    a bool is not a number, and an int too large for a float is out of range, not a crash."""
    from .errors import show
    noun = "an integer" if kind is int else "a number"
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float)
                                             and not math.isfinite(value)):
        return f"is {show(value, 40)}, expected {noun}"
    if not lo <= value <= hi:
        return f"is {show(value, 40)}, expected {_fmt_bound(lo)}..{_fmt_bound(hi)}"
    return None
