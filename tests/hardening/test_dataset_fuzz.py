"""Fuzzing the dataset loaders with hypothesis (issue 20, section 3): mutated data YAMLs with
their label files, and mutated COCO instances JSONs. Whatever the mutation, only a one-line
``UserError`` may come out (the model is tests/hardening/test_fuzz.py's YAML fuzz).

Derandomized with a bounded number of cases, so CI runs the same cases every time. A longer
run: ``YOLOV7C_FUZZ_EXAMPLES=5000 python -m pytest -q tests/hardening/test_dataset_fuzz.py``
(``YOLOV7C_FUZZ_RANDOM=1`` draws new cases instead of the fixed ones)."""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from yolov7c.data.dataset import load_dataset

from .test_fuzz import _mutate, _report, _tally

EXAMPLES = int(os.environ.get("YOLOV7C_FUZZ_EXAMPLES", "250"))
SETTINGS = dict(deadline=None, derandomize=not os.environ.get("YOLOV7C_FUZZ_RANDOM"),
                database=None, suppress_health_check=list(HealthCheck))

LABEL_TOKENS = st.sampled_from(["0", "1", "2", "-1", "0.5", "1.5", "inf", "-inf", "nan", "1e400",
                                "0x1", "abc", "", "  ", "\t", "0.1 0.2", "\xff", "\x1b[31m",
                                "9" * 30, "1_0"])
DATA = {"path": ".", "val": "images/val", "nc": 2, "names": ["a", "b"]}
COCO = {"images": [{"id": 1, "file_name": "a.png", "height": 32, "width": 32},
                   {"id": 2, "file_name": "b.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 8],
                         "area": 80, "iscrowd": 0},
                        {"id": 2, "image_id": 2, "category_id": 5, "bbox": [0, 0, 4, 4]}],
        "categories": [{"id": 3, "name": "c"}, {"id": 5, "name": "e"}]}


def _images(root, names=("a.png", "b.png")):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)


def test_fuzz_data_yaml_and_labels(tmp_path):
    _images(tmp_path / "images" / "val")
    (tmp_path / "labels" / "val").mkdir(parents=True)
    tally = Counter()

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(st.data())
    def run(data):
        y = tmp_path / "data.yaml"
        kind = data.draw(st.sampled_from(["yaml", "yaml bytes", "label", "label bytes"]))
        cfg = _mutate(data, DATA, 2) if kind == "yaml" else DATA
        text = yaml.safe_dump(cfg)
        if kind == "yaml bytes":
            b = bytearray(text.encode())
            for _ in range(data.draw(st.integers(1, 4))):
                i = data.draw(st.integers(0, len(b) - 1))
                b[i:i + 1] = data.draw(st.sampled_from(
                    [b"", bytes([data.draw(st.integers(0, 255))]), b"&a ", b"*a", b"[", b"{",
                     b": ", b"\n", b"!!python/object ", b"!!binary ", b"{1: a, b: c}"]))
            y.write_bytes(bytes(b))
        else:
            y.write_text(text)
        lines = ["0 0.5 0.5 0.2 0.2", "1 0.1 0.2 0.5 0.2 0.3 0.6"]
        if kind.startswith("label"):
            for _ in range(data.draw(st.integers(1, 3))):
                cols = data.draw(st.lists(LABEL_TOKENS, min_size=0, max_size=8))
                lines.insert(data.draw(st.integers(0, len(lines))), " ".join(cols))
        blob = "\n".join(lines).encode("utf-8", "surrogateescape")
        if kind == "label bytes":
            blob += bytes([data.draw(st.integers(0, 255))])
        (tmp_path / "labels" / "val" / "a.png").with_suffix(".txt").write_bytes(blob)
        _tally(tally, lambda: load_dataset(y))
    run()
    _report("data YAML + labels", tally)


def test_fuzz_coco_json(tmp_path):
    _images(tmp_path)
    tally = Counter()
    text = json.dumps(COCO)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(st.data())
    def run(data):
        p = tmp_path / "instances.json"
        if data.draw(st.integers(0, 4)) == 0:   # byte level: through the JSON parser
            b = bytearray(text.encode())
            for _ in range(data.draw(st.integers(1, 4))):
                i = data.draw(st.integers(0, len(b) - 1))
                b[i:i + 1] = data.draw(st.sampled_from(
                    [b"", bytes([data.draw(st.integers(0, 255))]), b"[", b"{", b"null", b",",
                     b'"', b"1e999", b"-0", b"NaN"]))
            p.write_bytes(bytes(b))
        else:
            p.write_text(json.dumps(_mutate(data, COCO, 3)))
        _tally(tally, lambda: load_dataset(p))
    run()
    _report("COCO JSON", tally)
