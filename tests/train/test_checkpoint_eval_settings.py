"""A run's checkpoints record how it validated; ``val`` of best.ckpt with no flags uses that
record, so it reproduces the mAP the run reported (issue 21). Flags still win, old
checkpoints keep the defaults, and a crafted record is a one-line error naming the field."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml

from yolov7c.api.evaluate import val
from yolov7c.api.training import train
from yolov7c.backends.torch.checkpoint import read
from yolov7c.data.synth import make_synthetic
from yolov7c.errors import UserError
from yolov7c.eval_settings import EvalSettings
from yolov7c.train.hyp import load_hyp

pytestmark = pytest.mark.one_thread

IMG, BATCH = 64, 2   # the run's: not val's defaults (the training size aside, 640 and 16)
LINE = f"eval settings from the checkpoint: img {IMG}, batch {BATCH}, conf 0.001, iou 0.65"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of yolov7-tiny on 8 synthetic images without augmentation, validated on
    the same 8 with batch 2 (on unseen images a one-epoch model scores exactly 0, and 0 = 0
    would prove nothing)."""
    tmp = tmp_path_factory.mktemp("evrec")
    data = make_synthetic(tmp / "d", train=8, val=1, img=IMG, nc=3, seed=2)
    spec = yaml.safe_load(data.read_text())
    data.write_text(yaml.safe_dump({**spec, "val": spec["train"]}))
    hyp = {**load_hyp("tiny"), "warmup_epochs": 0.0, "mosaic": 0.0, "mixup": 0.0,
           "translate": 0.0, "scale": 0.0, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0,
           "fliplr": 0.0}
    s = train("yolov7-tiny", data, img=IMG, epochs=1, batch=4, val_batch=BATCH, workers=0,
              nominal_batch=4, min_warmup_iters=0, hyp=hyp, seed=0, out=tmp / "runs",
              threads=1)
    return {"summary": s, "data": data, "tmp": tmp}


def with_record(src: str, dest: Path, change: dict | None) -> Path:
    """A copy of checkpoint ``src`` whose eval record is changed (None: removed, as in a
    checkpoint written before runs recorded it)."""
    ck = torch.load(src, weights_only=True)
    meta = json.loads(ck["meta"])
    if change is None:
        del meta["eval"]
    else:
        meta["eval"].update(change)
    ck["meta"] = json.dumps(meta)
    torch.save(ck, dest)
    return dest


