"""Training augmentation of the YOLOv7 recipe in numpy + PIL: mosaic (4 images, or 9 with
probability 0.2), MixUp with a Beta(8, 8) ratio, random perspective (rotation, scale, shear,
translation, perspective), HSV jitter, flips, and letterbox for the non-mosaic path.

Images are uint8 (H, W, 3) RGB; labels inside this module are pixel ``[cls, x1, y1, x2, y2]``
(float32, (n, 5)). Every random draw comes from the ``numpy.random.Generator`` passed in, so
one (seed, epoch, index) gives the same sample in any worker process.
Left out on purpose: paste-in / copy-paste (they need polygon masks; our labels are boxes).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from ..boxes import xywhn2xyxy, xyxy2xywhn

from .letterbox import letterbox

FILL = 114
MOSAIC9_P = 0.2
MIXUP_BETA = 8.0

Loader = Callable[[int], tuple[np.ndarray, np.ndarray]]  # index -> (image, pixel xyxy labels)


def xywhn_to_xyxy(labels: np.ndarray, w: float, h: float, padw: float = 0.0,
                  padh: float = 0.0) -> np.ndarray:
    """(n, 5) cls cx cy w h normalized → (n, 5) cls x1 y1 x2 y2 in pixels (+ padding)."""
    out = labels.astype(np.float32).copy()
    out[:, 1:5] = xywhn2xyxy(labels[:, 1:5], w, h, padw, padh)
    return out


def xyxy_to_xywhn(labels: np.ndarray, w: float, h: float) -> np.ndarray:
    """Inverse of ``xywhn_to_xyxy`` (no padding)."""
    out = labels.astype(np.float32).copy()
    out[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w, h)
    return out


def resize_long_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` (aspect kept), bilinear."""
    h, w = img.shape[:2]
    r = size / max(h, w)
    if r == 1:
        return img
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    return np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))


def mosaic(load: Loader, indices: list[int], size: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """4-image mosaic on a 2s × 2s canvas around a random centre; returns the canvas (to be
    cut to s × s by ``random_perspective`` with ``border=-s/2``) and pixel labels."""
    s = size
    canvas = np.full((2 * s, 2 * s, 3), FILL, np.uint8)
    yc, xc = (int(rng.uniform(s / 2, 3 * s / 2)) for _ in range(2))
    out = []
    for k, idx in enumerate(indices[:4]):
        img, lab = load(idx)
        h, w = img.shape[:2]
        if k == 0:    # top left: the image's bottom-right corner sits at the centre
            a = (max(xc - w, 0), max(yc - h, 0), xc, yc)
        elif k == 1:  # top right
            a = (xc, max(yc - h, 0), min(xc + w, 2 * s), yc)
        elif k == 2:  # bottom left
            a = (max(xc - w, 0), yc, xc, min(2 * s, yc + h))
        else:         # bottom right
            a = (xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h))
        x1a, y1a, x2a, y2a = a
        cw, ch = x2a - x1a, y2a - y1a
        # source window of the same size, anchored at the corner that touches the centre
        x1b = w - cw if k in (0, 2) else 0
        y1b = h - ch if k in (0, 1) else 0
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + ch, x1b:x1b + cw]
        lab = lab.copy()
        lab[:, [1, 3]] += x1a - x1b
        lab[:, [2, 4]] += y1a - y1b
        out.append(lab)
    labels = np.concatenate(out, 0) if out else np.zeros((0, 5), np.float32)
    np.clip(labels[:, 1:], 0, 2 * s, out=labels[:, 1:])
    return canvas, labels


