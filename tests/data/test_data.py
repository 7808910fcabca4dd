"""Datasets (YOLO layout, COCO JSON), the synthetic generator, letterbox and rect batches."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from yolov7c.data import letterbox, load_dataset, make_synthetic, scale_boxes, val_batches
from yolov7c.data.batching import batch_shapes
from yolov7c.data.synth import SHAPES
from yolov7c.errors import UserError

pytestmark = pytest.mark.one_thread




def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_synth_deterministic_and_both_layouts_agree(tmp_path, synth_small):
    a = make_synthetic(tmp_path / "a", train=2, val=3, img=64, nc=4, seed=5)
    b = make_synthetic(tmp_path / "b", train=2, val=3, img=64, nc=4, seed=5)
    c = make_synthetic(tmp_path / "c", train=2, val=3, img=64, nc=4, seed=6)
    assert _digest(a.parent) == _digest(b.parent) != _digest(c.parent)
    y = load_dataset(synth_small)
    j = load_dataset(synth_small.parent / "annotations" / "instances_val.json",
                     images=synth_small.parent / "images" / "val")
    assert len(y) == len(j) == 8 and y.names == j.names == list(SHAPES[:3])
    assert j.cat_ids == [1, 2, 3] and y.cat_ids == [0, 1, 2]
    for ly, lj in zip(y.labels, j.labels):
        np.testing.assert_allclose(ly, lj, atol=1e-5)
    assert sum(len(x) for x in y.labels) >= 8


def test_synth_boxes_are_exact(synth_small):
    """Each box is the tight extent of a shape drawn in a colour unlike the background: the
    pixels just outside the box differ from the shape's colour on every side."""
    ds = load_dataset(synth_small)
    checked = 0
    for i in range(len(ds)):
        s = ds[i]
        h, w = s.image.shape[:2]
        for c, cx, cy, bw, bh in s.labels:
            x1, y1 = round((cx - bw / 2) * w), round((cy - bh / 2) * h)
            x2, y2 = round((cx + bw / 2) * w), round((cy + bh / 2) * h)
            inside = s.image[y1:y2, x1:x2].reshape(-1, 3)
            colors, counts = np.unique(inside, axis=0, return_counts=True)
            shape_color = colors[counts.argmax()]
            for edge in (s.image[y1, x1:x2], s.image[y2 - 1, x1:x2], s.image[y1:y2, x1],
                         s.image[y1:y2, x2 - 1]):
                assert (edge == shape_color).all(-1).any()       # the shape touches each side
            for out in ((s.image[y1 - 1, x1:x2] if y1 > 0 else None),
                        (s.image[y2, x1:x2] if y2 < h else None)):
                if out is not None:
                    assert not (out == shape_color).all(-1).any()
            checked += 1
    assert checked > 0


def test_synth_refuses_non_empty_out(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="out .*not empty"):
        make_synthetic(tmp_path / "x", train=1, val=1, img=64)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def _yolo_set(tmp_path: Path, label: str, nc: int = 2) -> Path:
    from PIL import Image
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text(label)
    y = tmp_path / "data.yaml"
    y.write_text(f"train: images\nval: images\nnc: {nc}\nnames: {[f'c{i}' for i in range(nc)]}\n")
    return y


@pytest.mark.parametrize("label,pattern", [
    ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.1 0.1\n", r"a\.txt:2: class 2 out of range.*nc=2"),
    ("0 0.5 0.5 0.2\n", r"a\.txt:1: 4 columns"),
    ("1 0.5 1.5 0.2 0.2\n", r"a\.txt:1: coordinates outside \[0, 1\]"),
    ("x 0.5 0.5 0.2 0.2\n", r"a\.txt:1: not numbers"),
])
def test_bad_labels_name_file_and_line(tmp_path, label, pattern):
    y = _yolo_set(tmp_path, label)
    with pytest.raises(UserError, match=pattern) as e:
        load_dataset(y)
    assert "\n" not in str(e.value)


def test_polygon_label_becomes_its_box(tmp_path):
    y = _yolo_set(tmp_path, "1 0.1 0.2 0.5 0.2 0.3 0.6\n")
    np.testing.assert_allclose(load_dataset(y).labels[0], [[1, 0.3, 0.4, 0.4, 0.4]], atol=1e-6)


