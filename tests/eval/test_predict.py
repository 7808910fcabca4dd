"""eval.predict: the one predict step of val and detect (predictor → NMS → original pixels)."""
from __future__ import annotations

import numpy as np
import torch

from yolov7c.eval.predict import Stopwatch, predict


def _decoded(rows: list[list[float]]) -> torch.Tensor:
    """(1, N, 5 + 1) decoded output: cx, cy, w, h (letterboxed pixels), obj, class prob."""
    return torch.tensor([rows], dtype=torch.float32)


def test_boxes_back_in_original_pixels_and_padding_boxes_dropped():
    # a 100 × 50 image letterboxed to 64 × 64: ratio 0.64, 16 px padding at top and bottom
    ratio, pad, shape = 0.64, (0.0, 16.0), (50, 100)
    out = _decoded([[32, 32, 16, 16, 0.9, 1.0],    # in the picture
                    [32, 6, 20, 8, 0.8, 1.0],      # wholly inside the top padding
                    [60, 58, 6, 6, 0.7, 1.0]])     # wholly inside the bottom padding
    watch = Stopwatch()
    raw, (d,) = predict(lambda x: out, torch.zeros(1, 3, 64, 64), [ratio], [pad], [shape],
                        conf=0.25, iou=0.45, max_det=300, watch=watch)
    assert raw is out
    # only the first survives; x1 = (32 − 8) / 0.64, y1 = (32 − 8 − 16) / 0.64
    assert d.shape == (1, 6) and d.dtype == np.float32
    np.testing.assert_allclose(d[0, :4], [37.5, 12.5, 62.5, 37.5], rtol=1e-5)
    np.testing.assert_allclose(d[0, 4:], [0.9, 0.0], rtol=1e-6)
    assert set(watch.seconds) == {"preprocess", "inference", "nms"}
    assert watch.seconds["inference"] > 0 and watch.seconds["nms"] > 0
    ms = watch.per_image_ms(2)
    assert ms["nms"] == 1000 * watch.seconds["nms"] / 2 and watch.total >= watch.seconds["nms"]
