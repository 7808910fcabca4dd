"""Label assignment of the YOLOv7 training loss: candidate cells, then SimOTA, batched.

Candidates (``candidates``): every target is tried on every level and anchor whose box ratio
max(w/a_w, a_w/w, h/a_h, a_h/h) is under ``anchor_t``; it proposes its own grid cell plus the
neighbour cells its centre is within ``offset`` of (0.5: the 2 nearest, "fine", lead head;
1.0: all 4, "coarse", aux head). The list keeps the official order (level, offset, anchor,
target) and its duplicates, because the dynamic k below counts them.

SimOTA (``simota``), per image, over all its candidates and ground truths:
cost = class cost + 3·(−log(IoU + 1e-8)); k_g = max(1, ⌊Σ top-q IoUs of g⌋); ground truth g
takes its k_g cheapest candidates (equal costs: the earlier candidate first); a candidate
taken twice goes to the cheapest ground truth.
The class cost is the official one: BCE of the score s_c = sqrt(σ(cls_c)·σ(obj)) (as a
logit z_c) against the one-hot class, i.e. Σ_c softplus(z_c) − z_class. The first term
depends on the candidate only, so the n_gt × candidates × nc tensor of the official code is
never built: memory is candidates × nc + n_gt × candidates. All images are padded into one
(B, G, C) problem; there is no Python loop over images or targets, the host waits on the
device only for a few sizes (padding, the largest k, whether a tie needs the slow path), and
nothing here records gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..boxes import box_iou, xywh2xyxy


@dataclass
class Candidates:
    """Flat candidate list (official order). ``gt`` indexes the target row that proposed it;
    ``row`` is the cell's row in its level's map viewed as (B·na·ny·nx, 5 + nc)."""

    level: torch.Tensor
    b: torch.Tensor
    a: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    gt: torch.Tensor
    row: torch.Tensor


@dataclass
class LevelMatch:
    """Positives of one level: image, anchor, cell row/col, the target row assigned, and the
    cell's row in the level's map viewed as (B·na·ny·nx, 5 + nc)."""

    b: torch.Tensor
    a: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    gt: torch.Tensor
    row: torch.Tensor

    def __len__(self) -> int:
        return int(self.b.shape[0])


def candidates(targets: torch.Tensor, anchors: torch.Tensor, grids: Sequence[tuple[int, int]],
               offset: float, anchor_t: float) -> Candidates:
    """Candidate cells for ``targets`` (n, 6: image, class, cx, cy, w, h normalized).

    ``anchors`` (nl, na, 2) in grid units; ``grids`` the (ny, nx) of each level.
    """
    dev = targets.device
    nl, na, nt = anchors.shape[0], anchors.shape[1], targets.shape[0]
    # neighbour offsets: self, x−, y−, x+, y+ (a neighbour cell is entered at −offset)
    off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=dev,
                       dtype=torch.float32) * offset
    gain = torch.tensor([[nx, ny] for ny, nx in grids], device=dev, dtype=torch.float32)
    # every (level, anchor, target) at once: centre and size in grid units
    gxy = (targets[None, :, 2:4].float() * gain[:, None]).unsqueeze(1).expand(nl, na, nt, 2)
    r = (targets[None, :, 4:6].float() * gain[:, None]).unsqueeze(1) / anchors[:, :, None]
    ok = torch.maximum(r, 1.0 / r).amax(-1) < anchor_t                  # (nl, na, nt)
    gxi = gain[:, None, None] - gxy
    near = torch.cat(((gxy % 1.0 < offset) & (gxy > 1.0),
                      (gxi % 1.0 < offset) & (gxi > 1.0)), -1)          # x−, y−, x+, y+
    use = torch.cat((torch.ones_like(near[..., :1]), near), -1) & ok[..., None]
    # (level, offset, anchor, target) order, as the official per-level loop produces
    lvl, o, a, t = use.permute(0, 3, 1, 2).nonzero(as_tuple=True)
    cell = (gxy[lvl, a, t] - off[o]).long()
    hi = gain.long()[lvl] - 1
    gi = torch.minimum(cell[:, 0], hi[:, 0]).clamp_(min=0)
    gj = torch.minimum(cell[:, 1], hi[:, 1]).clamp_(min=0)
    b = targets[t, 0].long()
    row = ((b * na + a) * (hi[:, 1] + 1) + gj) * (hi[:, 0] + 1) + gi
    return Candidates(lvl, b, a, gj, gi, t, row)


def _slots(img: torch.Tensor, batch: int) -> tuple[torch.Tensor, int]:
    """Each element's slot in its image's padded row (original order kept), and the row
    length (the largest count)."""
    order = torch.sort(img, stable=True).indices
    counts = torch.bincount(img, minlength=batch)
    slot = torch.empty_like(order)
    slot[order] = torch.arange(order.numel(), device=img.device) - (counts.cumsum(0) - counts)[
        img[order]]
    return slot, int(counts.max())


@torch.no_grad()
def class_cost_terms(cls_logits: torch.Tensor, obj_logit: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_c softplus(z_c), z) with z_c = logit(sqrt(σ(cls_c)·σ(obj))), so that the class
    cost of a candidate for class k is ``S − z[k]`` (BCE of z against one-hot k, summed)."""
    log_s = 0.5 * (F.logsigmoid(cls_logits.float()) + F.logsigmoid(obj_logit.float()))
    z = log_s - torch.log(-torch.expm1(log_s))          # log s − log(1 − s), stable near 1
    return F.softplus(z).sum(-1), z


