"""The batched loss against an independent, plain per-image reference written here from the
paper's description (loops, float64, the class cost materialised as n_gt × candidates × nc):
same positives in the same order, same loss and parts, on random heads, P5 and P6-with-aux,
nc = 1 and nc > 1, square and non-square inputs."""
from __future__ import annotations

import math

import pytest
import torch

from yolov7c.backends.torch import modules as M
from yolov7c.train import criterion
from yolov7c.train.assign import candidates, simota

NEIGHBOURS = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1)]   # self, x−, y−, x+, y+
ANCH3 = [[6, 8, 10, 18, 20, 14], [18, 37, 38, 28, 36, 73], [71, 55, 96, 121, 120, 100]]
ANCH4 = ANCH3 + [[110, 150, 90, 124, 126, 98]]


# ----- reference ---------------------------------------------------------------------------
def ref_candidates(targets, anchors, grids, off, anchor_t):
    """Loop over level, neighbour, anchor, target: (level, image, anchor, gj, gi, target)."""
    out = []
    rows = targets.tolist()
    for lvl, (ny, nx) in enumerate(grids):
        for o, (dx, dy) in enumerate(NEIGHBOURS):
            for a in range(anchors.shape[1]):
                aw, ah = anchors[lvl, a].tolist()
                for ti, r in enumerate(rows):
                    gx, gy, gw, gh = r[2] * nx, r[3] * ny, r[4] * nx, r[5] * ny
                    if max(gw / aw, aw / gw, gh / ah, ah / gh) >= anchor_t:
                        continue
                    near = [True, gx % 1 < off and gx > 1, gy % 1 < off and gy > 1,
                            (nx - gx) % 1 < off and nx - gx > 1,
                            (ny - gy) % 1 < off and ny - gy > 1]
                    if near[o]:
                        gi = min(max(int(gx - dx * off), 0), nx - 1)
                        gj = min(max(int(gy - dy * off), 0), ny - 1)
                        out.append((lvl, int(r[0]), a, gj, gi, ti))
    return out


def ref_decode(p, gi, gj, anchor, stride):
    """Pixel corners of one raw prediction (2σ − 0.5 + cell, (2σ)²·anchor)."""
    s = p.double().sigmoid()
    x, y = (2 * s[0] - 0.5 + gi) * stride, (2 * s[1] - 0.5 + gj) * stride
    w, h = (2 * s[2]) ** 2 * anchor[0] * stride, (2 * s[3]) ** 2 * anchor[1] * stride
    return [float(x - w / 2), float(y - h / 2), float(x + w / 2), float(y + h / 2)]


def ref_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def ref_simota(preds, targets, cands, anchors, strides, img_wh, q):
    """Per image: materialised cost, per-gt top-k loop, per-candidate conflict loop."""
    nl, batch = len(preds), preds[0].shape[0]
    nc = preds[0].shape[-1] - 5
    out = [[] for _ in range(nl)]
    W, H = img_wh
    for b in range(batch):
        gts = [i for i in range(targets.shape[0]) if int(targets[i, 0]) == b]
        cs = [c for c in cands if c[1] == b]
        if not gts or not cs:
            continue
        boxes, P = [], []
        for lvl, _, a, gj, gi, _ in cs:
            p = preds[lvl][b, a, gj, gi]
            P.append(p.double())
            boxes.append(ref_decode(p, gi, gj, anchors[lvl, a].tolist(), strides[lvl]))
        P = torch.stack(P)
        gbox = []
        for g in gts:
            cx, cy, w, h = (targets[g, 2:6].double() * torch.tensor([W, H, W, H])).tolist()
            gbox.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        iou = torch.tensor([[ref_iou(gb, pb) for pb in boxes] for gb in gbox])
        # the official class cost: BCE(logit(sqrt(σ(cls)·σ(obj))), one-hot), all classes
        y = (P[:, 5:].sigmoid() * P[:, 4:5].sigmoid()).sqrt()
        y = y[None].repeat(len(gts), 1, 1)                              # (G, C, nc)
        onehot = torch.nn.functional.one_hot(targets[gts, 1].long(), nc).double()
        onehot = onehot[:, None, :].expand_as(y)
        cls_cost = -(onehot * y.log() + (1 - onehot) * (1 - y).log()).sum(-1)
        cost = cls_cost + 3 * -torch.log(iou + 1e-8)
        chosen = {}
        for gi_, row in enumerate(cost.tolist()):
            k = max(1, int(sum(sorted(iou[gi_].tolist(), reverse=True)[:q])))
            for c in sorted(range(len(cs)), key=lambda c: (row[c], c))[:k]:
                chosen.setdefault(c, []).append(gi_)
        for c in sorted(chosen):
            owner = chosen[c][0] if len(chosen[c]) == 1 else int(cost[:, c].argmin())
            lvl, _, a, gj, gi, _ = cs[c]
            out[lvl].append((b, a, gj, gi, gts[owner]))
    return out


