"""The one home of box geometry: conversions between normalized centre/size and pixel corners,
pairwise IoU and the training loss's CIoU.

Why one module: the normalized-``cxcywh`` ↔ pixel-``xyxy`` convention was written eight times
across data, eval and train, each copy a chance to disagree by half a box. Conversions take
NumPy arrays or torch tensors (``(..., 4)``: the box columns only; callers slice off a class
column themselves) and return the same kind, so the data pipeline (NumPy) and the loss and
NMS (torch) share the same lines.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

Boxes = TypeVar("Boxes", np.ndarray, "torch.Tensor")


def _cat(parts: Sequence[Boxes], like: Boxes) -> Boxes:
    """Concatenate along the last axis with the library ``like`` belongs to."""
    if isinstance(like, np.ndarray):
        return np.concatenate(parts, -1)
    import torch
    return torch.cat(tuple(parts), -1)


def xywh2xyxy(x: Boxes) -> Boxes:
    """(cx, cy, w, h) → (x1, y1, x2, y2): corners are centre ∓ half size."""
    xy, half = x[..., :2], x[..., 2:4] / 2
    return _cat((xy - half, xy + half), x)


def xyxy2xywh(x: Boxes) -> Boxes:
    """(x1, y1, x2, y2) → (cx, cy, w, h): centre is the corners' mean, size their difference."""
    p1, p2 = x[..., :2], x[..., 2:4]
    return _cat(((p1 + p2) / 2, p2 - p1), x)


def _scale(w: float, h: float, like: Boxes) -> Boxes:
    s = np.array([w, h, w, h], dtype=np.float64)
    if isinstance(like, np.ndarray):
        return s.astype(like.dtype if like.dtype.kind == "f" else np.float32)
    import torch
    return torch.as_tensor(s, dtype=like.dtype if like.is_floating_point() else torch.float32,
                           device=like.device)


def xywhn2xyxy(x: Boxes, w: float, h: float, padw: float = 0.0, padh: float = 0.0) -> Boxes:
    """Normalized (cx, cy, w, h) → pixel (x1, y1, x2, y2) in a ``w`` × ``h`` image, shifted by
    the letterbox/mosaic padding (``padw``, ``padh``)."""
    out = xywh2xyxy(x) * _scale(w, h, x)
    out[..., 0::2] += padw
    out[..., 1::2] += padh
    return out


def xyxy2xywhn(x: Boxes, w: float, h: float) -> Boxes:
    """Pixel (x1, y1, x2, y2) → normalized (cx, cy, w, h); the inverse of ``xywhn2xyxy``
    without padding."""
    return xyxy2xywh(x) / _scale(w, h, x)


def box_iou(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """IoU of every xyxy box of ``a`` (..., N, 4) with every box of ``b`` (..., M, 4) →
    (..., N, M); leading dimensions broadcast (the training assigner passes a batch of
    images at once). Written per coordinate, in place where it can, because the (N, M)
    temporaries dominate its cost. NumPy inputs are accepted and answered in NumPy."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        import torch
        return box_iou(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))).numpy()
    import torch
    ax1, ay1, ax2, ay2 = a[..., :, None, :].unbind(-1)
    bx1, by1, bx2, by2 = b[..., None, :, :].unbind(-1)
    iw = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    inter = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0).mul_(iw)
    del iw
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    return inter.div_((area_a + area_b).sub_(inter))


def ciou(p: "torch.Tensor", t: "torch.Tensor", eps: float = 1e-7) -> "torch.Tensor":
    """Complete IoU of matched boxes ``p`` and ``t`` (n, 4) in centre/size form.

    CIoU = IoU − ρ²/c² − α·v, v = 4/π²·(atan(w_t/h_t) − atan(w_p/h_p))², α = v/(v − IoU + 1)
    with α held constant (no gradient), as in the paper's YOLOv5/v7 loss; the ``eps`` terms
    sit where the official code puts them so the values agree to float rounding.
    """
    import torch
    pc, tc = xywh2xyxy(p[:, :4]), xywh2xyxy(t[:, :4])
    p1, p2, t1, t2 = pc[:, :2], pc[:, 2:], tc[:, :2], tc[:, 2:]   # corners
    inter = (torch.minimum(p2, t2) - torch.maximum(p1, t1)).clamp_(min=0).prod(1)
    eps_h = p.new_tensor([0.0, eps])
    wh1, wh2 = p2 - p1 + eps_h, t2 - t1 + eps_h          # (w, h + eps) from the corners
    union = wh1.prod(1) + wh2.prod(1) - inter + eps
    iou = inter / union
    cwh = torch.maximum(p2, t2) - torch.minimum(p1, t1)  # enclosing box
    c2 = cwh.pow(2).sum(1) + eps
    rho2 = ((t1 + t2) - (p1 + p2)).pow(2).sum(1) / 4      # squared centre distance
    wh = torch.stack((wh2, wh1))                          # (2, n, 2)
    ang = torch.atan(wh[..., 0] / (wh[..., 1] + eps))
    v = (4 / math.pi ** 2) * (ang[0] - ang[1]).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)
