"""Non-maximum suppression in plain torch (no torchvision), with the official semantics.

Per image: candidates with objectness > ``conf``; score = obj × cls (for one-class models the
class probability is not trained, so score = obj); xywh → xyxy; one box per class over
``conf`` (``multi_label``, the evaluation setting) or the best class only; an optional
``classes`` filter; the 30,000 best go into greedy NMS, class-aware unless ``agnostic``; the
first ``max_det`` survivors are kept.

Greedy NMS is sequential by definition (a box is kept when no *kept* higher-scoring box of
its class overlaps it by more than ``iou``). It runs here over score-sorted chunks of boxes:
each chunk is first suppressed by the boxes kept so far (one IoU matrix), then resolved
inside itself by iterating ``keep_i = alive_i ∧ ¬∃ j<i: keep_j ∧ IoU_ji > iou`` to its fixed
point. The fixed point is unique and equals the greedy result (position i is settled once
positions < i are), and is reached in a few vectorized steps in practice. Work stops as soon
as ``max_det`` boxes are kept, since later boxes could only rank after them.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..boxes import box_iou, xywh2xyxy
from ..errors import UserError
from ..nms_settings import DETECT

MAX_NMS = 30000     # boxes into NMS at most (the best by score), as in the official code
CHUNK = 512         # boxes resolved per vectorized step


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float,
               classes: torch.Tensor | None = None, max_det: int | None = None) -> torch.Tensor:
    """Indices kept by greedy NMS, by descending score (ties: lower index first); boxes only
    suppress boxes of their own class when ``classes`` is given."""
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order]
    c = classes[order] if classes is not None else None
    limit = max_det if max_det is not None else len(order)
    kept: list[torch.Tensor] = []          # positions (into ``order``) kept so far, per chunk
    n_kept = 0
    for s in range(0, len(order), CHUNK):
        if n_kept >= limit:
            break
        pos = torch.arange(s, min(s + CHUNK, len(order)))
        bc = b[pos]
        alive = torch.ones(len(pos), dtype=torch.bool)
        if n_kept:
            prev = torch.cat(kept)
            over = box_iou(b[prev], bc) > iou
            if c is not None:
                over &= c[prev][:, None] == c[pos][None, :]
            alive = ~over.any(0)
        # over[j, i]: j < i in this chunk and j would suppress i if kept
        over = torch.triu(box_iou(bc, bc) > iou, diagonal=1)
        if c is not None:
            over &= c[pos][:, None] == c[pos][None, :]
        over &= alive[:, None]
        keep = alive
        while True:
            new = alive & ~(over & keep[:, None]).any(0)
            if torch.equal(new, keep):
                break
            keep = new
        kept.append(pos[keep])
        n_kept += int(keep.sum())
    if not kept:
        return order[:0]
    return order[torch.cat(kept)[:limit]]


def nms(pred: torch.Tensor, conf: float = DETECT.conf, iou: float = DETECT.iou, *,
        classes: Sequence[int] | None = None, agnostic: bool = False,
        multi_label: bool = DETECT.multi_label, max_det: int = DETECT.max_det
        ) -> list[torch.Tensor]:
    """Decoded head output (B, N, 5 + nc) — xywh, objectness, class probabilities — to one
    (n, 6) tensor per image: x1, y1, x2, y2, score, class, best first.

    Defaults are the official detection settings (``nms_settings.DETECT``); evaluation uses
    ``nms_settings.EVAL``.
    """
    pred = torch.as_tensor(pred).float()
    if pred.dim() != 3 or pred.shape[-1] < 6:
        raise UserError(f"model output of shape {tuple(pred.shape)}: NMS expects the decoded "
                        "head output (batch, boxes, 5 + classes); pass the model's first "
                        "output", arg="model")
    nc = pred.shape[-1] - 5
    out = []
    for x in pred:
        x = x[x[:, 4] > conf]
        if not len(x):
            out.append(pred.new_zeros((0, 6)))
            continue
        # score = obj × cls; one-class models never train cls, so their score is obj alone
        cls = x[:, 4:5].expand(-1, 1) if nc == 1 else x[:, 5:] * x[:, 4:5]
        if multi_label:
            i, j = (cls > conf).nonzero(as_tuple=True)
            score = cls[i, j]
        else:
            score, j = cls.max(1)
            i = torch.nonzero(score > conf).flatten()
            score, j = score[i], j[i]
        if classes is not None:
            m = torch.isin(j, torch.tensor(list(classes), dtype=j.dtype))
            i, j, score = i[m], j[m], score[m]
        if len(score) > MAX_NMS:  # the best MAX_NMS, kept in candidate order (ties stay stable)
            k = torch.topk(score, MAX_NMS, sorted=False).indices.sort().values
            i, j, score = i[k], j[k], score[k]
        if not len(score):
            out.append(pred.new_zeros((0, 6)))
            continue
        det = torch.cat((xywh2xyxy(x[i, :4]), score[:, None], j[:, None].float()), 1)
        keep = greedy_nms(det[:, :4], det[:, 4], iou, None if agnostic else det[:, 5], max_det)
        out.append(det[keep])
    return out
