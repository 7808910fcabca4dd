"""ONNX export of a deploy model (opset 17+), optionally with batch-dynamic input and NMS.

The TorchScript exporter (``dynamo=False``) is used on purpose: the dynamo exporter needs
``onnxscript``, which is not a project dependency. NMS is not traced: the model is exported
alone, then the standard ``NonMaxSuppression`` op and the few index/concat nodes around it
are appended with ``onnx.helper`` — tracing a Python NMS took minutes for yolov7 (172 s at
320, 368 s with a negative score threshold), appending the nodes takes milliseconds.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from ..io_util import atomic_path
from .common import (INPUT_NAME, Outputs, example_input,
                     output_names, prepare)

__all__ = ["OPSET", "add_nms", "export_onnx", "max_opset", "ort_session", "run_onnx"]

OPSET = 17


def max_opset() -> int:
    """The newest opset the TorchScript exporter of this torch writes."""
    try:
        from torch.onnx import _constants
        return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET",
                           _constants.ONNX_MAX_OPSET))
    except (ImportError, AttributeError):
        return OPSET


def _check_nms_args(iou_thr: float, score_thr: float, max_det: int) -> None:
    for name, v in (("iou_thr", iou_thr), ("score_thr", score_thr)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1 \
                or math.isnan(v):
            raise UserError(f"{name} {v!r}: must be a number in [0, 1] (e.g. 0.45 for iou_thr, "
                            f"0.25 for score_thr)", arg=name)
    if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
        raise UserError(f"max_det {max_det!r}: must be an integer >= 1 (e.g. 100)",
                        arg="max_det")


# --------------------------------------------------------------------------- NMS in the graph


def add_nms(proto, iou_thr: float = 0.45, score_thr: float = 0.25, max_det: int = 100,
            decoded: str = "output", out: str = "detections"):
    """Replace the graph output ``decoded`` (B, N, 5+nc: cx, cy, w, h, obj, classes) by
    ``out`` (K, 7): [batch, x1, y1, x2, y2, score, class], score = obj × class probability.

    ONNX ``NonMaxSuppression`` is class-aware here (scores are (B, nc, N)), keeps
    score > score_thr, drops IoU > iou_thr, and at most ``max_det`` boxes per class and image.
    """
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    _check_nms_args(iou_thr, score_thr, max_det)
    g = proto.graph
    p = "nms_"

    def const(name: str, value, dtype) -> str:
        full = f"{p}k_{name}"   # initializers and node outputs share one namespace
        g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), full))
        return full

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        g.node.append(helper.make_node(op, inputs, [p + name], name=p + name, **attrs))
        return p + name

    i64 = np.int64
    ax2, ax1 = const("ax2", [2], i64), const("ax1", [1], i64)
    boxes = node("Slice", [decoded, const("s0", [0], i64), const("s4", [4], i64), ax2], "boxes")
    obj = node("Slice", [decoded, const("s4b", [4], i64), const("s5", [5], i64), ax2], "obj")
    cls = node("Slice", [decoded, const("s5b", [5], i64), const("end", [2**62], i64), ax2],
               "cls")
    scores = node("Transpose", [node("Mul", [cls, obj], "score_bnc")], "scores", perm=[0, 2, 1])
    sel = node("NonMaxSuppression", [boxes, scores, const("max", [max_det], i64),
                                     const("iou", [iou_thr], np.float32),
                                     const("thr", [score_thr], np.float32)],
               "selected", center_point_box=1)                            # (K, 3): b, c, i
    bi = node("Gather", [sel, const("bi_idx", [0, 2], i64)], "bi", axis=1)   # (K, 2)
    box = node("GatherND", [boxes, bi], "box")                               # (K, 4)
    score = node("GatherND", [scores, sel], "score")                         # (K,)
    xy = node("Slice", [box, const("b0", [0], i64), const("b2", [2], i64), ax1], "xy")
    wh = node("Slice", [box, const("b2b", [2], i64), const("b4", [4], i64), ax1], "wh")
    half = node("Mul", [wh, const("c_half", 0.5, np.float32)], "half")
    # x1y1 = c - wh/2, x2y2 = c + wh/2
    x1y1, x2y2 = node("Sub", [xy, half], "x1y1"), node("Add", [xy, half], "x2y2")

    def column(j: int, name: str) -> str:
        c = node("Gather", [sel, const(f"col{j}", [j], i64)], f"{name}_i", axis=1)  # (K, 1)
        return node("Cast", [c], name, to=TensorProto.FLOAT)

    score_col = node("Unsqueeze", [score, ax1], "score_col")
    g.node.append(helper.make_node(
        "Concat", [column(0, "batch"), x1y1, x2y2, score_col, column(1, "class")], [out],
        name=p + "detections", axis=1))
    keep = [o for o in g.output if o.name != decoded]
    del g.output[:]
    g.output.extend(keep + [helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                          ["num_detections", 7])])
    return proto


# --------------------------------------------------------------------------- export


def export_onnx(model: nn.Module, img: int | Sequence[int], path: str | os.PathLike, *,
                dynamic_batch: bool = False, nms: bool = False, raw_outputs: bool = False,
                opset: int = OPSET, iou_thr: float = 0.45, score_thr: float = 0.25,
                max_det: int = 100, check: bool = True) -> Path:
    """Export ``model`` (eval/deploy form) to ONNX at ``path``, atomically; return the path.

    Outputs: ``output`` (B, N, 5+nc) and, with ``raw_outputs``, ``raw0..`` (B, na, H, W, 5+nc);
    with ``nms``, a single ``detections`` (K, 7) instead. ``onnx.checker`` runs on the result.
    """
    import onnx

    hi = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSET <= opset <= hi:
        raise UserError(f"opset {opset!r}: the exporter writes opsets {OPSET} to {hi}; use "
                        f"{OPSET}", arg="opset")
    if nms and raw_outputs:
        raise UserError("nms with raw_outputs: NMS replaces the outputs; drop one of them",
                        arg="nms")
    if nms:
        _check_nms_args(iou_thr, score_thr, max_det)
    model = prepare(model)
    x = example_input(model, img)
    net = Outputs(model, raw=raw_outputs and not nms).eval()
    names = output_names(model, raw_outputs and not nms)
    dyn = {INPUT_NAME: {0: "batch"}, **{nm: {0: "batch"} for nm in names}} \
        if dynamic_batch else None
    with atomic_path(path, ".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=dyn,
                          do_constant_folding=True)
        if nms:
            onnx.save(add_nms(onnx.load(str(tmp)), iou_thr, score_thr, max_det), str(tmp))
        if check:
            onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    return Path(path)


def ort_session(path: str | os.PathLike, threads: int | None = None,
                profile_prefix: str | None = None):
    """An onnxruntime CPU session with ``threads`` intra-op threads (1 inter-op);
    ``profile_prefix``: onnxruntime's per-node profiling on, its JSON written under that
    prefix by ``end_profiling()``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(path: str | os.PathLike, x, threads: int | None = None) -> list:
    """Run an exported model once on ``x`` (numpy or tensor); list of numpy outputs."""
    import numpy as np

    sess = ort_session(path, threads)
    arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: arr})
