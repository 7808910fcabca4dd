"""Training hyperparameters: the official presets, YAML files, and the trainer's loss scaling.

The presets carry the official values of ``hyp.scratch.p5`` / ``hyp.scratch.p6`` /
``hyp.scratch.tiny`` (facts of the published recipe). The loss gains in them are nominal:
the official trainer rescales them for the model and input size before building the loss
(``scale_hyp``), and so do we, so a figure from either side compares one to one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import UserError
from ..io_util import atomic_path

_COMMON: dict[str, float] = {
    "lr0": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 3.0,
    "warmup_momentum": 0.8, "warmup_bias_lr": 0.1, "box": 0.05, "cls_pw": 1.0, "obj_pw": 1.0,
    "iou_t": 0.2, "anchor_t": 4.0, "fl_gamma": 0.0, "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4,
    "degrees": 0.0, "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5,
    "mosaic": 1.0, "copy_paste": 0.0, "loss_ota": 1,
}

PRESETS: dict[str, dict[str, float]] = {
    # hyp.scratch.p5.yaml (yolov7, yolov7x)
    "p5": {**_COMMON, "lrf": 0.1, "cls": 0.3, "obj": 0.7, "translate": 0.2, "scale": 0.9,
           "mixup": 0.15, "paste_in": 0.15},
    # hyp.scratch.p6.yaml (yolov7-w6, -e6, -d6, -e6e)
    "p6": {**_COMMON, "lrf": 0.2, "cls": 0.3, "obj": 0.7, "translate": 0.2, "scale": 0.9,
           "mixup": 0.15, "paste_in": 0.15},
    # hyp.scratch.tiny.yaml (yolov7-tiny)
    "tiny": {**_COMMON, "lrf": 0.01, "cls": 0.5, "obj": 1.0, "translate": 0.1, "scale": 0.5,
             "mixup": 0.05, "paste_in": 0.05},
}

# keys the loss reads; a hyp without them cannot build a criterion
LOSS_KEYS = ("box", "cls", "obj", "cls_pw", "obj_pw", "anchor_t", "fl_gamma")


def load_hyp(src: str | os.PathLike | Mapping[str, Any] = "p5") -> dict[str, Any]:
    """A fresh hyp dict from a preset name (``p5``, ``p6``, ``tiny``), a YAML file or a mapping.

    Missing loss keys are a one-line ``UserError`` naming the source and the key.
    """
    if isinstance(src, Mapping):
        hyp, where = dict(src), "hyp"
    elif isinstance(src, str) and src in PRESETS:
        return dict(PRESETS[src])
    else:
        path = Path(src)
        if not path.is_file():
            raise UserError(f"hyp {str(src)!r}: not a preset ({', '.join(PRESETS)}) and not a "
                            f"file; give a preset name or a YAML file")
        try:
            hyp = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            at = f":{line + 1}" if line is not None else ""
            raise UserError(f"hyp {path}{at}: not valid YAML; fix the file") from None
        if not isinstance(hyp, dict):
            raise UserError(f"hyp {path}: expected a mapping of name: value, got "
                            f"{type(hyp).__name__}")
        where = f"hyp {path}"
    missing = [k for k in LOSS_KEYS if k not in hyp]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}; add them (the 'p5' preset "
                        f"has the official values)")
    for k in LOSS_KEYS:
        if not isinstance(hyp[k], (int, float)) or isinstance(hyp[k], bool):
            raise UserError(f"{where}: {k} = {hyp[k]!r} is not a number")
    return hyp


def scale_hyp(hyp: Mapping[str, Any], nl: int, nc: int, img: int) -> dict[str, Any]:
    """The gains the official trainer hands to its loss: box ×3/nl, cls ×nc/80·3/nl,
    obj ×(img/640)²·3/nl (gains were tuned for 3 levels, 80 classes and 640 px)."""
    out = dict(hyp)
    out["box"] = float(hyp["box"]) * 3.0 / nl
    out["cls"] = float(hyp["cls"]) * nc / 80.0 * 3.0 / nl
    out["obj"] = float(hyp["obj"]) * (img / 640.0) ** 2 * 3.0 / nl
    out.setdefault("label_smoothing", 0.0)
    return out


def save_hyp(hyp: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a hyp as YAML (atomically), e.g. a preset to start a custom file from."""
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(dict(hyp), sort_keys=False))
