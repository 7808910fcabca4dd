"""Box helpers for training: corner conversion, batched pairwise IoU, element-wise CIoU."""
from __future__ import annotations

import math

import torch


def xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre/size → corners."""
    xy, half = b[..., :2], b[..., 2:4] / 2
    return torch.cat((xy - half, xy + half), -1)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (..., N, 4) with every box of ``b`` (..., M, 4), corners;
    leading dimensions broadcast (a batch of images at once) → (..., N, M). Written per
    coordinate, in place where it can, because the (N, M) temporaries dominate its cost."""
    ax1, ay1, ax2, ay2 = (a[..., :, None, i] for i in range(4))
    bx1, by1, bx2, by2 = (b[..., None, :, i] for i in range(4))
    iw = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    inter = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0).mul_(iw)
    del iw
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    return inter.div_((area_a + area_b).sub_(inter))


def ciou(p: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matched boxes ``p`` and ``t`` (n, 4) in centre/size form.

    CIoU = IoU − ρ²/c² − α·v, v = 4/π²·(atan(w_t/h_t) − atan(w_p/h_p))², α = v/(v − IoU + 1)
    with α held constant (no gradient), as in the paper's YOLOv5/v7 loss; the ``eps`` terms
    sit where the official code puts them so the values agree to float rounding.
    """
    p1, p2 = p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2
    t1, t2 = t[:, :2] - t[:, 2:4] / 2, t[:, :2] + t[:, 2:4] / 2
    inter = (torch.minimum(p2, t2) - torch.maximum(p1, t1)).clamp(0).prod(1)
    w1, h1 = p2[:, 0] - p1[:, 0], p2[:, 1] - p1[:, 1] + eps
    w2, h2 = t2[:, 0] - t1[:, 0], t2[:, 1] - t1[:, 1] + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cwh = torch.maximum(p2, t2) - torch.minimum(p1, t1)  # enclosing box
    c2 = cwh[:, 0] ** 2 + cwh[:, 1] ** 2 + eps
    rho2 = (((t1 + t2) - (p1 + p2)) ** 2).sum(1) / 4  # squared centre distance
    v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)
