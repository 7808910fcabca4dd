"""Letterbox: resize keeping the aspect ratio, pad with grey to the target shape, and map boxes
back. Written once and shared by every backend, so the same image gives the same input (and
the same boxes) everywhere."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 → ``hw`` with bilinear filtering (PIL; no OpenCV dependency)."""
    h, w = hw
    if (img.shape[0], img.shape[1]) == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def letterbox(img: np.ndarray, new_shape: int | tuple[int, int], *, stride: int = 32,
              auto: bool = False, scaleup: bool = True,
              color: int = 114) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Fit ``img`` (H, W, 3) into ``new_shape`` (H, W) keeping its aspect ratio; pad with
    ``color``. ``auto`` pads only to the next multiple of ``stride`` (minimum rectangle);
    ``scaleup=False`` never enlarges (evaluation: the image was sized beforehand).

    Returns ``(image, ratio, (pad_w, pad_h))``: original pixel ``p`` lands at
    ``p * ratio + pad``, which :func:`scale_boxes` inverts. Pads are the whole pixels
    added on the left and top (the remainder goes right and bottom).
    """
    shape = (new_shape, new_shape) if isinstance(new_shape, int) else tuple(new_shape)
    h0, w0 = img.shape[:2]
    r = min(shape[0] / h0, shape[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    nh, nw = max(1, int(round(h0 * r))), max(1, int(round(w0 * r)))
    dh, dw = shape[0] - nh, shape[1] - nw
    if auto:  # minimum rectangle: pad only up to the stride
        dh, dw = dh % stride, dw % stride
    top, left = dh // 2, dw // 2
    out = np.full((nh + dh, nw + dw, 3), color, dtype=np.uint8)
    out[top:top + nh, left:left + nw] = resize(img, (nh, nw))
    return out, r, (float(left), float(top))


def scale_boxes(boxes: torch.Tensor | np.ndarray, ratio: float, pad: tuple[float, float],
                shape: tuple[int, int]):
    """xyxy boxes in letterboxed pixels → original image pixels, clipped to ``shape`` (H, W).

    Inverse of :func:`letterbox`: ``p = (p' - pad) / ratio``. Works in place on a copy.
    """
    b = boxes.clone() if isinstance(boxes, torch.Tensor) else np.array(boxes, dtype=np.float32)
    b[:, [0, 2]] = (b[:, [0, 2]] - pad[0]) / ratio
    b[:, [1, 3]] = (b[:, [1, 3]] - pad[1]) / ratio
    h, w = shape
    if isinstance(b, torch.Tensor):
        b[:, [0, 2]] = b[:, [0, 2]].clamp(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clamp(0, h)
    else:
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    return b
