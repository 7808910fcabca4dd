"""Argument checks at the API boundary: one rule each, errors that name the argument.

Library errors name the argument (``img``, ``repeat``, ``iou``); the CLI maps the name to
its flag. Every verb that takes a model and an image size uses ``image_size``: one default
rule and one stride check.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from ..ir.graph import Graph

DEFAULT_TRIALS = 64  # tune's default: enough for a first tuned build; a rerun tops it up


def default_img(model: nn.Module) -> int:
    """The one default image size: the zoo entry's (640 P5, 1280 P6), else 640, or 1280 for
    a model whose largest stride is 64 or more."""
    from ..backends.common import max_stride
    from ..passes.verify import ir_graph
    from ..report.model import default_img as graph_default
    g = ir_graph(model)
    if g is not None:
        return int(graph_default(g))
    return 1280 if max_stride(model) >= 64 else 640


def check_img(model: nn.Module, img: Any, arg: str = "img") -> int:
    """``img`` must be a positive integer multiple of the model's largest stride; the hint
    names the two nearest valid sizes."""
    from ..backends.common import max_stride
    from ..passes.verify import ir_graph
    img = check_stride(img, max_stride(model), arg)
    g = ir_graph(model)
    if g is not None:
        check_memory(g, img, arg)
    return img


def check_stride(img: Any, stride: int, arg: str = "img") -> int:
    """``check_img`` for a known largest stride (before any model is built)."""
    if isinstance(img, bool) or not isinstance(img, int):
        raise UserError(f"{arg} {img!r}: expected an integer image size", arg=arg)
    s = int(stride)
    if img > 0 and img % s == 0:
        return img
    from ..ir.analysis import valid_sizes
    lo, hi = valid_sizes(img, s)
    raise UserError(f"{arg} {img}: not a positive multiple of the model's largest stride {s}; "
                    f"use {lo} or {hi}", arg=arg)


def image_size(model: nn.Module, img: int | None) -> int:
    """``img`` checked against the stride, or the default size when None."""
    return default_img(model) if img is None else check_img(model, img)


def check_nc(nc: Any, arg: str = "nc") -> int:
    """A class count in 1..``limits.MAX_NC``."""
    from ..limits import MAX_NC
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise UserError(f"{arg} {nc!r}: the number of classes must be a positive integer", arg=arg)
    if nc > MAX_NC:
        raise UserError(f"{arg} {nc}: more than {MAX_NC:,} classes is not supported; use fewer",
                        arg=arg)
    return nc


def memory_estimate(graph: Graph, img: int | None = None) -> tuple[int, int]:
    """(weight bytes, activation bytes of one image at ``img``) of ``graph`` in float32, from
    the IR alone (nothing is built): parameters from the op catalog; activations the sum of
    every node's output (channels × (img / stride)²) — an upper bound of an eval forward."""
    from ..ir.analysis import analyze
    params = int(analyze(graph, graph.max_stride).params)  # params do not depend on img
    if img is None:
        return 4 * params, 0
    sh = graph.shapes
    area = lambda s: (-(-img // int(s))) ** 2  # noqa: E731  (ceil: odd strides round up)
    acts = graph.in_channels * img * img + sum(int(c) * area(s)
                                               for c, s in zip(sh.c_out, sh.stride))
    return 4 * params, 4 * acts


def check_memory(graph: Graph, img: int | None = None, arg: str = "img") -> None:
    """Refuse a model the process would need too much memory for, before building it: its
    float32 weights above ¼ of the cap (lowering, the deploy copy and export hold them about
    four times), or one image's activations at ``img`` above the cap. The cap is
    ``limits.max_memory_gb()`` (CLI: ``--max-memory``)."""
    from ..limits import max_memory_gb
    cap = max_memory_gb() * 2**30
    weights, acts = memory_estimate(graph, img)
    if weights > cap / 4:
        raise UserError(f"model {graph.name}: {weights / 2**30:.2f} GiB of weights "
                        f"({weights // 4:,} parameters) exceeds ¼ of the {max_memory_gb():g} GiB "
                        f"memory cap; use a smaller model or raise the cap: max_memory=<GiB>",
                        arg="max_memory")
    if acts > cap:
        raise UserError(f"{arg} {img}: one image of {graph.name} needs about "
                        f"{acts / 2**30:.2f} GiB of activations, above the {max_memory_gb():g} "
                        f"GiB memory cap; use a smaller image size or raise the cap: "
                        f"max_memory=<GiB>", arg=arg)


def check_seed(seed: Any, arg: str = "seed") -> int:
    """A seed every generator we feed takes (numpy's and torch's): an integer in 0..2³²-1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"{arg} {seed!r}: expected an integer in 0..{2**32 - 1}", arg=arg)
    return seed


def positive_int(value: Any, arg: str, minimum: int = 1) -> int:
    """An integer ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{arg} {value!r}: expected an integer ≥ {minimum}", arg=arg)
    return value


def fraction(value: Any, arg: str) -> float:
    """A number in [0, 1] (IoU and score thresholds)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"{arg} {value!r}: expected a number in [0, 1]", arg=arg)
    return float(value)


def positive_float(value: Any, arg: str) -> float:
    """A finite number > 0 (tolerances, time limits)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise UserError(f"{arg} {value!r}: expected a positive number", arg=arg)
    return float(value)


def output_dir(path: Any, arg: str) -> Path:
    """A folder we may create or write into (a file there, or an unwritable place, is a
    one-line error before any long work). The folder itself is created when missing; its
    missing parents only under the current folder (as for ``output_path``)."""
    if not path:
        raise UserError(f"{arg}: give a folder", arg=arg)
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{arg} {p}: is a file; give a folder", arg=arg)
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserError(f"{arg} {p}: not writable; choose another folder", arg=arg)
        return p
    output_path(p / "x" if _under_cwd(p) else p, arg)
    return p


def output_path(out: Any, arg: str = "out", inputs: tuple[Any, ...] = ()) -> Path:
    """An output file path that can be written, checked before any long work: absent or a
    regular file (never a device, FIFO or folder, also through a symlink), not one of
    ``inputs`` (symlinks resolved), no file in place of a parent folder, a writable
    existing ancestor. Missing folders are created later only under the current folder;
    elsewhere a missing parent is refused (a typo must not create folders anywhere)."""
    from ..io_util import check_replaceable, missing_folders
    if not out:
        raise UserError(f"{arg}: give an output path", arg=arg)
    p = Path(out)
    if p.is_dir():
        raise UserError(f"{arg} {p}: is a folder; give a file name", arg=arg)
    try:
        check_replaceable(p, arg)
    except UserError as e:
        raise UserError(f"{arg} {e}", arg=arg) from None
    for src in inputs:
        if src is not None and _same_file(p, src):
            raise UserError(f"{arg} {p}: is the input {src} itself; write to another file "
                            f"(the input would be lost)", arg=arg)
    missing = missing_folders(p)
    if missing and not _under_cwd(missing[0]):
        raise UserError(f"{arg} {p}: folder {missing[-1]} does not exist; create it first "
                        f"(only folders under the current folder are created for you)", arg=arg)
    for parent in p.parents:  # a file where a folder should be
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{arg} {p}: {parent} is a file, not a folder", arg=arg)
            if not os.access(parent, os.W_OK):
                raise UserError(f"{arg} {p}: {parent} is not writable; choose another place",
                                arg=arg)
            break
    return p


def _same_file(a: Path, b: Any) -> bool:
    """Whether ``a`` and ``b`` name the same file (symlinks and hard links included)."""
    try:
        return os.path.samefile(a, os.fspath(b))
    except (OSError, TypeError):
        return False


def _under_cwd(p: Path) -> bool:
    """Whether ``p`` (symlinks in existing parents resolved) lies inside the current folder."""
    try:
        p.resolve().relative_to(Path.cwd().resolve())
        return True
    except (ValueError, OSError):
        return False