def ref_ciou(p, t):
    p1 = [p[0] - p[2] / 2, p[1] - p[3] / 2, p[0] + p[2] / 2, p[1] + p[3] / 2]
    t1 = [t[0] - t[2] / 2, t[1] - t[3] / 2, t[0] + t[2] / 2, t[1] + t[3] / 2]
    iou = ref_iou(p1, t1)
    cw = max(p1[2], t1[2]) - min(p1[0], t1[0])
    ch = max(p1[3], t1[3]) - min(p1[1], t1[1])
    rho2 = (p[0] - t[0]) ** 2 + (p[1] - t[1]) ** 2
    v = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(p[2] / p[3])) ** 2
    return iou - rho2 / (cw ** 2 + ch ** 2) - v * v / (v - iou + 1)


def bce(x, t):
    """BCE with logits, float64, elementwise."""
    return torch.nn.functional.softplus(x) - t * x


def ref_terms(pi, matches, targets, anchors_l, balance):
    """(box, obj·balance, cls) of one level from the reference's positives."""
    pi = pi.detach().double()
    ny, nx, nc = pi.shape[2], pi.shape[3], pi.shape[-1] - 5
    tobj = torch.zeros(pi.shape[:4], dtype=torch.float64)
    box, cls_terms = [], []
    for b, a, gj, gi, g in matches:
        s = pi[b, a, gj, gi].sigmoid()
        pb = [float(2 * s[0] - 0.5), float(2 * s[1] - 0.5),
              float((2 * s[2]) ** 2 * anchors_l[a][0]), float((2 * s[3]) ** 2 * anchors_l[a][1])]
        t = targets[g].double().tolist()
        tb = [t[2] * nx - gi, t[3] * ny - gj, t[4] * nx, t[5] * ny]
        c = ref_ciou(pb, tb)
        box.append(1 - c)
        tobj[b, a, gj, gi] = max(c, 0.0)                 # a later positive overwrites
        onehot = torch.zeros(nc, dtype=torch.float64)
        onehot[int(t[1])] = 1
        cls_terms.append(bce(pi[b, a, gj, gi, 5:], onehot))
    lbox = sum(box) / len(box) if box else 0.0
    lcls = float(torch.cat(cls_terms).mean()) if cls_terms and nc > 1 else 0.0
    lobj = float(bce(pi[..., 4], tobj).mean()) * balance
    return lbox, lobj, lcls


def ref_loss(outs, targets, head, hyp, img_wh):
    nl, aux = head.nl, len(outs) == 2 * head.nl
    anchors, strides = head.anchors, [float(s) for s in head.stride]
    lead = outs[:nl]
    grids = [(o.shape[2], o.shape[3]) for o in lead]
    q = 20 if aux else 10
    fine = ref_simota(lead, targets, ref_candidates(targets, anchors, grids, 0.5, 4.0),
                      anchors, strides, img_wh, q)
    coarse = ref_simota(lead, targets, ref_candidates(targets, anchors, grids, 1.0, 4.0),
                        anchors, strides, img_wh, q) if aux else None
    bal = [4.0, 1.0, 0.4] if nl == 3 else [4.0, 1.0, 0.25, 0.06, 0.02]
    box = obj = cls = 0.0
    for i in range(nl):
        b, o, c = ref_terms(lead[i], fine[i], targets, anchors[i].tolist(), bal[i])
        box, obj, cls = box + b, obj + o, cls + c
        if aux:
            b, o, c = ref_terms(outs[nl + i], coarse[i], targets, anchors[i].tolist(), bal[i])
            box, obj, cls = box + 0.25 * b, obj + 0.25 * o, cls + 0.25 * c
    parts = [box * hyp["box"], obj * hyp["obj"], cls * hyp["cls"]]
    return fine, coarse, parts + [sum(parts)]


