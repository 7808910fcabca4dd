"""ONNX export of a deploy model (opset >= 17), optionally with batch-dynamic input and NMS.

Also holds the small helpers every backend needs (output wrapper, stride check, atomic
artifact writes), so the TVM subpackage does not redo them. The TorchScript exporter
(``dynamo=False``) is used on purpose: the dynamo exporter needs ``onnxscript``, which is not
a project dependency, and the TorchScript one handles our custom NMS symbolic directly.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from ..io_util import atomic_path

OPSET = 17
INPUT_NAME = "images"


# --------------------------------------------------------------------------- shared helpers


def detect_module(model: nn.Module) -> nn.Module:
    """The model's Detect head (any module with ``stride`` and ``anchor_grid`` buffers)."""
    for m in model.modules():
        if hasattr(m, "anchor_grid") and isinstance(getattr(m, "stride", None), torch.Tensor):
            return m
    raise UserError(f"{type(model).__name__}: no Detect head found; export needs a YOLO "
                    "model whose last layer is Detect/IDetect/IAuxDetect")


def max_stride(model: nn.Module) -> int:
    """The largest output stride, from the Detect head's ``stride`` buffer."""
    return int(detect_module(model).stride.max().item())


def check_img_size(model: nn.Module, img: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from ``--img``; both must be positive multiples of the max stride."""
    hw = (int(img), int(img)) if isinstance(img, int) else (int(img[0]), int(img[-1]))
    s = max_stride(model)
    for v in hw:
        if v <= 0 or v % s:
            lo, hi = max(s, v // s * s), (v // s + 1) * s
            raise UserError(f"--img {v}: not a multiple of the model's max stride {s}; "
                            f"use {lo} or {hi}")
    return hw


def example_input(model: nn.Module, img: int | Sequence[int], batch: int = 1,
                  seed: int = 0) -> torch.Tensor:
    """A deterministic random image batch in [0, 1), (B, 3, H, W) fp32."""
    h, w = check_img_size(model, img)
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, h, w, generator=g)


class Outputs(nn.Module):
    """Flattens a YOLO model's eval output ``(decoded, [raw...])`` into a tuple of tensors.

    Backends need a flat, fixed list of outputs: ``decoded`` always, the per-level raw heads
    only when asked (they make numerical comparisons sharper than the sigmoid-squashed
    decoded tensor).
    """

    def __init__(self, model: nn.Module, raw: bool = False) -> None:
        super().__init__()
        self.model = model
        self.raw = raw

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            return (out,)
        decoded, raws = out[0], out[1]
        return (decoded, *raws) if self.raw else (decoded,)


def output_names(model: nn.Module, raw: bool = False) -> list[str]:
    """Names matching :class:`Outputs`: ``output`` then ``raw0..rawN``."""
    return ["output"] + ([f"raw{i}" for i in range(detect_module(model).nl)] if raw else [])


def prepare(model: nn.Module) -> nn.Module:
    """Eval mode, no grads: what every backend traces."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# --------------------------------------------------------------------------- NMS in the graph


def _nms_reference(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int,
                   iou_thr: float, score_thr: float) -> torch.Tensor:
    """Eager stand-in for ONNX NonMaxSuppression (center_point_box=1), used while tracing.

    Same semantics as the ONNX op: per (batch, class), greedy by descending score, keep
    score > score_thr, drop boxes with IoU > iou_thr against a kept one.
    """
    xy, wh = boxes[..., :2], boxes[..., 2:4]
    xyxy = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    sel = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            idx = torch.nonzero(s > score_thr).flatten()
            idx = idx[torch.argsort(s[idx], descending=True, stable=True)]
            kept: list[int] = []
            for i in idx.tolist():
                if len(kept) >= max_per_class:
                    break
                if kept:
                    k = xyxy[b, kept]
                    lt = torch.maximum(k[:, :2], xyxy[b, i, :2])
                    rb = torch.minimum(k[:, 2:], xyxy[b, i, 2:])
                    inter = (rb - lt).clamp(min=0).prod(-1)
                    area = lambda t: (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])  # noqa: E731
                    iou = inter / (area(k) + area(xyxy[b, i]) - inter)
                    if bool((iou > iou_thr).any()):
                        continue
                kept.append(i)
            sel += [[b, c, i] for i in kept]
    return torch.tensor(sel, dtype=torch.int64).reshape(-1, 3)


class _NonMaxSuppression(torch.autograd.Function):
    """Exports as the standard ONNX ``NonMaxSuppression`` op; runs a reference NMS eagerly."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class, iou_thr, score_thr):  # type: ignore[override]
        return _nms_reference(boxes, scores, int(max_per_class), float(iou_thr), float(score_thr))

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_thr, score_thr):  # pragma: no cover
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou_thr, score_thr,
                    center_point_box_i=1)


class WithNMS(nn.Module):
    """Decoded (B, N, 5+nc) → detections (K, 7): [batch, x1, y1, x2, y2, score, class].

    score = objectness × class probability; NMS is class-aware, ``max_det`` boxes per class
    and image at most.
    """

    def __init__(self, model: nn.Module, iou_thr: float = 0.45, score_thr: float = 0.25,
                 max_det: int = 100) -> None:
        super().__init__()
        self.model = model
        self.iou_thr, self.score_thr, self.max_det = iou_thr, score_thr, max_det

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        y = out if isinstance(out, torch.Tensor) else out[0]
        n = y.shape[1]
        boxes = y[..., :4]                                   # cx, cy, w, h
        scores = (y[..., 5:] * y[..., 4:5]).permute(0, 2, 1).contiguous()   # (B, nc, N)
        nc = scores.shape[1]
        sel = _NonMaxSuppression.apply(
            boxes, scores, torch.tensor([self.max_det], dtype=torch.int64),
            torch.tensor([self.iou_thr], dtype=torch.float32),
            torch.tensor([self.score_thr], dtype=torch.float32))
        b, c, i = sel[:, 0], sel[:, 1], sel[:, 2]
        box = boxes.reshape(-1, 4).index_select(0, b * n + i)
        score = scores.reshape(-1).index_select(0, (b * nc + c) * n + i)
        xyxy = torch.cat((box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2), 1)
        return torch.cat((b.unsqueeze(1).float(), xyxy, score.unsqueeze(1),
                          c.unsqueeze(1).float()), 1)


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

    if opset < 17:
        raise UserError(f"--opset {opset}: the exporter targets opset 17 or newer; use --opset 17")
    if nms and raw_outputs:
        raise UserError("--nms with raw outputs: NMS replaces the outputs; drop one of them")
    model = prepare(model)
    x = example_input(model, img)
    if nms:
        net: nn.Module = WithNMS(model, iou_thr, score_thr, max_det).eval()
        names = ["detections"]
    else:
        net = Outputs(model, raw=raw_outputs).eval()
        names = output_names(model, raw_outputs)
    dyn = None
    if dynamic_batch:
        dyn = {INPUT_NAME: {0: "batch"}}
        for nm in names:
            dyn[nm] = {0: "num_detections" if nm == "detections" else "batch"}
    elif nms:
        dyn = {"detections": {0: "num_detections"}}
    with atomic_path(path, ".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=dyn,
                          do_constant_folding=True)
        if check:
            onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    return Path(path)


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with ``threads`` intra-op threads (1 inter-op)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(path: str | os.PathLike, x, threads: int | None = None) -> list:
    """Run an exported model once on ``x`` (numpy or tensor); list of numpy outputs."""
    import numpy as np

    sess = ort_session(path, threads)
    arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: arr})
