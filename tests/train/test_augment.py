"""Augmentation on synthetic arrays: labels follow the pixels (mosaic 4/9, perspective,
flips, letterbox, MixUp), identity settings change nothing, and every sample is a function
of (seed, epoch, index), in any number of worker processes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from yolov7c.data import augment as A
from yolov7c.data.dataset import load_dataset
from yolov7c.data.synth import make_synthetic
from yolov7c.train.hyp import load_hyp
from yolov7c.train.loader import TrainDataset, make_loader

ZERO = {"degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0, "perspective": 0.0}
COLORS = [(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30), (230, 30, 230),
          (30, 230, 230), (250, 140, 0), (140, 0, 250), (0, 140, 90)]


def scene(k: int, h: int = 60, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with one solid box of colour k; labels (1, 5) pixel xyxy, class k."""
    img = np.full((h, w, 3), 90, np.uint8)
    x1, y1, x2, y2 = 10 + k, 12, 50 + k, 44
    img[y1:y2, x1:x2] = COLORS[k]
    return img, np.array([[k, x1, y1, x2, y2]], np.float32)


def assert_boxes_hold_their_colour(img: np.ndarray, labels: np.ndarray) -> None:
    assert len(labels) > 0
    for c, x1, y1, x2, y2 in labels:
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        assert np.abs(img[cy, cx].astype(int) - COLORS[int(c)]).max() <= 12, (c, x1, y1, x2, y2)
        # just outside a fully visible box edge the colour is gone
        if x2 + 2 < img.shape[1] and x2 - x1 > 6:
            assert np.abs(img[cy, int(x2) + 2].astype(int) - COLORS[int(c)]).max() > 40


def test_identity_perspective_changes_nothing() -> None:
    img, lab = scene(0)
    out, lab2 = A.random_perspective(img, lab, ZERO, np.random.default_rng(0))
    assert np.array_equal(out, img) and np.allclose(lab2, lab)


@pytest.mark.parametrize("nine", [False, True])
def test_mosaic_labels_follow_pixels(nine: bool) -> None:
    rng = np.random.default_rng(3)
    n = 9 if nine else 4
    load = lambda i: scene(i)  # noqa: E731
    canvas, labels = (A.mosaic9 if nine else A.mosaic)(load, list(range(n)), 64, rng)
    assert canvas.shape == (128, 128, 3)
    labels = labels[(labels[:, 3] - labels[:, 1] > 4) & (labels[:, 4] - labels[:, 2] > 4)]
    assert_boxes_hold_their_colour(canvas, labels)
    hyp = {**ZERO, "translate": 0.1, "scale": 0.3}
    out, lab = A.random_perspective(canvas, labels, hyp, rng, border=-32)
    assert out.shape == (64, 64, 3)
    assert_boxes_hold_their_colour(out, lab)


def test_rotation_keeps_box_centres() -> None:
    img, lab = scene(2, 100, 100)
    out, lab2 = A.random_perspective(img, lab, {**ZERO, "degrees": 30.0},
                                     np.random.default_rng(1))
    assert_boxes_hold_their_colour(out, lab2)
    # an enclosing box of a rotated box is larger
    assert (lab2[0, 3] - lab2[0, 1]) >= (lab[0, 3] - lab[0, 1]) - 1


def test_flips_and_letterbox() -> None:
    img, lab = scene(1)
    out, lab2 = A.flips(img, lab, 0.0, 1.0, np.random.default_rng(0))
    assert np.array_equal(out, img[:, ::-1])
    assert np.allclose(lab2[0, 1:], [80 - 50 - 1, 12, 80 - 10 - 1, 44])
    out, lab3 = A.flips(img, lab, 1.0, 0.0, np.random.default_rng(0))
    assert np.array_equal(out, img[::-1]) and np.allclose(lab3[0, [2, 4]], [60 - 44, 60 - 12])
    box, lb = A.letterbox_labels(img, lab, 64)  # 80 × 60 → 64 × 48, 8 px bands
    assert box.shape == (64, 64, 3) and (box[:8] == 114).all()
    assert np.allclose(lb[0, 1:], [11 * 0.8, 12 * 0.8 + 8, 51 * 0.8, 44 * 0.8 + 8])
    assert_boxes_hold_their_colour(box, lb)


def test_mixup_and_hsv() -> None:
    a, la = scene(0, 64, 64)
    b, lb = scene(3, 64, 64)
    img, lab = A.mixup((a, la), (b, lb), np.random.default_rng(0))
    assert np.array_equal(lab, np.concatenate((la, lb)))
    r = np.random.default_rng(0).beta(8, 8)  # the same draw
    assert 0.2 < r < 0.8
    # inside both boxes green is 30 in a and 230 in b: the blend is r·30 + (1 − r)·230
    assert abs(int(img[30, 30, 1]) - (r * 30 + (1 - r) * 230)) <= 0.5
    assert np.array_equal(img[0, 0], a[0, 0])  # same background in both
    assert np.array_equal(A.augment_hsv(a, 0, 0, 0, np.random.default_rng(0)), a)
    v = A.augment_hsv(a, 0.0, 0.0, 0.5, np.random.default_rng(5))
    gain = np.random.default_rng(5).uniform(-1, 1, 3)[2] * 0.5 + 1
    # value gain only: the brightest channel of the box scales with the gain (clipped)
    assert abs(int(v[30, 30].max()) - min(230 * gain, 255)) <= 2


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("aug") / "d", train=8, val=1, img=96, nc=3,
                          seed=0)


def test_samples_are_deterministic_and_follow_pixels(synth: Path) -> None:
    ds = TrainDataset(load_dataset(synth, "train"), 96, load_hyp("p5"), seed=7)
    a = ds.sample(3, 0)
    b = ds.sample(3, 0)
    c = ds.sample(3, 1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    for i in range(8):
        img, lab = ds.sample(i, 2)
        assert img.shape == (96, 96, 3) and lab.dtype == np.float32
        assert ((lab[:, 1:] >= 0) & (lab[:, 1:] <= 1)).all()
    other = TrainDataset(load_dataset(synth, "train"), 96, load_hyp("p5"), seed=8)
    assert not np.array_equal(other.sample(3, 0)[0], a[0])


def test_workers_give_the_same_batches(synth: Path) -> None:
    def batches(workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ds = TrainDataset(load_dataset(synth, "train"), 96, load_hyp("tiny"), seed=1)
        loader, sampler = make_loader(ds, 4, workers=workers, seed=1)
        sampler.set_epoch(1)
        ds.set_epoch(1)
        return list(loader)
    zero, two = batches(0), batches(2)
    assert len(zero) == 2
    for (i0, l0), (i2, l2) in zip(zero, two):
        assert torch.equal(i0, i2) and torch.equal(l0, l2)
        assert i0.dtype == torch.uint8 and i0.shape == (4, 3, 96, 96)
        assert set(l0[:, 0].tolist()) <= {0.0, 1.0, 2.0, 3.0}
