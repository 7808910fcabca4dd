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
    ax1, ay1, ax2, ay2 = a[..., :, None, :].unbind(-1)
    bx1, by1, bx2, by2 = b[..., None, :, :].unbind(-1)
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
    pxy, phalf, txy, thalf = p[:, :2], p[:, 2:4] / 2, t[:, :2], t[:, 2:4] / 2
    p1, p2, t1, t2 = pxy - phalf, pxy + phalf, txy - thalf, txy + thalf   # corners
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
