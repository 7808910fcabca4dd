"""The paper's model zoo, training form: ``list()``, ``get(name, nc=...)``, ``entry(name)``."""
from __future__ import annotations

from . import p5, p6
from .registry import ZooEntry, ablation_names, entry, get, names, register

register("yolov7-tiny", 640, "YOLOv7-tiny (LeakyReLU), edge GPU")(p5.yolov7_tiny)
register("yolov7-tiny-silu", 640, "YOLOv7-tiny with SiLU (official deploy cfg only)",
         training=False)(p5.yolov7_tiny_silu)
register("yolov7", 640, "YOLOv7, normal GPU")(p5.yolov7)
register("yolov7x", 640, "YOLOv7-X: compound-scaled yolov7")(p5.yolov7x)
register("yolov7-w6", 1280, "YOLOv7-W6, cloud GPU, P6")(p6.yolov7_w6)
register("yolov7-e6", 1280, "YOLOv7-E6: DownC, deeper ELANs")(p6.yolov7_e6)
register("yolov7-d6", 1280, "YOLOv7-D6: deepest ELANs")(p6.yolov7_d6)
register("yolov7-e6e", 1280, "YOLOv7-E6E: extended ELAN (two summed groups)")(p6.yolov7_e6e)
from . import ablations  # noqa: E402,F401 - registers the paper's ablation variants


def list() -> list[str]:  # noqa: A001 - the registry's public verb, as the issue names it
    """Names of every zoo model."""
    return names()


__all__ = ["ZooEntry", "ablation_names", "entry", "get", "list", "names", "register"]
