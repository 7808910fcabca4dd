"""The YOLOv7 training loss: OTA-assigned lead head, lead-guided coarse aux head.

``criterion(model, hyp, img)`` reads everything model-specific (nc, levels, anchors,
strides, whether there is an aux head) from the model's Detect / IDetect / IAuxDetect head,
so any DSL model works. Per level l, over the positives of the assignment:

    box_l = mean(1 − CIoU(pred, target))          pred xy = 2σ − 0.5, wh = (2σ)²·anchor
    obj_l = BCE(obj logits of every cell, target)  target = detached CIoU ≥ 0 at positives
    cls_l = BCE(class logits, one-hot)             (only when nc > 1)

    box = g_box·Σ box_l,  obj = g_obj·Σ w_l·obj_l,  cls = g_cls·Σ cls_l
    loss = batch · (box + obj + cls),  parts = (box, obj, cls, box + obj + cls)

with level weights w = [4, 1, 0.4] (3 levels) or [4, 1, 0.25, 0.06, 0.02] (otherwise) and
the gains of ``hyp.scale_hyp``. With an aux head each term also gets 0.25 × the same term of
the aux outputs on the coarse (offset 1.0) assignment, which is computed from the LEAD
predictions. These are the official ``ComputeLossOTA`` / ``ComputeLossAuxOTA`` values.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backends.common import detect_module
from ..backends.torch.modules import Detect
from ..boxes import ciou
from ..errors import UserError
from .assign import LevelMatch, candidates, simota
from .hyp import load_hyp, scale_hyp

AUX_WEIGHT = 0.25
BALANCE_P5 = (4.0, 1.0, 0.4)
BALANCE_OTHER = (4.0, 1.0, 0.25, 0.06, 0.02)


def _bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor,
         gamma: float, reduction: str = "mean") -> torch.Tensor:
    """BCE with logits; focal-modulated (α = 0.25) when ``gamma`` > 0."""
    if gamma <= 0:
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight,
                                                  reduction=reduction)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight,
                                              reduction="none")
    p = logits.sigmoid()
    p_t = target * p + (1 - target) * (1 - p)
    alpha = target * 0.25 + (1 - target) * 0.75
    loss = loss * alpha * (1.0 - p_t) ** gamma
    return loss.mean() if reduction == "mean" else loss


class Criterion:
    """Callable loss for one model; see the module docstring for the formula."""

    def __init__(self, head: Detect, hyp: Mapping[str, Any]) -> None:
        self.nc, self.nl, self.na = int(head.nc), int(head.nl), int(head.na)
        self.aux = hasattr(head, "m2")
        self.anchors = head.anchors.detach().float().clone()            # (nl, na, 2) grid units
        self.strides = [float(s) for s in head.stride]
        self.hyp = dict(hyp)
        bal = BALANCE_P5 if self.nl == 3 else BALANCE_OTHER
        self.balance = list(bal[: self.nl]) + [bal[-1]] * max(0, self.nl - len(bal))
        # dynamic-k pool: 20 for aux-head models (ComputeLossAuxOTA), 10 otherwise
        self.topq = int(self.hyp.get("ota_topq", 20 if self.aux else 10))
        eps = float(self.hyp.get("label_smoothing", 0.0))
        self.cp, self.cn = 1.0 - 0.5 * eps, 0.5 * eps

    # ----- inputs ---------------------------------------------------------------------------
    def _split(self, outputs: Any) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], list):
            outputs = outputs[1]                       # eval-mode (decoded, raw): use the raw
        outs = list(outputs)
        if len(outs) not in (self.nl, 2 * self.nl) or any(
                o.dim() != 5 or o.shape[1] != self.na or o.shape[-1] != self.nc + 5
                for o in outs):
            shapes = [tuple(o.shape) for o in outs]
            raise UserError(f"outputs: expected {self.nl} (or {2 * self.nl} with the aux head) "
                            f"raw maps (B, {self.na}, H, W, {self.nc + 5}), got {shapes}; pass "
                            f"the model's train-mode output")
        lead, aux = outs[: self.nl], (outs[self.nl:] if len(outs) == 2 * self.nl else None)
        for i, a in enumerate(aux or []):
            if a.shape[:4] != lead[i].shape[:4]:
                raise UserError(f"outputs: aux map {i} is {tuple(a.shape)} but lead map {i} is "
                                f"{tuple(lead[i].shape)}; the aux head must see each level at "
                                f"the lead head's stride")
        return lead, aux

    def _check_targets(self, targets: torch.Tensor, batch: int) -> torch.Tensor:
        if targets.dim() != 2 or targets.shape[1] != 6:
            raise UserError(f"targets: expected (n, 6) rows of image, class, cx, cy, w, h; "
                            f"got shape {tuple(targets.shape)}")
        if targets.numel():
            img, cls = targets[:, 0], targets[:, 1]
            bad_img = (img < 0) | (img >= batch) | (img != img.floor())
            bad_cls = (cls < 0) | (cls >= self.nc) | (cls != cls.floor())
            if bool((bad_img | bad_cls).any()):      # one check; locate only on failure
                for name, bad, col, hi in (("image index", bad_img, img, batch),
                                           ("class", bad_cls, cls, self.nc)):
                    if bool(bad.any()):
                        r = int(bad.nonzero()[0, 0])
                        raise UserError(f"targets row {r}: {name} {float(col[r]):g} is not an "
                                        f"integer in [0, {hi}); fix the labels or the model's "
                                        f"nc")
        return targets.float()

    # ----- loss -----------------------------------------------------------------------------
    def _terms(self, maps: Sequence[tuple[torch.Tensor, LevelMatch, int, float]],
               targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(box, obj, cls) summed over output maps ``(pred, positives, level, weight)``.

        Per map: box = mean(1 − CIoU), cls = mean BCE over positives × classes, obj = mean
        BCE over all cells × level balance; the positives of all maps are handled in one
        batch (per-positive weights 1/n), which is the same sum with far fewer kernel calls.
        """
        pw_obj, pw_cls = float(self.hyp["obj_pw"]), float(self.hyp["cls_pw"])
        gamma = float(self.hyp.get("fl_gamma", 0.0))
        ref = maps[0][0]
        zero = ref.new_zeros(())
        obj = zero
        ps_l, lin_l, anc_l, gi_l, gj_l, gt_l = [], [], [], [], [], []
        counts, w_n, w_obj, gains = [], [], [], []             # per map, Python numbers
        offset = 0
        for pi, m, lvl, w in maps:
            bs, na, ny, nx, no = pi.shape
            numel = bs * na * ny * nx
            wobj = w * self.balance[lvl] / numel
            if gamma <= 0:
                # BCE(x, t) = softplus(x) − t·x + (pw − 1)·t·softplus(−x), t = 0 off the
                # positives: the dense part is Σ softplus(x); positives add their terms below
                obj = obj + F.softplus(pi[..., 4].contiguous()).sum() * wobj
            n = len(m)
            if n:
                ps_l.append(pi.reshape(-1, no).index_select(0, m.row))
                lin_l.append(m.row + offset)
                anc_l.append(m.a + lvl * na)
                gi_l.append(m.gi)
                gj_l.append(m.gj)
                gt_l.append(m.gt)
                counts.append(n)
                w_n.append(w / n)
                w_obj.append(wobj)
                gains.append((nx, ny))
            offset += numel
        if not ps_l:
            if gamma > 0:
                obj = sum(_bce(pi[..., 4], torch.zeros_like(pi[..., 4]), pi.new_tensor([pw_obj]),
                               gamma) * w * self.balance[lvl] for pi, _, lvl, w in maps)
            return zero, obj, zero
        total = sum(counts)

        def per_positive(values: list) -> torch.Tensor:       # one value per map, repeated
            v = torch.tensor(values, dtype=ref.dtype, device=ref.device)
            return v.repeat_interleave(cnt, dim=0, output_size=total)

        cnt = torch.tensor(counts, device=ref.device)
        ps, t = torch.cat(ps_l), targets[torch.cat(gt_l)]
        w, gain = per_positive(w_n), per_positive(gains)
        anchors = self.anchors.view(-1, 2)[torch.cat(anc_l)]
        cell = torch.stack((torch.cat(gi_l), torch.cat(gj_l)), 1).to(ps.dtype)
        pbox = torch.cat((ps[:, :2].sigmoid() * 2 - 0.5,
                          (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors), 1)
        tbox = torch.cat((t[:, 2:4] * gain - cell, t[:, 4:6] * gain), 1)   # relative to the cell
        iou = ciou(pbox, tbox)
        box = ((1.0 - iou) * w).sum()
        # objectness target = IoU (≥ 0); a cell assigned twice keeps the later one (official)
        lin = torch.cat(lin_l)
        pos = torch.arange(total, device=lin.device)
        uniq, inv = torch.unique(lin, return_inverse=True)
        keep = torch.full_like(uniq, -1).scatter_reduce(0, inv, pos, reduce="amax")[inv] == pos
        tq = iou.detach().clamp(0)[keep]
        if gamma <= 0:
            xp = ps[keep, 4]
            obj = obj + (((pw_obj - 1.0) * tq * F.softplus(-xp) - tq * xp)
                         * per_positive(w_obj)[keep]).sum()
        else:  # focal loss is not separable: dense targets per map
            obj, lin_k = zero, lin[keep]
            start = 0
            for pi, _, lvl, wm in maps:
                tobj = torch.zeros_like(pi[..., 4])
                sel = (lin_k >= start) & (lin_k < start + tobj.numel())
                tobj.view(-1)[lin_k[sel] - start] = tq[sel].to(tobj.dtype)
                obj = obj + _bce(pi[..., 4], tobj, pi.new_tensor([pw_obj]), gamma) * (
                    wm * self.balance[lvl])
                start += tobj.numel()
        cls = zero
        if self.nc > 1:
            tc = torch.full_like(ps[:, 5:], self.cn)
            tc[pos, t[:, 1].long()] = self.cp
            e = _bce(ps[:, 5:], tc, ps.new_tensor([pw_cls]), gamma, reduction="none")
            cls = (e.sum(1) * w).sum() / self.nc
        return box, obj, cls

    def _assign(self, lead: Sequence[torch.Tensor], targets: torch.Tensor, offset: float,
                img_wh: tuple[float, float]) -> list[LevelMatch]:
        anchors = self.anchors
        grids = [(int(p.shape[2]), int(p.shape[3])) for p in lead]
        cand = candidates(targets, anchors, grids, offset, float(self.hyp["anchor_t"]))
        return simota(lead, targets, cand, anchors, self.strides, img_wh, self.topq)

    def __call__(self, outputs: Any, targets: torch.Tensor,
                 images: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``loss`` (1,) with grad = batch × (box + obj + cls); ``parts`` (4,) detached."""
        lead, aux = self._split(outputs)
        lead = [p.float() for p in lead]
        batch, dev = lead[0].shape[0], lead[0].device
        if self.anchors.device != dev:
            self.anchors = self.anchors.to(dev)
        targets = self._check_targets(torch.as_tensor(targets).to(dev), batch)
        if images is not None:
            img_wh = (float(images.shape[-1]), float(images.shape[-2]))
        else:  # the input size the grids imply
            img_wh = (lead[0].shape[3] * self.strides[0], lead[0].shape[2] * self.strides[0])
        with torch.no_grad():
            fine = self._assign(lead, targets, 0.5, img_wh)
            coarse = self._assign(lead, targets, 1.0, img_wh) if aux is not None else None
        maps = [(lead[i], fine[i], i, 1.0) for i in range(self.nl)]
        if aux is not None:
            maps += [(aux[i].float(), coarse[i], i, AUX_WEIGHT) for i in range(self.nl)]
        box, obj, cls = self._terms(maps, targets)
        box = box * float(self.hyp["box"])
        obj = obj * float(self.hyp["obj"])
        cls = cls * float(self.hyp["cls"])
        total = box + obj + cls
        parts = torch.stack((box, obj, cls, total)).detach()
        return (total * batch).reshape(1), parts


def criterion(model: nn.Module, hyp: str | os.PathLike | Mapping[str, Any] = "p5",
              img: int = 640) -> Criterion:
    """The paper's training loss for ``model`` (official scale): ``hyp`` is a preset name
    (``p5``, ``p6``, ``tiny``), a YAML file or a dict of nominal gains, scaled here for the
    model's levels and classes and the training size ``img`` as the official trainer does."""
    head = detect_module(model)
    if not isinstance(img, int) or img <= 0:
        raise UserError(f"img = {img!r}: give the training image size in pixels (e.g. 640)")
    h = load_hyp(hyp)
    if not h.get("loss_ota", 1):
        raise UserError("hyp loss_ota = 0 asks for the YOLOv5 loss without OTA assignment, "
                        "which yolov7c does not implement; set loss_ota: 1")
    return Criterion(head, scale_hyp(h, head.nl, head.nc, img))
