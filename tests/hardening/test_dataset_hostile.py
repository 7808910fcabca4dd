"""Hostile datasets (issue 20, sections 2 and 3): every malformed data YAML, label file or
COCO JSON ends in one ``UserError`` line that names the file and the line or record — never
a traceback, a hang, or memory driven by a number in the file. Each case is a reproduction
from the probe; the resource cases run in a subprocess and assert its peak RSS."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yolov7c.data.dataset import load_dataset
from yolov7c.errors import UserError


def _image(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)


def yolo_set(root: Path, label: bytes | str = "0 0.5 0.5 0.2 0.2\n",
             yaml_text: str = "val: images/val\nnames: [a, b]\n") -> Path:
    """A one-image YOLO-layout set whose label file and data YAML are given verbatim."""
    _image(root / "images" / "val" / "a.png")
    lab = root / "labels" / "val" / "a.txt"
    lab.parent.mkdir(parents=True, exist_ok=True)
    lab.write_bytes(label.encode() if isinstance(label, str) else label)
    (root / "data.yaml").write_text(yaml_text)
    return root / "data.yaml"


def coco_set(root: Path, gt: object) -> Path:
    """One image and a COCO instances file with the given content."""
    _image(root / "a.png")
    p = root / "instances.json"
    p.write_text(json.dumps(gt))
    return p


GOOD = {"images": [{"id": 1, "file_name": "a.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 8]}],
        "categories": [{"id": 3, "name": "c"}]}


def _refused(load, *needles: str) -> str:
    with pytest.raises(UserError) as e:
        load()
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600, msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("label, needles", [
    ("inf 0.5 0.5 0.2 0.2\n", ("a.txt:1", "class inf")),
    ("nan 0.5 0.5 0.2 0.2\n", ("a.txt:1", "class nan")),
    ("0 0.5 0.5 0.2 0.2\n1e400 0.5 0.5 0.2 0.2\n", ("a.txt:2",)),
    (b"0 0.5 0.5 0.2 0.2\n\xff\xfe 0 0 0 0\n", ("a.txt:2", "UTF-8")),
])
def test_bad_label_lines_name_file_and_line(tmp_path, label, needles):
    _refused(lambda: load_dataset(yolo_set(tmp_path, label)), *needles)


@pytest.mark.parametrize("yaml_text, needles", [
    ("val: images/val\nnames: {1: a, b: c}\n", ("data.yaml", "names", "keys")),
    ("val: images/val\nnames: {0: a, 2: c}\n", ("keys must be the class indices",)),
    ("val: images/val\nnc: 1000000\n", ("nc 1000000", "1..10000")),
    ("val: images/val\nnc: 1e11\n", ("nc '1e11'",)),
    ("val: images/val\nnc: 100000000000\n", ("nc 100000000000",)),
    ("val: images/val\nnc: true\n", ("nc True",)),
    ("val: images/val\nnames: [[a, b], c]\n", ("names[0]",)),
    ("val: {a: 1}\nnames: [a]\n", ("val:", "not a path")),
    ("val: images/val\npath: [1]\nnames: [a]\n", ("path is",)),
    ("val: images/val\nnames: &a [*a]\n", ("names[0]",)),
])
def test_bad_data_yaml_is_one_line(tmp_path, yaml_text, needles):
    _refused(lambda: load_dataset(yolo_set(tmp_path, yaml_text=yaml_text)), *needles)


def test_names_dict_with_index_keys_still_works(tmp_path):
    ds = load_dataset(yolo_set(tmp_path, yaml_text="val: images/val\nnames: {1: b, 0: a}\n"))
    assert ds.names == ["a", "b"]


def test_non_utf8_yaml_and_fifo_label(tmp_path):
    y = yolo_set(tmp_path)
    y.write_bytes(b"val: images/val\nnames: [a, \xff]\n")
    _refused(lambda: load_dataset(y), "data.yaml:2", "UTF-8")


def _no(key: str, value: object = None, drop: bool = False):
    def mutate(gt: dict) -> dict:
        gt = json.loads(json.dumps(gt))
        where, _, field = key.partition(".")
        rec = gt[where][0] if field else gt
        name = field or where
        if drop:
            del rec[name]
        else:
            rec[name] = value
        return gt
    return mutate


@pytest.mark.parametrize("mutate, needles", [
    (_no("categories.id", drop=True), ("categories[0] has no 'id'",)),
    (_no("categories.id", "3"), ("categories[0]", "'id' is '3'")),
    (_no("annotations", None), ("'annotations' is None",)),
    (_no("annotations.bbox", "abc"), ("annotations[0]", "bbox")),
    (_no("annotations.bbox", [1, 2, float("inf"), 3]), ("annotations[0]", "bbox")),
    (_no("annotations.bbox", [1, 2, 3]), ("annotations[0]", "bbox")),
    (_no("annotations.image_id", drop=True), ("annotations[0]", "image_id")),
    (_no("annotations.category_id", 9), ("category_id 9, not in 'categories'",)),
    (_no("annotations.iscrowd", "yes"), ("iscrowd",)),
    (_no("images.file_name", 5), ("images[0]", "file_name")),
    (_no("images.file_name", "/etc/passwd"), ("leaves the image folder",)),
    (_no("images.id", None), ("images[0]", "'id' is None")),
    (_no("categories", [{"id": i} for i in range(200_000)]), ("200,000 categories",)),
    (lambda gt: [gt], ("needs 'images', 'annotations' and 'categories'",)),
    (lambda gt: {**gt, "images": [5]}, ("images[0] is 5, not an object",)),
    (lambda gt: {**gt, "categories": gt["categories"] * 2},
     ("categories[1]: id 3 appears twice",)),
    (lambda gt: {**gt, "images": gt["images"] * 2}, ("images[1]: id 1 appears twice",)),
])
def test_bad_coco_records_are_named(tmp_path, mutate, needles):
    p = coco_set(tmp_path, mutate(GOOD))
    _refused(lambda: load_dataset(p), "instances.json", *needles)


def test_coco_defaults_filled_for_evaluation(tmp_path):
    """A minimal COCO file (no area, iscrowd or annotation ids) loads; the ground truth
    handed to pycocotools has every field it reads."""
    ds = load_dataset(coco_set(tmp_path, GOOD))
    a = ds.gt_json()["annotations"][0]
    assert a["area"] == 80.0 and a["iscrowd"] == 0 and a["id"] == 1
    np.testing.assert_allclose(ds.labels[0], [[0, 6 / 32, 6 / 32, 10 / 32, 8 / 32]], atol=1e-6)


def test_deep_json_is_one_line(tmp_path):
    p = tmp_path / "instances.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    _refused(lambda: load_dataset(p), "instances.json")


_RSS = """
import sys
from yolov7c.data.dataset import load_dataset
from yolov7c.limits import peak_rss_mb
from yolov7c.errors import UserError
try:
    load_dataset(sys.argv[1])
    print("accepted")