def mosaic9(load: Loader, indices: list[int], size: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """9-image mosaic: a centre image with eight around it (clockwise from the top) on a
    3s × 3s canvas, then a random 2s × 2s window of it; same output contract as ``mosaic``."""
    s = size
    big = np.full((3 * s, 3 * s, 3), FILL, np.uint8)
    out = []
    hp = wp = -1
    h0 = w0 = 0
    for k, idx in enumerate(indices[:9]):
        img, lab = load(idx)
        h, w = img.shape[:2]
        if k == 0:
            h0, w0 = h, w
            c = (s, s, s + w, s + h)
        elif k == 1:  # top
            c = (s, s - h, s + w, s)
        elif k == 2:  # top right
            c = (s + wp, s - h, s + wp + w, s)
        elif k == 3:  # right
            c = (s + w0, s, s + w0 + w, s + h)
        elif k == 4:  # bottom right
            c = (s + w0, s + hp, s + w0 + w, s + hp + h)
        elif k == 5:  # bottom
            c = (s + w0 - w, s + h0, s + w0, s + h0 + h)
        elif k == 6:  # bottom left
            c = (s + w0 - wp - w, s + h0, s + w0 - wp, s + h0 + h)
        elif k == 7:  # left
            c = (s - w, s + h0 - h, s, s + h0)
        else:         # top left
            c = (s - w, s + h0 - hp - h, s, s + h0 - hp)
        x1, y1 = max(c[0], 0), max(c[1], 0)
        x2, y2 = min(c[2], 3 * s), min(c[3], 3 * s)
        if x2 > x1 and y2 > y1:
            big[y1:y2, x1:x2] = img[y1 - c[1]:y2 - c[1], x1 - c[0]:x2 - c[0]]
        lab = lab.copy()
        lab[:, [1, 3]] += c[0]
        lab[:, [2, 4]] += c[1]
        out.append(lab)
        hp, wp = h, w
    yc, xc = (int(rng.uniform(0, s)) for _ in range(2))
    canvas = big[yc:yc + 2 * s, xc:xc + 2 * s].copy()
    labels = np.concatenate(out, 0) if out else np.zeros((0, 5), np.float32)
    labels[:, [1, 3]] -= xc
    labels[:, [2, 4]] -= yc
    np.clip(labels[:, 1:], 0, 2 * s, out=labels[:, 1:])
    return canvas, labels


def perspective_matrix(h: int, w: int, out_h: int, out_w: int, hyp: dict,
                       rng: np.random.Generator) -> np.ndarray:
    """3 × 3 matrix mapping input pixels to output pixels:
    M = T · S · R · P · C (centre, perspective, rotate+scale, shear, translate)."""
    C = np.eye(3)
    C[0, 2], C[1, 2] = -w / 2, -h / 2  # move the image centre to the origin
    P = np.eye(3)
    p = hyp.get("perspective", 0.0)
    P[2, 0], P[2, 1] = rng.uniform(-p, p), rng.uniform(-p, p)
    R = np.eye(3)
    deg = hyp.get("degrees", 0.0)
    sc = hyp.get("scale", 0.0)
    a = np.deg2rad(rng.uniform(-deg, deg))
    s = rng.uniform(1 - sc, 1 + sc)
    R[:2, :2] = s * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    S = np.eye(3)
    sh = hyp.get("shear", 0.0)
    S[0, 1] = np.tan(np.deg2rad(rng.uniform(-sh, sh)))
    S[1, 0] = np.tan(np.deg2rad(rng.uniform(-sh, sh)))
    T = np.eye(3)
    t = hyp.get("translate", 0.0)
    T[0, 2] = rng.uniform(0.5 - t, 0.5 + t) * out_w
    T[1, 2] = rng.uniform(0.5 - t, 0.5 + t) * out_h
    return T @ S @ R @ P @ C


def warp(img: np.ndarray, M: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Warp with PIL: it samples the input at M⁻¹ · (output pixel)."""
    inv = np.linalg.inv(M)
    inv = inv / inv[2, 2]
    pil = Image.fromarray(img)
    if np.allclose(M[2, :2], 0):
        return np.asarray(pil.transform((out_w, out_h), Image.AFFINE, tuple(inv[:2].ravel()),
                                        Image.BILINEAR, fillcolor=(FILL,) * 3))
    return np.asarray(pil.transform((out_w, out_h), Image.PERSPECTIVE, tuple(inv.ravel()[:8]),
                                    Image.BILINEAR, fillcolor=(FILL,) * 3))


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2.0,
                   ar_thr: float = 20.0, area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Keep boxes (x1 y1 x2 y2 rows) that stay > 2 px wide/high, keep > 10 % of their
    (scaled) area and have aspect ratio < 20 after the warp."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return ((w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr)
            & (ar < ar_thr))


def random_perspective(img: np.ndarray, labels: np.ndarray, hyp: dict,
                       rng: np.random.Generator, border: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``img`` (output size = input size + 2 × border) and its pixel labels; boxes are
    the bounding boxes of the warped corners, clipped, and filtered by ``box_candidates``."""
    h, w = img.shape[:2]
    out_h, out_w = h + 2 * border, w + 2 * border
    M = perspective_matrix(h, w, out_h, out_w, hyp, rng)
    if border != 0 or not np.allclose(M, np.eye(3)):
        img = warp(img, M, out_w, out_h)
    n = len(labels)
    if n:
        corners = np.ones((n * 4, 3))
        corners[:, :2] = labels[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)
        xy = corners @ M.T
        xy = xy[:, :2] / xy[:, 2:3]
        xy = xy.reshape(n, 8)
        x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
        new = np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), 1)
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_w)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_h)
        keep = box_candidates(labels[:, 1:5] * _scale_of(M), new)
        labels = np.concatenate((labels[keep, :1], new[keep]), 1).astype(np.float32)
    return img, labels


def _scale_of(M: np.ndarray) -> float:
    """Isotropic scale of the warp (for the area filter: compare with the scaled box)."""
    return float(np.sqrt(abs(np.linalg.det(M[:2, :2]))))


def augment_hsv(img: np.ndarray, hgain: float, sgain: float, vgain: float,
                rng: np.random.Generator) -> np.ndarray:
    """Random gains on hue (rotated), saturation and value via lookup tables in PIL's HSV."""
    if not (hgain or sgain or vgain):
        return img
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 256).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = np.asarray(Image.fromarray(img).convert("HSV")).copy()
    hsv[..., 0] = lut_h[hsv[..., 0]]
    hsv[..., 1] = lut_s[hsv[..., 1]]
    hsv[..., 2] = lut_v[hsv[..., 2]]
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def mixup(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blend two equally sized samples with r ~ Beta(8, 8); keep both label sets."""
    r = rng.beta(MIXUP_BETA, MIXUP_BETA)
    img = (a[0].astype(np.float32) * r + b[0].astype(np.float32) * (1 - r)).round()
    return img.clip(0, 255).astype(np.uint8), np.concatenate((a[1], b[1]), 0)


def flips(img: np.ndarray, labels: np.ndarray, flipud: float, fliplr: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vertical / horizontal flips of an image and its pixel xyxy labels."""
    h, w = img.shape[:2]
    labels = labels.copy()
    if rng.random() < flipud:
        img = img[::-1]
        labels[:, [2, 4]] = h - labels[:, [4, 2]]
    if rng.random() < fliplr:
        img = img[:, ::-1]
        labels[:, [1, 3]] = w - labels[:, [3, 1]]
    return np.ascontiguousarray(img), labels


def letterbox_labels(img: np.ndarray, labels: np.ndarray, size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``letterbox`` to ``size`` × ``size`` (the shared one); pixel labels follow."""
    out, r, (padw, padh) = letterbox(img, size, auto=False)
    labels = labels.copy()
    labels[:, 1:] *= r
    labels[:, [1, 3]] += padw
    labels[:, [2, 4]] += padh
    return out, labels
