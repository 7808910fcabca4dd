"""Detections drawn on a copy of the image (PIL), and the YOLO .txt form of them."""
from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..boxes import xyxy2xywhn


def color(k: int) -> tuple[int, int, int]:
    """A stable, well-spread colour per class (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: np.ndarray, dets: np.ndarray, names: Sequence[str]) -> Image.Image:
    """``dets`` (n, 6) xyxy, score, class in image pixels → an annotated RGB copy."""
    im = Image.fromarray(image).convert("RGB")
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    lw = max(1, round(sum(im.size) / 600))
    for x1, y1, x2, y2, score, c in dets.tolist():
        k = int(c)
        col = color(k)
        d.rectangle((x1, y1, x2, y2), outline=col, width=lw)
        text = f"{names[k] if k < len(names) else k} {score:.2f}"
        tb = d.textbbox((x1, y1), text, font=font)
        th = tb[3] - tb[1] + 2
        top = y1 - th if y1 - th >= 0 else y1
        d.rectangle((x1, top, x1 + tb[2] - tb[0] + 4, top + th), fill=col)
        d.text((x1 + 2, top), text, fill=(255, 255, 255), font=font)
    return im


def yolo_lines(dets: np.ndarray, shape: tuple[int, int], conf: bool = True) -> str:
    """``class cx cy w h [score]`` per detection, normalized by the image (H, W)."""
    h, w = shape
    lines = []
    xywhn = xyxy2xywhn(np.asarray(dets[:, :4], np.float64), w, h).tolist()
    for vals, score, c in zip(xywhn, dets[:, 4].tolist(), dets[:, 5].tolist()):
        lines.append(f"{int(c)} " + " ".join(f"{v:.6f}" for v in vals)
                     + (f" {score:.5f}" if conf else ""))
    return "".join(line + "\n" for line in lines)