except UserError as e:
    print("refused:", e)
print("rss_mb", int(peak_rss_mb()))
"""


def _bounded(path: Path) -> str:
    """Load in a fresh process; assert it refuses in < 30 s with peak RSS < 1 GB."""
    r = subprocess.run([sys.executable, "-c", _RSS, str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr[-2000:]
    rss = int(r.stdout.split("rss_mb")[-1])
    assert rss < 1024, r.stdout
    assert "refused:" in r.stdout, r.stdout
    return r.stdout


def test_ten_million_line_label_file_is_bounded(tmp_path):
    y = yolo_set(tmp_path)
    with open(tmp_path / "labels" / "val" / "a.txt", "w") as f:
        line = "0 0.5 0.5 0.2 0.2\n"
        for _ in range(100):
            f.write(line * 100_000)   # 10 M lines, 180 MB
    assert "bytes, more than" in _bounded(y)


def test_label_line_cap(tmp_path):
    y = yolo_set(tmp_path, "0 0.5 0.5 0.2 0.2\n" * 100_001)
    _refused(lambda: load_dataset(y), "a.txt:100001", "more than 100,000 boxes")


def test_huge_nc_is_bounded(tmp_path):
    y = yolo_set(tmp_path, yaml_text="val: images/val\nnc: 100000000000\n")
    assert "nc 100000000000" in _bounded(y)


def test_huge_coco_category_list_is_bounded(tmp_path):
    gt = dict(GOOD, categories=[{"id": i, "name": str(i)} for i in range(200_000)])
    assert "200,000 categories" in _bounded(coco_set(tmp_path, gt))


def test_val_cli_with_inf_class_exits_2_in_one_line(tmp_path):
    y = yolo_set(tmp_path, "inf 0.5 0.5 0.2 0.2\n")
    r = subprocess.run([sys.executable, "-m", "yolov7c", "val", "yolov7-tiny", "--data", str(y),
                        "--img", "64", "--no-save"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1 and "a.txt:1" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.yaml", "images", "labels"]
