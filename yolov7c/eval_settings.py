"""What a COCO evaluation's number depends on, and the record of it a training checkpoint
keeps (bottom layer: no torch import).

The trainer validates each epoch with ``EvalSettings`` (its image size, its batch, the
official NMS settings) and stores them in the checkpoint's metadata (key ``eval``); ``val``
of that checkpoint with no flags reads them back, so it reproduces the mAP the run reported.
A checkpoint is user data: the record is validated field by field against the ranges of the
CLI's flags (``limits.FLAG_RANGES``) before anything is allocated from it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, NoReturn

from .errors import UserError, show
from .limits import FLAG_RANGES, number_problem
from .nms_settings import EVAL

VAL_BATCH = 16   # images per batch of ``val`` when neither a flag nor a checkpoint gives one
META_KEY = "eval"  # the checkpoint metadata key of the record

# each field's flag, whose range in FLAG_RANGES bounds it
_FLAG_OF = {"img": "img", "batch": "batch_size", "conf": "conf", "iou": "iou",
            "max_det": "max_det", "pad": "pad"}


@dataclass(frozen=True)
class EvalSettings:
    """Input size, batch, NMS settings and batch shapes of one evaluation."""

    img: int
    batch: int = VAL_BATCH
    conf: float = EVAL.conf
    iou: float = EVAL.iou
    max_det: int = EVAL.max_det
    multi_label: bool = EVAL.multi_label
    rect: bool | None = None   # None: rectangular batches where the backend takes any shape
    pad: float = 0.0           # strides of border around rectangular batches

    def as_meta(self) -> dict[str, Any]:
        """The JSON-able record a checkpoint keeps."""
        return asdict(self)

    def evaluate_kw(self) -> dict[str, Any]:
        """The keywords of ``eval.evaluator.evaluate`` these settings fill."""
        d = asdict(self)
        d["batch_size"] = d.pop("batch")
        return d

    def describe(self) -> str:
        """One line: ``img 128, batch 16, conf 0.001, iou 0.65, max_det 300``."""
        text = (f"img {self.img}, batch {self.batch}, conf {self.conf:g}, iou {self.iou:g}, "
                f"max_det {self.max_det}")
        if self.multi_label != EVAL.multi_label:
            text += f", multi_label {self.multi_label}"
        if self.rect is not None:
            text += f", rect {self.rect}"
        return text + (f", pad {self.pad:g}" if self.pad else "")

    @classmethod
    def from_meta(cls, raw: Any, where: str) -> "EvalSettings":
        """The record read back from checkpoint ``where``, each field type- and
        range-checked; a bad one is a one-line error naming it."""
        if not isinstance(raw, dict):
            _fail(where, "", f"is {show(raw, 40)}, expected a dict")
        missing = [f.name for f in fields(cls) if f.name not in raw]
        if missing:
            _fail(where, "", f"lacks {', '.join(missing)}")
        return cls(**{f.name: _checked(where, f.name, f.type, raw[f.name])
                      for f in fields(cls)})


def _checked(where: str, name: str, kind: Any, v: Any) -> Any:
    """``v`` if it is a value of the field's annotation (``int``, ``float``, ``bool``,
    ``bool | None``) inside its flag's range."""
    if kind == "bool | None" and v is None:
        return v
    if kind.startswith("bool"):
        if not isinstance(v, bool):
            _fail(where, name, f"is {show(v, 40)}, expected true or false")
        return v
    problem = number_problem(v, int if kind == "int" else float, *FLAG_RANGES[_FLAG_OF[name]])
    if problem:
        _fail(where, name, problem)
    return v


def _fail(where: str, name: str, problem: str) -> NoReturn:
    field = f"{META_KEY}.{name}" if name else META_KEY
    raise UserError(f"{where}: the recorded eval settings' {field} {problem}; the file is "
                    f"damaged or was not written by yolov7c train", arg="model")
