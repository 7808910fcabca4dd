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
    return check_stride(img, max_stride(model), arg)


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
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise UserError(f"{arg} {nc!r}: the number of classes must be a positive integer", arg=arg)
    return nc


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
    one-line error before any long work)."""
    if not path:
        raise UserError(f"{arg}: give a folder", arg=arg)
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{arg} {p}: is a file; give a folder", arg=arg)
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserError(f"{arg} {p}: not writable; choose another folder", arg=arg)
        return p
    output_path(p / "x", arg)
    return p


def output_path(out: Any, arg: str = "out") -> Path:
    """An output file path that can be written: not a folder, no file in place of a parent
    folder, a writable existing ancestor (checked before any long work)."""
    if not out:
        raise UserError(f"{arg}: give an output path", arg=arg)
    p = Path(out)
    if p.is_dir():
        raise UserError(f"{arg} {p}: is a folder; give a file name", arg=arg)
    for parent in p.parents:  # a file where a folder should be
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{arg} {p}: {parent} is a file, not a folder", arg=arg)
            if not os.access(parent, os.W_OK):
                raise UserError(f"{arg} {p}: {parent} is not writable; choose another place",
                                arg=arg)
            break
    return p
