"""A small, learnable detection dataset written to disk in both layouts (YOLO and COCO JSON).

Each image is a textured background (smooth gradient, stripes and noise) with a few filled
shapes of several sizes; the class is the shape (rectangle, ellipse, triangle, cross, ring,
diamond, ...). Shapes never overlap, and each box is the exact pixel extent of its mask, so
the labels are exact. Images are PNG (lossless) and everything is deterministic by ``seed``.
The folder appears complete or not at all (written beside it, then renamed).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ..boxes import xywhn2xyxy, xyxy2xywhn
from ..errors import UserError

log = logging.getLogger(__name__)

SHAPES = ("rectangle", "ellipse", "triangle", "cross", "ring", "diamond", "hbar", "vbar")


def _mask(kind: str, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Shape mask on a unit box: ``xx, yy`` are pixel centres mapped to [-1, 1]."""
    ax, ay = np.abs(xx), np.abs(yy)
    inside = (ax <= 1) & (ay <= 1)
    if kind == "rectangle":
        return inside
    if kind == "ellipse":
        return xx ** 2 + yy ** 2 <= 1
    if kind == "triangle":  # apex up, base at the bottom
        return inside & (ax <= (yy + 1) / 2)
    if kind == "cross":
        return inside & ((ax <= 0.3) | (ay <= 0.3))
    if kind == "ring":
        r2 = xx ** 2 + yy ** 2
        return (r2 <= 1) & (r2 >= 0.45)
    if kind == "diamond":
        return ax + ay <= 1
    if kind == "hbar":
        return inside & ((ay <= 0.35) | (ax >= 0.75))    # an H on its side
    return inside & ((ax <= 0.35) | (ay >= 0.75))        # vbar: an I


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    base = rng.uniform(0.25, 0.75, 3)
    f = rng.uniform(2, 12, 2)
    img = np.stack([base[c] + 0.12 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + c)
                    + 0.08 * (xx - yy) for c in range(3)], -1)
    img += rng.normal(0, 0.04, img.shape)
    return img


def _scene(rng: np.random.Generator, s: int, nc: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8) and its labels (n, 5) normalized, exact."""
    img = _background(rng, s)
    taken = np.zeros((s, s), bool)
    labels = []
    for _ in range(int(rng.integers(1, 6))):
        for _try in range(20):
            bw = int(rng.uniform(0.1, 0.45) * s)
            bh = int(np.clip(bw * rng.uniform(0.6, 1.6), 0.08 * s, 0.6 * s))
            x0, y0 = int(rng.integers(0, s - bw)), int(rng.integers(0, s - bh))
            if not taken[max(0, y0 - 2):y0 + bh + 2, max(0, x0 - 2):x0 + bw + 2].any():
                break
        else:
            continue
        c = int(rng.integers(nc))
        yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
        m = _mask(SHAPES[c], (xx + 0.5) / bw * 2 - 1, (yy + 0.5) / bh * 2 - 1)
        if not m.any():
            continue
        color = rng.uniform(0, 1, 3)
        while np.abs(color - img[y0:y0 + bh, x0:x0 + bw].mean((0, 1))).max() < 0.3:
            color = rng.uniform(0, 1, 3)
        patch = img[y0:y0 + bh, x0:x0 + bw]
        patch[m] = color
        taken[y0:y0 + bh, x0:x0 + bw] = True
        ys, xs = np.nonzero(m)  # exact extent of the drawn pixels
        x1, x2, y1, y2 = x0 + xs.min(), x0 + xs.max() + 1, y0 + ys.min(), y0 + ys.max() + 1
        labels.append([c, *xyxy2xywhn(np.array([x1, y1, x2, y2], np.float64), s, s)])
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return u8, np.asarray(labels, np.float64).reshape(-1, 5)


def _write_split(root: Path, split: str, n: int, s: int, nc: int, seed: int,
                 names: list[str]) -> None:
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    code = {"train": 0, "val": 1}[split]
    rngs = [np.random.default_rng(q) for q in np.random.SeedSequence([seed, code]).spawn(n)]
    images, anns = [], []
    for i, rng in enumerate(rngs):
        img, lab = _scene(rng, s, nc)
        name = f"{i:06d}.png"
        Image.fromarray(img).save(root / "images" / split / name)
        (root / "labels" / split / f"{i:06d}.txt").write_text("".join(
            f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in lab))
        images.append({"id": i + 1, "file_name": name, "height": s, "width": s})
        corners = xywhn2xyxy(lab[:, 1:5], s, s)
        for (c, cx, cy, w, h), (x1, y1, _, _) in zip(lab, corners):
            box = [round(x1, 3), round(y1, 3), round(w * s, 3), round(h * s, 3)]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    cats = [{"id": k + 1, "name": nm} for k, nm in enumerate(names)]
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


def make_synthetic(out: str | os.PathLike, *, train: int = 400, val: int = 100, img: int = 320,
                   nc: int = 3, seed: int = 0) -> Path:
    """Write the dataset to ``out`` (a new or empty folder); return its ``data.yaml``.

    Layout: ``images/{train,val}/*.png``, ``labels/{train,val}/*.txt`` (YOLO), and
    ``annotations/instances_{train,val}.json`` (COCO; category ids are class + 1; images are
    in ``images/<split>``).
    """
    if not 1 <= nc <= len(SHAPES):
        raise UserError(f"nc {nc}: the generator draws 1..{len(SHAPES)} shape classes", arg="nc")
    if img < 32:
        raise UserError(f"img {img}: synthetic images need at least 32 pixels", arg="img")
    if train < 0 or val < 1:
        raise UserError(f"train {train}, val {val}: need train >= 0 and val >= 1", arg="val")
    dest = Path(out)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"out {dest}: exists and is not empty; choose a new folder", arg="out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        names = list(SHAPES[:nc])
        for split, n in (("train", train), ("val", val)):
            log.info("synth: writing %d %s images at %dx%d", n, split, img, img)
            _write_split(tmp, split, n, img, nc, seed, names)
        (tmp / "data.yaml").write_text(yaml.safe_dump(
            {"path": ".", "train": "images/train", "val": "images/val", "nc": nc,
             "names": names}, sort_keys=False))
        os.chmod(tmp, 0o777 & ~_umask())
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest / "data.yaml"


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
