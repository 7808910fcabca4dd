"""Box helpers for training: element-wise CIoU (corner conversion and the batched pairwise IoU
are the evaluator's, ``yolov7c.eval.nms``)."""
from __future__ import annotations

import math

import torch


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
