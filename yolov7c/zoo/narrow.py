"""yolov7-tiny-n: yolov7-tiny at a quarter of its width, the model of the shipped checkpoint.

Not a paper model (so not in the registry, whose entries are checked against the official
cfgs): a width-only compound scaling of yolov7-tiny (``ir.scaling.scale``), small enough that
its trained weights ship inside the package (``zoo/weights``) and train on two CPU cores in
minutes. The file is also a DSL source: ``yolov7c train yolov7c/zoo/narrow.py ...`` builds it
through ``build()``.
"""
from __future__ import annotations

from pathlib import Path

from yolov7c.ir.graph import Graph
from yolov7c.ir.scaling import scale
from yolov7c.zoo.p5 import yolov7_tiny

NAME = "yolov7-tiny-n"
WIDTH = 0.25
NC = 3  # the synthetic shapes set (yolov7c.data.synth) the shipped weights were trained on
SHIPPED = Path(__file__).resolve().parent / "weights" / "yolov7-tiny-n_synth.ckpt"


def yolov7_tiny_n(nc: int = NC) -> Graph:
    """yolov7-tiny, every width × 0.25 (rounded up to multiples of 8), ``nc`` classes."""
    return scale(yolov7_tiny(nc=nc), width=WIDTH, rule="width-only", name=NAME)


def build() -> Graph:
    """The DSL entry point (``yolov7c train yolov7c/zoo/narrow.py``)."""
    return yolov7_tiny_n()


def shipped_checkpoint() -> Path:
    """The packaged checkpoint: yolov7-tiny-n trained on the synthetic set (docs/training.md)."""
    return SHIPPED