@pytest.fixture(scope="module")
def plain(run: dict) -> tuple[dict, str]:
    """``val`` of best.ckpt with no flags: (its result, the log lines about its settings)."""
    handler = _Lines()
    logger = logging.getLogger("yolov7c")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        res = val(run["summary"]["best"], run["data"], out=None, plots=False, progress=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return res, "\n".join(m for m in handler.lines if "eval settings" in m)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_val_of_best_reproduces_the_runs_map(run: dict, plain: tuple[dict, str]) -> None:
    s, (res, said) = run["summary"], plain
    assert read(s["best"])["meta"]["eval"] == {
        "img": IMG, "batch": BATCH, "conf": 0.001, "iou": 0.65, "max_det": 300,
        "multi_label": True, "rect": None, "pad": 0.0}
    print(f"run mAP {s['map']:.6f} mAP50 {s['map50']:.6f}; val {res['map']:.6f} "
          f"{res['map50']:.6f}")
    assert s["map50"] > 0    # a number that could differ, not an empty 0 = 0
    assert res["map"] == pytest.approx(s["map"], abs=1e-6)
    assert res["map50"] == pytest.approx(s["map50"], abs=1e-6)
    assert (res["img"], res["batch_size"], res["conf"]) == (IMG, BATCH, 0.001)
    assert said == LINE + ", max_det 300"


def test_the_record_is_what_val_reads_and_flags_win(run: dict, plain: tuple[dict, str],
                                                    tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    best, data = run["summary"]["best"], run["data"]
    # a record with another threshold gives the numbers of that threshold given as a flag
    strict = with_record(best, tmp_path / "strict.ckpt", {"conf": 0.3})
    a = val(strict, data, out=None, plots=False, progress=False)
    b = val(best, data, conf=0.3, out=None, plots=False, progress=False)
    assert a["conf"] == b["conf"] == 0.3 and a["map"] == b["map"]
    assert a["detections"] == b["detections"] < plain[0]["detections"]
    # a flag wins over the record, and the line says which; a checkpoint without the
    # record keeps the old defaults (batch 16), silently
    old = with_record(best, tmp_path / "old.ckpt", None)
    with caplog.at_level(logging.INFO, logger="yolov7c"):
        c = val(best, data, batch_size=3, out=None, plots=False, progress=False)
        assert c["batch_size"] == 3 and "(given: batch 3)" in caplog.text
        caplog.clear()
        d = val(old, data, out=None, plots=False, progress=False)
    assert (d["img"], d["batch_size"]) == (IMG, 16) and "eval settings" not in caplog.text


def test_a_crafted_record_is_one_line_naming_the_field(run: dict, tmp_path: Path) -> None:
    bad = with_record(run["summary"]["best"], tmp_path / "bad.ckpt", {"batch": -1})
    with pytest.raises(UserError, match=r"eval\.batch is -1, expected 1\.\.4096") as e:
        val(bad, run["data"], batch_size=4, out=None, plots=False, progress=False)
    assert "\n" not in str(e.value) and f"checkpoint {bad}: " in str(e.value)


GOOD = {"img": 64, "batch": 2, "conf": 0.001, "iou": 0.65, "max_det": 300,
        "multi_label": True, "rect": None, "pad": 0.0}


@pytest.mark.parametrize("change,match", [
    ({"img": 10**9}, r"eval\.img is 1000000000, expected 1\.\.8192"),
    ({"batch": 0}, r"eval\.batch is 0, expected 1\.\.4096"),
    ({"conf": "0.1"}, r"eval\.conf is '0\.1', expected a number"),
    ({"conf": True}, r"eval\.conf is True, expected a number"),
    ({"iou": math.nan}, r"eval\.iou is nan, expected a number"),
    ({"iou": 1.5}, r"eval\.iou is 1\.5, expected 0\.\.1"),
    ({"max_det": 2.5}, r"eval\.max_det is 2\.5, expected an integer"),
    ({"multi_label": 1}, r"eval\.multi_label is 1, expected true or false"),
    ({"rect": "yes"}, r"eval\.rect is 'yes', expected true or false"),
    ({"pad": -1}, r"eval\.pad is -1, expected 0\.\.64"),
    ({"batch": None}, r"eval\.batch is None, expected an integer"),
    # an int too large for a float: a range error, not an OverflowError from math.isfinite
    ({"img": 10**400}, r"eval\.img is 1000.*, expected 1\.\.8192"),
    ({"conf": 10**400}, r"eval\.conf is 1000.*, expected 0\.\.1"),
])
def test_each_field_is_type_and_range_checked(change: dict, match: str) -> None:
    with pytest.raises(UserError, match=r"^ck: the recorded eval settings' " + match):
        EvalSettings.from_meta({**GOOD, **change}, "ck")


def test_a_record_that_is_no_dict_or_lacks_a_field_is_refused() -> None:
    assert EvalSettings.from_meta(GOOD, "ck") == EvalSettings(img=64, batch=2)
    assert EvalSettings.from_meta({**GOOD, "rect": True}, "ck").rect is True
    with pytest.raises(UserError, match=r"eval settings' eval lacks batch, pad"):
        EvalSettings.from_meta({k: v for k, v in GOOD.items() if k not in ("batch", "pad")},
                               "ck")
    with pytest.raises(UserError, match=r"eval settings' eval is \[1, 2\], expected a dict"):
        EvalSettings.from_meta([1, 2], "ck")
