"""yolov7c.boxes: the one home of box geometry. Round trips as properties, NumPy and torch
giving the same numbers, and IoU/CIoU against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yolov7c.boxes import box_iou, ciou, xywh2xyxy, xywhn2xyxy, xyxy2xywh, xyxy2xywhn

coord = st.floats(0.0, 1.0, allow_nan=False, width=64)
size = st.floats(1e-3, 1.0, allow_nan=False, width=64)
boxes_n = st.lists(st.tuples(coord, coord, size, size), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(boxes_n, st.integers(1, 4000), st.integers(1, 4000), st.floats(0, 64), st.floats(0, 64))
def test_normalized_pixel_round_trip(rows, w, h, padw, padh):
    x = np.array(rows, np.float64)
    px = xywhn2xyxy(x, w, h, padw, padh)
    assert np.all(px[:, 2] >= px[:, 0]) and np.all(px[:, 3] >= px[:, 1])
    # the padding shifts corners only; undo it and come back
    px[:, 0::2] -= padw
    px[:, 1::2] -= padh
    np.testing.assert_allclose(xyxy2xywhn(px, w, h), x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(xyxy2xywh(xywh2xyxy(x)), x, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(boxes_n)
def test_numpy_and_torch_agree(rows):
    x = np.array(rows, np.float64)
    t = torch.tensor(rows, dtype=torch.float64)
    for f in (xywh2xyxy, xyxy2xywh):
        out = f(t)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
        np.testing.assert_array_equal(out.numpy(), f(x))
    np.testing.assert_array_equal(xywhn2xyxy(t, 640, 480, 3, 5).numpy(),
                                  xywhn2xyxy(x, 640, 480, 3, 5))


def test_conversions_by_hand():
    # centre (50, 40), size 20 × 10 in a 100 × 80 image
    n = np.array([[0.5, 0.5, 0.2, 0.125]])
    np.testing.assert_allclose(xywhn2xyxy(n, 100, 80), [[40, 35, 60, 45]])
    np.testing.assert_allclose(xywhn2xyxy(n, 100, 80, padw=7, padh=2), [[47, 37, 67, 47]])
    np.testing.assert_allclose(xyxy2xywh(np.array([[40.0, 35, 60, 45]])), [[50, 40, 20, 10]])
    assert xywhn2xyxy(np.zeros((0, 4)), 10, 10).shape == (0, 4)


def test_box_iou_by_hand_and_numpy():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    # overlap 1×1 over union 4 + 4 − 1; the same box; no overlap
    expected = [[1 / 7, 1.0, 0.0]]
    np.testing.assert_allclose(box_iou(a, b).numpy(), expected, rtol=1e-6)
    out = box_iou(a.numpy(), b.numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_ciou_by_hand():
    p = torch.tensor([[1.0, 1.0, 2.0, 2.0]], dtype=torch.float64)   # centre/size
    assert ciou(p, p).item() == pytest.approx(1.0, abs=1e-6)
    # same size, centres 1 apart on x: IoU = 1/3, enclosing box 3 × 2 → c² = 13, ρ² = 1,
    # equal aspect ratios → v = 0
    t = torch.tensor([[2.0, 1.0, 2.0, 2.0]], dtype=torch.float64)
    assert ciou(p, t).item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    # concentric, 2×2 vs 4×1: IoU = 2 / 6, ρ = 0, v = 4/π²·(atan 4 − atan 1)²
    t = torch.tensor([[1.0, 1.0, 4.0, 1.0]], dtype=torch.float64)
    v = 4 / math.pi ** 2 * (math.atan(4) - math.atan(1)) ** 2
    iou = 1 / 3
    assert ciou(p, t).item() == pytest.approx(iou - v * v / (v - iou + 1), abs=1e-5)
