"""Runs end to end on tiny synthetic sets: the CI smoke test (2 epochs on 16 images, Ctrl-C,
resume, loss went down, checkpoint reloads weights-only), bit-for-bit resume, NaN stop,
and the bad inputs (nc mismatch, empty labels, resume without checkpoint, out of memory)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from yolov7c.api.training import build_model, train
from yolov7c.backends.torch.checkpoint import read
from yolov7c.backends.torch.lower import YoloModel
from yolov7c.data.dataset import load_dataset
from yolov7c.data.synth import make_synthetic
from yolov7c.errors import UserError
from yolov7c.train.hyp import load_hyp
from yolov7c.train.loader import TrainDataset, collate
from yolov7c.train.trainer import Trainer, TrainingStopped

pytestmark = pytest.mark.one_thread




def quick_hyp() -> dict:
    """The tiny recipe with the warmup off, so a handful of steps moves every weight."""
    return {**load_hyp("tiny"), "warmup_epochs": 0.0}


def plain_hyp() -> dict:
    """``quick_hyp`` without geometric and colour augmentation: a few steps must lower the
    loss of the training images themselves."""
    return {**quick_hyp(), "mosaic": 0.0, "mixup": 0.0, "translate": 0.0, "scale": 0.0,
            "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "fliplr": 0.0}


def small_kw(tmp_path: Path, img: int, batch: int, hyp: dict | None = None) -> dict:
    return dict(img=img, epochs=2, batch=batch, workers=0, out=tmp_path / "runs",
                nominal_batch=batch, min_warmup_iters=0, hyp=hyp or quick_hyp(), seed=0)


@pytest.fixture(scope="module")
def d16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("d16") / "d", train=16, val=4, img=128,
                          nc=3, seed=0)


@pytest.fixture(scope="module")
def d8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("d8") / "d", train=8, val=1, img=64, nc=3,
                          seed=1)


def fixed_batch_loss(model: torch.nn.Module, data: Path, img: int) -> float:
    """The training loss of the un-augmented training images (train-mode BN)."""
    from yolov7c.train.loss import criterion
    ds = TrainDataset(load_dataset(data, "train"), img, {}, augment=False)
    x, t = collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        return float(criterion(model, "tiny", img)(model.train()(x.float() / 255), t)[0])


@pytest.mark.slow
def test_smoke_two_epochs_ctrl_c_resume(tmp_path: Path, d16: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    kw = small_kw(tmp_path, 128, 8, plain_hyp())
    original = Trainer.forward_backward

    def ctrl_c_in_epoch_2(self, imgs, targets, epoch, i, ni):
        if epoch == 1 and i == 1:
            raise KeyboardInterrupt
        return original(self, imgs, targets, epoch, i, ni)

    monkeypatch.setattr(Trainer, "forward_backward", ctrl_c_in_epoch_2)
    with pytest.raises(TrainingStopped, match=r"interrupted during epoch 2/2; \S*weights/"
                       r"last.ckpt holds epoch 1; continue with: yolov7c train --resume "):
        train("yolov7-tiny", d16, **kw)
    monkeypatch.undo()
    run = tmp_path / "runs" / "exp"
    ck = read(run / "weights" / "last.ckpt")  # torch.load(weights_only=True) inside
    assert ck["extra"]["epoch"] == 0 and len(ck["extra"]["history"]) == 1

    s = train(resume=run, workers=0)
    assert s["epochs"] == 2 and s["run"] == str(run)
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["train/total"])) for r in rows)
    for f in ("results.png", "labels.png", "hyp.yaml", "weights/best.ckpt"):
        assert (run / f).is_file(), f
    ck = read(run / "weights" / "last.ckpt")
    assert ck["extra"]["epoch"] == 1
    m = torch.load(run / "weights" / "last.ckpt", weights_only=True)
    assert m["state_dict"].keys() == ck["state_dict"].keys()

    # the saved weights are the EMA's and load like any checkpoint; the loss went down
    from yolov7c.api.models import resolve
    ema = resolve(run / "weights" / "last.ckpt")
    assert isinstance(ema, YoloModel)
    raw = YoloModel(ema.graph)
    raw.load_state_dict(ck["extra"]["model"])
    torch.manual_seed(0)
    start, _ = build_model("yolov7-tiny", 3, 0)
    before, after = fixed_batch_loss(start, d16, 128), fixed_batch_loss(raw, d16, 128)
    print(f"fixed-batch loss {before:.4f} → {after:.4f}")
    assert after < before


@pytest.mark.slow
def test_resume_is_bit_for_bit(tmp_path: Path, d8: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = small_kw(tmp_path, 64, 4)
    kw["nominal_batch"] = 8  # accumulation across the epoch boundary must survive the resume
    straight = train("yolov7-tiny", d8, name="straight", **kw)
    original = Trainer.forward_backward

    def stop(self, imgs, targets, epoch, i, ni):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, imgs, targets, epoch, i, ni)

    monkeypatch.setattr(Trainer, "forward_backward", stop)
    with pytest.raises(TrainingStopped):
        train("yolov7-tiny", d8, name="cut", **kw)
    monkeypatch.undo()
    resumed = train(resume=Path(kw["out"]) / "cut", workers=0)
    a, b = read(straight["last"]), read(resumed["last"])
    for part in ("model",):
        assert all(torch.equal(a["extra"][part][k], b["extra"][part][k]) for k in a["extra"][part])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["extra"]["ema_updates"] == b["extra"]["ema_updates"]


def test_non_finite_loss_stops_and_keeps_last_good(tmp_path: Path, d8: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    original = Trainer.forward_backward

    def poison(self, imgs, targets, epoch, i, ni):
        if epoch == 1:
            imgs = imgs.float() * math.nan
        return original(self, imgs, targets, epoch, i, ni)

    monkeypatch.setattr(Trainer, "forward_backward", poison)
    kw = small_kw(tmp_path, 64, 8)
    with pytest.raises(TrainingStopped, match=r"loss is not finite .* at epoch 2, batch 1 "
                       r"\(iteration 1\); stopped, weights/last.ckpt keeps epoch 1"):
        train("yolov7-tiny", d8, **kw)
    ck = read(tmp_path / "runs" / "exp" / "weights" / "last.ckpt")
    assert ck["extra"]["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values()
               if v.is_floating_point())


def test_out_of_memory_says_so(tmp_path: Path, d8: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def oom_loss(model, hyp, img):
        def crit(outputs, targets):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                               "allocate memory: you tried to allocate 9663676416 bytes")
        return crit
    monkeypatch.setattr("yolov7c.api.training._criterion", oom_loss)
    with pytest.raises(UserError, match=r"^batch 8 at img 64 does not fit in memory on cpu .*"
                       r"lower batch \(e.g. 4\) or img") as e:
        train("yolov7-tiny", d8, **small_kw(tmp_path, 64, 8))
    assert e.value.arg == "batch"


def test_nc_mismatch_names_the_fix(tmp_path: Path, d8: Path) -> None:
    from yolov7c import zoo
    from yolov7c.backends.torch.checkpoint import save
    from yolov7c.backends.torch.lower import lower
    ck = save(lower(zoo.get("yolov7-tiny", nc=80)), tmp_path / "coco.ckpt")
    with pytest.raises(UserError, match=r"3 classes but the model has 80; pass nc=3") as e:
        train(ck, d8, **small_kw(tmp_path, 64, 8))
    assert e.value.arg == "nc"
    model, report = build_model(ck, 3, 0)   # the fix: a new head, the rest transferred
    assert model.nc == 3 and len(report.reinitialised) == 9
    assert len(report.transferred) == report.total - 9
    assert not any(Path(tmp_path / "runs").glob("exp*/weights/*.ckpt"))


def test_empty_labels_and_resume_without_checkpoint(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path / "e", train=4, val=1, img=64, nc=2, seed=0)
    for f in (data.parent / "labels" / "train").glob("*.txt"):
        f.write_text("")
    with pytest.raises(UserError, match=r"train split has no labels \(0 boxes in 4 images\)"):
        train("yolov7-tiny", data, **small_kw(tmp_path, 64, 4))
    (tmp_path / "runs" / "exp9").mkdir(parents=True)
    with pytest.raises(UserError, match=r"^resume .*exp9: no weights/last.ckpt there"):
        train(resume=tmp_path / "runs" / "exp9")


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from yolov7c.cli import main
    rc = main(["train", "--resume", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--resume" in err[0] and "Traceback" not in err[0]
    rc = main(["train", "yolov7-tiny"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--data" in err[0]


FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def test_every_model_source_builds_a_trainable_model(tmp_path: Path) -> None:
    """Zoo name, official YAML, DSL file (fresh official init) and checkpoints (fine-tuning)."""
    from yolov7c import zoo
    from yolov7c.backends.torch.checkpoint import save
    from yolov7c.backends.torch.lower import lower
    from yolov7c.ir.emit_dsl import to_dsl
    from yolov7c.ir.yaml_io import to_yaml
    g = zoo.get("yolov7-tiny", nc=3)
    (tmp_path / "m.yaml").write_text(to_yaml(g))
    (tmp_path / "m.py").write_text(to_dsl(g))
    for src in ("yolov7-tiny", tmp_path / "m.yaml", tmp_path / "m.py"):
        model, report = build_model(src, 3, 0)
        assert model.training and model.nc == 3 and report is None
        bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        # the official initialisation, not verification weights: γ = 1, β = 0, fresh stats
        assert all(torch.all(b.weight == 1) and torch.all(b.running_var == 1) for b in bn)
    a, _ = build_model("yolov7-tiny", 3, 0)
    b, _ = build_model("yolov7-tiny", 3, 0)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
    torch.manual_seed(5)
    pre = lower(g)
    ck = save(pre, tmp_path / "pre.ckpt")
    model, report = build_model(ck, None, 0)
    assert len(report.transferred) == report.total
    assert all(torch.equal(v, pre.state_dict()[k]) for k, v in model.state_dict().items())
    official = FIXTURES / "yolov7-tiny-official.pt"
    if official.is_file():
        model, report = build_model(official, 3, 0)  # COCO (80) → 3 classes
        assert model.nc == 3 and len(report.reinitialised) == 9
        assert len(report.transferred) == report.total - 9


# ---------------------------------------------------------------- issue 23: a run a user follows

NARROW = Path(__file__).resolve().parents[2] / "yolov7c" / "zoo" / "narrow.py"


def test_size_from_data_threads_and_resume_that_continues_the_clock(
        tmp_path: Path, d8: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """No img: the data's size (64, not the model's 640), printed; threads=1 for the call
    only; a resume says so and from which epoch, and its results.csv time_s and summary go
    on from the first process's time."""
    import logging
    kw = small_kw(tmp_path, 64, 4)
    del kw["img"]
    original = Trainer.forward_backward
    seen_threads = []

    def stop(self, imgs, targets, epoch, i, ni):
        seen_threads.append(torch.get_num_threads())
        assert imgs.shape[-1] == 64
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, imgs, targets, epoch, i, ni)

    monkeypatch.setattr(Trainer, "forward_backward", stop)
    torch.set_num_threads(2)
    try:
        with caplog.at_level(logging.INFO, logger="yolov7c.train"), \
                pytest.raises(TrainingStopped):
            train(NARROW, d8, threads=1, **kw)
        assert set(seen_threads) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert "img 64 (the data's images are at most 64 px" in caplog.text
    monkeypatch.undo()
    run = tmp_path / "runs" / "exp"
    # the first process "took" 1000 s: the resumed run must go on from there
    last = run / "weights" / "last.ckpt"
    ck = torch.load(last, weights_only=True)
    ck["extra"]["history"][0]["time_s"] = 1000.0
    torch.save(ck, last)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="yolov7c.train"):
        s = train(resume=run, workers=0)
    assert f"resuming {run} from epoch 2/2 (epochs 1-1 done in 16m40s)" in caplog.text
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert float(rows[0]["time_s"]) == 1000.0
    assert 1000.0 < float(rows[1]["time_s"]) <= s["seconds"] < 1000.0 + 600
    assert s["epochs"] == 2
    # val and detect default to the size the checkpoint was trained at, not 640
    from yolov7c.api.evaluate import default_eval_img
    from yolov7c.api.training import trained_img
    assert trained_img(s["best"]) == 64 and default_eval_img(s["best"], None) == 64
    assert trained_img(NARROW) is None and default_eval_img(NARROW, None) == 640