# ----- cases ---------------------------------------------------------------------------------
def make_case(seed, nc, aux, img_hw=(128, 128), per_image=(5, 7), batch=2):
    g = torch.Generator().manual_seed(seed)
    anchors = ANCH4 if aux else ANCH3
    strides = [8, 16, 32, 64][: len(anchors)]
    cls = M.IAuxDetect if aux else M.Detect
    head = cls(nc, anchors, [8] * (len(anchors) * (2 if aux else 1)), strides)
    H, W = img_hw
    outs = [torch.randn(batch, 3, H // s, W // s, nc + 5, generator=g) * 1.5
            for s in strides * (2 if aux else 1)]
    rows = []
    for b in range(batch):
        for _ in range(per_image[b % len(per_image)]):
            wh = torch.rand(2, generator=g) * 0.45 + 0.03
            xy = torch.rand(2, generator=g) * (1 - wh) + wh / 2
            c = int(torch.randint(nc, (1,), generator=g))
            rows.append([b, c, *xy.tolist(), *wh.tolist()])
    return head, outs, torch.tensor(rows, dtype=torch.float32)


def matches_as_lists(ms):
    return [list(zip(m.b.tolist(), m.a.tolist(), m.gj.tolist(), m.gi.tolist(), m.gt.tolist()))
            for m in ms]


CASES = [  # seed, nc, aux, (H, W), targets per image
    (0, 3, False, (128, 128), (5, 7)),
    (1, 1, False, (128, 128), (6, 0)),      # nc = 1, second image without targets
    (2, 4, True, (128, 128), (5, 6)),       # P6 with aux head
    (3, 3, False, (96, 160), (6, 4)),       # non-square input
    (4, 2, True, (128, 192), (12, 9)),      # crowded, non-square, aux
]


@pytest.mark.parametrize("seed,nc,aux,hw,per", CASES)
def test_batched_loss_equals_plain_reference(seed, nc, aux, hw, per):
    head, outs, targets = make_case(seed, nc, aux, hw, per)
    crit = criterion(head, "p6" if aux else "p5", 640)
    img_wh = (float(hw[1]), float(hw[0]))
    lead = outs[: head.nl]
    grids = [(o.shape[2], o.shape[3]) for o in lead]
    want_fine, want_coarse, want_parts = ref_loss(outs, targets, head, crit.hyp, img_wh)
    for off, want in ((0.5, want_fine), (1.0, want_coarse)):
        if want is None:
            continue
        cand = candidates(targets, head.anchors, grids, off, 4.0)
        got = simota(lead, targets, cand, head.anchors, crit.strides, img_wh, crit.topq)
        assert matches_as_lists(got) == want, f"offset {off}: positives differ"
    assert sum(len(w) for w in want_fine) > 0
    images = torch.zeros(2, 3, *hw)
    loss, parts = crit(outs, targets, images)
    torch.testing.assert_close(parts.double(), torch.tensor(want_parts, dtype=torch.float64),
                               rtol=2e-5, atol=1e-7)
    assert loss.item() == pytest.approx(2 * want_parts[3], rel=2e-5)
    if nc == 1:
        assert parts[2].item() == 0.0


def test_class_cost_without_the_big_tensor_equals_materialised():
    """Σ_c softplus(z_c) − z_k is the summed BCE of z against one-hot k, for every k."""
    from yolov7c.train.assign import class_cost_terms
    g = torch.Generator().manual_seed(7)
    cls = torch.randn(50, 6, generator=g, dtype=torch.float64) * 4
    obj = torch.randn(50, 1, generator=g, dtype=torch.float64) * 4
    s, z = class_cost_terms(cls, obj)
    y = (cls.sigmoid() * obj.sigmoid()).sqrt()
    for k in range(6):
        t = torch.zeros(6, dtype=torch.float64)
        t[k] = 1
        want = -(t * y.log() + (1 - t) * (1 - y).log()).sum(-1)
        torch.testing.assert_close((s - z[:, k].double()).double(), want, rtol=1e-5, atol=1e-6)