def test_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_dataset(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: images\nval: [images\nnc: 2\n")
    with pytest.raises(UserError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_dataset(bad)
    bad.write_text("train: images\nnc: 2\nnames: [a, b]\n")
    with pytest.raises(UserError, match="no 'val' entry"):
        load_dataset(bad)
    bad.write_text("val: nowhere\nnames: [a, b]\n")
    with pytest.raises(UserError, match="nowhere does not exist"):
        load_dataset(bad)
    bad.write_text("val: .\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(UserError, match="nc=3 but 2 names"):
        load_dataset(bad)


def test_undecodable_image_is_skipped_with_a_warning(tmp_path, captured_logs):
    y = _yolo_set(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with captured_logs() as records:
        ds = load_dataset(y)
    assert len(ds) == 1 and ds.skipped == [str(tmp_path / "images" / "broken.jpg")]
    assert any("broken.jpg: image does not decode" in r.getMessage() for r in records)


def test_coco_unknown_category(tmp_path, synth_small):
    j = json.loads((synth_small.parent / "annotations" / "instances_val.json").read_text())
    j["annotations"][1]["category_id"] = 99
    p = tmp_path / "inst.json"
    p.write_text(json.dumps(j))
    with pytest.raises(UserError, match=r"annotations\[1\] .*category_id 99, not in"):
        load_dataset(p, images=synth_small.parent / "images" / "val")


def test_letterbox_round_trip():
    img = np.zeros((300, 500, 3), np.uint8)
    out, r, (pw, ph) = letterbox(img, 640)
    assert out.shape == (640, 640, 3) and r == pytest.approx(640 / 500)
    assert pw == 0 and ph == (640 - 384) // 2 and (out[0, 0] == 114).all()
    auto, _, (pw2, ph2) = letterbox(img, 640, auto=True, stride=32)
    assert auto.shape == (384, 640, 3) and ph2 == 0
    box = np.array([[100.0, 50.0, 300.0, 250.0]])
    fwd = box * r + [pw, ph, pw, ph]
    np.testing.assert_allclose(scale_boxes(fwd, r, (pw, ph), (300, 500)), box, atol=1e-3)
    # boxes outside the image are clipped to it
    np.testing.assert_allclose(scale_boxes(np.array([[-20.0, -5, 700, 700]]), r, (pw, ph),
                                           (300, 500)), [[0, 0, 500, 300]])


def test_rect_batch_shapes():
    shapes = [(480, 640), (640, 480), (640, 640), (320, 640)]
    order, hw = batch_shapes(shapes, 640, 2, 32)
    assert order == [3, 0, 2, 1]
    assert hw == [(480, 640), (640, 640)]            # wide batch, then a mixed one
    assert batch_shapes(shapes, 640, 2, 32, pad=0.5)[1][0] == (512, 672)   # official pad


def test_val_batches_rect_and_fixed(tmp_path):
    from PIL import Image
    d = tmp_path / "images"
    d.mkdir()
    for i, (w, h) in enumerate([(64, 32), (64, 32), (32, 64)]):
        Image.new("RGB", (w, h), (200, 0, 0)).save(d / f"{i}.png")
    y = tmp_path / "d.yaml"
    y.write_text("val: images\nnames: [a]\n")
    ds = load_dataset(y)
    got = [(b.indices, tuple(b.images.shape)) for b in val_batches(ds, 64, 2, 32)]
    assert got == [([0, 1], (2, 3, 32, 64)), ([2], (1, 3, 64, 32))]
    fixed = [tuple(b.images.shape) for b in val_batches(ds, 64, 2, 32, fixed_shape=(96, 96))]
    assert fixed == [(2, 3, 96, 96), (1, 3, 96, 96)]
    b = next(iter(val_batches(ds, 128, 1, 32, fixed_shape=(128, 128))))
    assert b.ratios == [2.0] and b.pads == [(0.0, 32.0)]
    assert float(b.images.max()) <= 1.0 and b.images.dtype.is_floating_point
