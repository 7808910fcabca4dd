"""NMS parity against an independent plain greedy NMS written here in numpy (one box at a
time, the textbook loop), on crafted cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from yolov7c import eval as E
from yolov7c.errors import UserError

pytestmark = pytest.mark.one_thread


def ref_nms(pred: np.ndarray, conf: float, iou: float, multi_label: bool, agnostic: bool,
            max_det: int, classes=None) -> np.ndarray:
    """Textbook: candidates (box, score=obj*cls, class), sort by score (stable), keep a box if
    no kept box of the same class (any class if agnostic) has IoU > iou with it."""
    nc = pred.shape[1] - 5
    cands = []
    for row in pred:
        if row[4] <= conf:
            continue
        cx, cy, w, h = row[:4]
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        scores = [row[4]] if nc == 1 else [row[4] * row[5 + k] for k in range(nc)]
        ks = [k for k in range(nc) if scores[k] > conf] if multi_label else \
            [int(np.argmax(scores))] if max(scores) > conf else []
        for k in ks:
            if classes is None or k in classes:
                cands.append(box + [scores[k], k])
    cands.sort(key=lambda c: -c[4])          # Python's sort is stable

    def iou_of(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    kept = []
    for c in cands:
        if len(kept) >= max_det:
            break
        if all(not (agnostic or k[5] == c[5]) or iou_of(k, c) <= iou for k in kept):
            kept.append(c)
    return np.asarray(kept, np.float64).reshape(-1, 6)


def _check(pred, **kw):
    conf, iou = kw.get("conf", 0.25), kw.get("iou", 0.45)
    got = E.nms(torch.from_numpy(pred).float(), conf, iou, classes=kw.get("classes"),
                agnostic=kw.get("agnostic", False), multi_label=kw.get("multi_label", False),
                max_det=kw.get("max_det", 300))
    assert len(got) == len(pred)
    for g, p in zip(got, pred):
        want = ref_nms(p.astype(np.float32).astype(np.float64), conf, iou,
                       kw.get("multi_label", False), kw.get("agnostic", False),
                       kw.get("max_det", 300), kw.get("classes"))
        assert g.shape == (len(want), 6), (g.shape, want.shape)
        if len(want):
            err = np.abs(g.numpy() - want).max()
            print(f"{len(want)} boxes, max abs err {err:.2e}")
            assert err < 1e-3
    return got


def _random(n, nc, seed, spread=100.0, size=40.0, batch=1):
    rng = np.random.default_rng(seed)
    p = np.zeros((batch, n, 5 + nc))
    p[..., :2] = rng.uniform(0, spread, (batch, n, 2))
    p[..., 2:4] = rng.uniform(5, size, (batch, n, 2))
    p[..., 4:] = rng.uniform(0, 1, (batch, n, 1 + nc))
    return p


def test_heavy_overlap_many_classes():
    _check(_random(400, 5, 0, spread=30), conf=0.1, iou=0.45)


def test_eighty_classes_multi_label():
    _check(_random(150, 80, 9, spread=50), conf=0.2, iou=0.5, multi_label=True, max_det=100)


def test_multi_label_eval_settings():
    _check(_random(300, 4, 1), conf=0.001, iou=0.65, multi_label=True)


def test_agnostic_and_class_filter():
    p = _random(300, 6, 2, spread=40)
    _check(p, conf=0.05, agnostic=True)
    _check(p, conf=0.05, classes=[1, 4])


def test_ties_keep_the_earlier_box():
    p = np.zeros((1, 4, 7))
    p[0, :, :4] = [[50, 50, 20, 20], [51, 50, 20, 20], [52, 50, 20, 20], [90, 90, 10, 10]]
    p[0, :, 4] = 0.9
    p[0, :, 5:] = [1.0, 0.0]
    got = _check(p, conf=0.25, iou=0.45)[0]
    assert got[:, 0].tolist() == [40.0, 85.0]           # first of the tied cluster wins


def test_max_det_truncation_and_chunks(monkeypatch):
    import sys
    monkeypatch.setattr(sys.modules["yolov7c.eval.nms"], "CHUNK", 16)   # many chunks
    p = _random(500, 3, 4, spread=200, size=30)
    got = _check(p, conf=0.01, iou=0.5, multi_label=True, max_det=37)
    assert len(got[0]) == 37
    _check(p, conf=0.01, iou=0.3, max_det=1000)


def test_iou_threshold_chain():
    """A chain: box 0 suppresses 1; 1 (suppressed) would suppress 2; 2 must survive."""
    p = np.zeros((1, 3, 6))
    p[0, :, :4] = [[50, 50, 20, 20], [55, 50, 20, 20], [60, 50, 20, 20]]
    p[0, :, 4] = [0.9, 0.8, 0.7]
    p[0, :, 5] = 1.0
    got = _check(p, conf=0.25, iou=0.45)[0]
    assert len(got) == 2


@pytest.mark.parametrize("case", ["empty_input", "nothing_over_conf", "one_empty_image"])
def test_empty(case):
    if case == "empty_input":
        got = E.nms(torch.zeros((2, 0, 8)))
        assert [g.shape for g in got] == [(0, 6), (0, 6)]
    elif case == "nothing_over_conf":
        p = _random(50, 3, 5)
        p[..., 4] = 0.1
        assert all(len(g) == 0 for g in _check(p, conf=0.25))
    else:
        p = _random(80, 3, 6, batch=2)
        p[1, :, 4] = 0.0
        got = _check(p, conf=0.1)
        assert len(got[0]) > 0 and len(got[1]) == 0


def test_one_class_score_is_objectness():
    p = _random(60, 1, 7)
    got = _check(p, conf=0.3)[0]
    assert torch.all(got[:, 5] == 0)



def test_random_cases_match_reference():
    """Property check over many random sets (sizes, class counts, thresholds, modes)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None)
    @given(n=st.integers(0, 120), nc=st.integers(1, 6), seed=st.integers(0, 10 ** 6),
           iou=st.sampled_from([0.3, 0.45, 0.65]), multi=st.booleans(), agn=st.booleans(),
           max_det=st.integers(1, 50))
    def check(n, nc, seed, iou, multi, agn, max_det):
        _check(_random(n, nc, seed, spread=60), conf=0.05, iou=iou, multi_label=multi,
               agnostic=agn, max_det=max_det)
    check()


def test_only_the_best_max_nms_candidates_enter_nms(monkeypatch):
    """Over MAX_NMS candidates, only the best MAX_NMS by score reach greedy NMS: disjoint
    boxes, so the result is exactly those, best first."""
    import sys
    monkeypatch.setattr(sys.modules["yolov7c.eval.nms"], "MAX_NMS", 4)  # the module, not
    # the function of the same name that yolov7c.eval exports
    rng = np.random.default_rng(3)
    n = 10
    scores = rng.permutation(np.linspace(0.3, 0.9, n))
    pred = np.zeros((1, n, 6), np.float32)
    pred[0, :, 0] = np.arange(n) * 20 + 5      # disjoint 10 × 10 boxes
    pred[0, :, 1], pred[0, :, 2:4], pred[0, :, 4], pred[0, :, 5] = 5, 10, scores, 1.0
    got = E.nms(torch.from_numpy(pred), 0.25, 0.45)[0].numpy()
    best = np.argsort(-scores)[:4]
    np.testing.assert_allclose(got[:, 4], scores[best].astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(got[:, 0], pred[0, best, 0] - 5, rtol=1e-6)


def test_wrong_output_shape_is_a_user_error():
    with pytest.raises(UserError, match="decoded head output"):
        E.nms(torch.zeros(2, 5))