@torch.no_grad()
def simota(preds: Sequence[torch.Tensor], targets: torch.Tensor, cand: Candidates,
           anchors: torch.Tensor, strides: Sequence[float], img_wh: tuple[float, float],
           topq: int) -> list[LevelMatch]:
    """Dynamic-k matching of ``cand`` to ``targets`` using the predictions ``preds``
    (per level (B, na, ny, nx, 5 + nc) raw); returns each level's positives, in the official
    order (image, then candidate order)."""
    nl, batch, dev = len(preds), preds[0].shape[0], targets.device
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    if cand.b.numel() == 0 or targets.shape[0] == 0:
        return [LevelMatch(empty, empty, empty, empty, empty, empty) for _ in range(nl)]
    # predictions at the candidates (candidates are level-major: one slice per level)
    counts = torch.bincount(cand.level, minlength=nl).tolist()
    p = torch.cat([preds[i].reshape(-1, preds[i].shape[-1]).index_select(0, r)
                   for i, r in enumerate(cand.row.split(counts))]).float()
    stride = p.new_tensor(list(strides))[cand.level, None]
    grid = torch.stack((cand.gi, cand.gj), 1).to(p.dtype)
    # xy = (2σ − 0.5 + cell)·stride, wh = (2σ)²·anchor·stride (the official decode)
    xy = (p[:, :2].sigmoid() * 2 - 0.5 + grid) * stride
    wh = (p[:, 2:4].sigmoid() * 2) ** 2 * anchors[cand.level, cand.a] * stride
    box = xywh2xyxy(torch.cat((xy, wh), 1))
    s_all, z_all = class_cost_terms(p[:, 5:], p[:, 4:5])
    nc = z_all.shape[1]

    # pad candidates and ground truths into (B, C, ·) / (B, G, ·) tables; a slot's last column
    # is its flat row (−1: padding); padding boxes never overlap, padding candidates cost +inf
    cb, t_img = cand.b, targets[:, 0].long()
    c_slot, C = _slots(cb, batch)
    g_slot, G = _slots(t_img, batch)
    ctab = box.new_tensor([0, 0, 0, 0, float("inf"), -1]).repeat(batch, C, 1)
    ctab[cb, c_slot] = torch.cat((box, s_all[:, None],
                                  torch.arange(cb.numel(), device=dev, dtype=box.dtype)[:, None]), 1)
    wh = targets.new_tensor([img_wh[0], img_wh[1], img_wh[0], img_wh[1]]).float()
    gtab = wh.new_tensor([-1e4, -1e4, 1 - 1e4, 1 - 1e4, 0, -1]).repeat(batch, G, 1)
    gtab[t_img, g_slot] = torch.cat((xywh2xyxy(targets[:, 2:6].float() * wh),
                                     targets[:, 1:2].float(),
                                     torch.arange(len(targets), device=dev,
                                                  dtype=wh.dtype)[:, None]), 1)
    pbox, ps = ctab[..., :4], ctab[..., 4]
    c_valid, c_row = ctab[..., 5] >= 0, ctab[..., 5].long().clamp_(min=0)
    gbox, gcls = gtab[..., :4], gtab[..., 4].long()
    g_valid, g_row = gtab[..., 5] >= 0, gtab[..., 5].long()

    iou = box_iou(gbox, pbox)                                      # (B, G, C)
    k = torch.topk(iou, min(topq, C), dim=2).values.sum(2).int().clamp_(min=1)   # (B, G)
    # cost = S − z_class + 3·(−log(IoU + 1e-8)), z_class read straight from the candidate rows
    cost = z_all.view(-1)[c_row[:, None, :] * nc + gcls[:, :, None]].neg_()
    cost.add_(ps[:, None, :]).add_(iou.add_(1e-8).log_().mul_(-3.0))
    del iou

    # each gt takes its k cheapest; among exactly equal costs (duplicate candidates) the
    # earlier candidate first, so the result does not depend on topk's order of ties
    kk = min(int(k.max()) + 1, C)
    vals, idx = torch.topk(cost, kk, dim=2, largest=False)              # ascending
    kc = k.clamp(max=kk)[:, :, None].long()
    take = torch.arange(kk, device=dev) < kc
    kth = vals.gather(2, kc - 1)
    straddle = ((kc < kk) & (vals.gather(2, kc.clamp(max=kk - 1)) == kth))[..., 0] & g_valid
    mb, mg, mpos = take.nonzero(as_tuple=True)
    mc = idx[mb, mg, mpos]
    if bool(straddle.any()):
        sb, sg = straddle.nonzero(as_tuple=True)
        rows, th = cost[sb, sg], kth[sb, sg]                            # (n, C), (n, 1)
        tie = rows == th
        need = kc[sb, sg] - (rows < th).sum(1, keepdim=True)
        sel = (rows < th) | (tie & (tie.cumsum(1) <= need))
        redo = straddle[mb, mg]
        xs, xc = sel.nonzero(as_tuple=True)
        mb = torch.cat((mb[~redo], sb[xs]))
        mg = torch.cat((mg[~redo], sg[xs]))
        mc = torch.cat((mc[~redo], xc))
    ok = g_valid[mb, mg] & c_valid[mb, mc]
    mb, mg, mc = mb[ok], mg[ok], mc[ok]

    # a candidate taken by several gts goes to the cheapest of all the image's gts
    col = mb * C + mc
    n_taken = torch.bincount(col, minlength=batch * C)
    owner = torch.zeros(batch * C, dtype=torch.long, device=dev)
    owner[col] = mg
    clash = (n_taken > 1).nonzero()[:, 0]
    if clash.numel():
        costs = cost[clash // C, :, clash % C].masked_fill(~g_valid[clash // C], float("inf"))
        owner[clash] = costs.argmin(1)
    fg = (n_taken > 0).nonzero()[:, 0]                                  # image-major order
    rows = c_row.view(-1)[fg]
    gt = g_row[fg // C, owner[fg]]
    # split by level, keeping the order within each level
    lvl = cand.level[rows]
    by_level = torch.sort(lvl, stable=True).indices
    counts = torch.bincount(lvl, minlength=nl).tolist()
    rows, gt = rows[by_level], gt[by_level]
    fields = [x.split(counts) for x in (cand.b[rows], cand.a[rows], cand.gj[rows], cand.gi[rows],
                                         gt, cand.row[rows])]
    return [LevelMatch(*f) for f in zip(*fields)]
