"""``train --resume`` against crafted ``last.ckpt`` files (issue 20 §4): each of the 16
reproduced cases (and a few more) is one line, exit 2, no traceback, before any training;
resuming from another folder, ``--data`` overriding a moved data set, and Ctrl-C messages
in CLI terms."""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import torch

from yolov7c.api.training import train
from yolov7c.data.synth import make_synthetic
from yolov7c.errors import UserError
from yolov7c.train.hyp import load_hyp
from yolov7c.train.trainer import Trainer, TrainingStopped

pytestmark = pytest.mark.one_thread

CFG = Path(__file__).resolve().parents[1] / "small_cfg.yaml"


def _kw(out: Path) -> dict:
    return dict(img=64, epochs=2, batch=2, workers=0, out=out, nominal_batch=2,
                min_warmup_iters=0, hyp={**load_hyp("tiny"), "warmup_epochs": 0.0}, seed=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A 2-epoch run of the small cfg stopped after epoch 1 (time limit), started from a
    folder of its own with a relative data path: (run folder, data YAML, raw last.ckpt)."""
    base = tmp_path_factory.mktemp("resume")
    data = make_synthetic(base / "ds", train=4, val=1, img=64, nc=2, seed=0)
    old = Path.cwd()
    os.chdir(base)
    try:
        s = train(str(CFG), os.path.relpath(data, base), **_kw(Path("runs")), time_limit=1e-3)
    finally:
        os.chdir(old)
    assert s["epochs"] == 1 and s["stopped_early"]
    run_dir = base / s["run"]
    return run_dir, data, torch.load(run_dir / "weights" / "last.ckpt", weights_only=True)


def _crafted(tmp_path: Path, raw: dict, edit) -> Path:
    """A run folder whose last.ckpt is ``raw`` after ``edit(ckpt, extra)``."""
    ck = copy.deepcopy(raw)
    edit(ck, ck["extra"])
    (tmp_path / "r" / "weights").mkdir(parents=True)
    torch.save(ck, tmp_path / "r" / "weights" / "last.ckpt")
    return tmp_path / "r"


def _set(key: str, value):
    def edit(ck, x):
        x[key] = value
    return edit


def _setting(key: str, value):
    def edit(ck, x):
        if value is _DROP:
            del x["settings"][key]
        else:
            x["settings"][key] = value
    return edit


_DROP = object()


def _weights(change):
    def edit(ck, x):
        change(x["model"])
    return edit


def _first_momentum(make):
    def edit(ck, x):
        st = x["optimizer"]["state"]
        k = next(iter(st))
        st[k]["momentum_buffer"] = make(st[k]["momentum_buffer"])
    return edit


def _stride0(t: torch.Tensor) -> torch.Tensor:
    """A stride-0 view of one element with ``t``'s shape × 1000 in its first dimension."""
    return torch.zeros(1).expand(t.shape[0] * 1000, *t.shape[1:])


CASES = [
    ("settings-string", _set("settings", "abc"), r"settings is 'abc', expected a dict"),
    ("epoch-abc", _set("epoch", "abc"), r"epoch is 'abc', expected an integer"),
    ("history-int", _set("history", 5), r"history is 5, expected a list of 1 epoch rows"),
    ("ema-updates-list", _set("ema_updates", [1, 2]), r"ema_updates is \[1, 2\], expected an "
                                                      r"integer"),
    ("settings-no-data", _setting("data", _DROP), r"settings lack data"),
    ("optimizer-empty", _set("optimizer", {}), r"optimizer lacks its param_groups list"),
    ("weights-wrong-shape", _weights(lambda m: m.__setitem__(
        next(iter(m)), torch.zeros(3, 3, 3, 3))), r"model weights \S+ has shape \(3, 3, 3, 3\), "
                                                  r"the model needs"),
    ("weights-extra-key", _weights(lambda m: m.__setitem__("junk", torch.zeros(1))),
     r"model weights do not match the model .*unexpected \['junk'\]"),
    ("rng-short", _set("torch_rng", torch.zeros(16, dtype=torch.uint8)),
     r"torch_rng is a torch.uint8 tensor of shape \(16,\), expected 5056 bytes"),
    ("momentum-stride0", _first_momentum(_stride0), r"momentum_buffer'\] of shape .* is not "
                                                    r"backed by its storage"),
    ("img-100000", _setting("img", 100000), r"settings img is 100000, expected 1..8192"),
    ("batch-0", _setting("batch", 0), r"settings batch is 0, expected 1..4096"),
    ("nominal-batch-0", _setting("nominal_batch", 0), r"settings nominal_batch is 0, "
                                                      r"expected 1..65536"),
    ("batch-1e5", _setting("batch", 100_000), r"settings batch is 100000, expected 1..4096"),
    ("time-limit-negative", _setting("time_limit", -1.0), r"settings time_limit is -1.0, "
                                                          r"expected 0.001..100000000"),
    ("momentum-wrong-shape", _first_momentum(lambda t: torch.zeros(7)),
     r"momentum_buffer has shape \(7,\), the model needs"),
    # beyond the 16
    ("img-not-stride", _setting("img", 65), r"settings img 65: not a positive multiple"),
    ("hyp-string-value", lambda ck, x: x["settings"]["hyp"].__setitem__("lr0", "fast"),
     r"settings hyp 'lr0' is 'fast', expected a number"),
    ("epoch-past-epochs", _set("epoch", 7), r"epoch is 7, expected -1..1"),
    ("grads-short", _set("grads", []), r"grads is \[\], expected a list of \d+ tensors"),
    ("ema-nan", lambda ck, x: ck["state_dict"].__setitem__(
        next(iter(ck["state_dict"])), torch.full_like(next(iter(ck["state_dict"].values())),
                                                      float("nan"))),
     r"holds NaN"),
    ("optimizer-foreign-param", lambda ck, x: x["optimizer"]["state"].__setitem__(
        10**6, {"momentum_buffer": torch.zeros(1)}), r"entry for parameter 1000000"),
    ("scaler-junk", _set("scaler", {"scale": "x"}), r"scaler scale is 'x', expected a number"),
    ("history-row-no-time", lambda ck, x: x["history"][0].pop("time_s"),
     r"history\[0\] time_s is None, expected a number"),
    ("history-row-text", lambda ck, x: x["history"][0].__setitem__("mAP50", "high"),
     r"history\[0\] mAP50 is 'high', expected a number"),
]


@pytest.mark.parametrize("name,edit,match", CASES, ids=[c[0] for c in CASES])
def test_crafted_last_ckpt_is_one_line_exit_2(tmp_path, capsys, run, name, edit, match):
    from yolov7c.cli import main
    _, _, raw = run
    r = _crafted(tmp_path, raw, edit)
    with pytest.raises(UserError, match=match):
        train(resume=r, workers=0)
    capsys.readouterr()
    rc = main(["train", "--resume", str(r)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert not (r / "results.csv").exists()      # refused before any training


def test_flags_that_change_the_run_are_refused_on_resume(tmp_path, capsys, run):
    """--img, --hyp, --nc or a model with --resume were silently ignored."""
    from yolov7c.cli import main
    run_dir, _, _ = run
    with pytest.raises(UserError, match=r"img, hyp cannot change on resume"):
        train(resume=run_dir, img=320, hyp="p5")
    rc = main(["train", "yolov7-tiny", "--resume", str(run_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "model cannot change on resume" in err[0], err


def test_every_numeric_setting_has_a_flag_range():
    """Each int/float field of Settings that a run restores is held to a stated range."""
    import dataclasses

    from yolov7c.limits import FLAG_RANGES
    from yolov7c.train.trainer import Settings
    numeric = [f.name for f in dataclasses.fields(Settings)
               if any(t in str(f.type) for t in ("int", "float")) and f.name != "hyp"]
    assert numeric and not [k for k in numeric if k not in FLAG_RANGES]


def test_resume_from_another_folder_and_data_override(tmp_path, run, capsys, captured_logs):
    """settings.yaml and the checkpoint hold the data as an absolute path; a moved data set
    is named with --data (noted in the log); a missing one is one line naming the fix."""
    import yaml
    run_dir, data, raw = run
    assert Path(raw["extra"]["settings"]["data"]).is_absolute()
    stored = yaml.safe_load((run_dir / "settings.yaml").read_text())["data"]
    assert Path(stored) == data.resolve()
    copy_dir = tmp_path / "copy"
    shutil.copytree(run_dir, copy_dir)
    moved = tmp_path / "moved"
    shutil.copytree(data.parent, moved)
    ck = copy.deepcopy(raw)
    ck["extra"]["settings"]["data"] = "gone/data.yaml"        # relative, as older runs stored
    torch.save(ck, copy_dir / "weights" / "last.ckpt")
    old = Path.cwd()
    os.chdir("/")
    try:
        with pytest.raises(UserError, match=r"the run's data gone/data.yaml is not there .* "
                                            r"give --data"):
            train(resume=copy_dir, workers=0)
        with captured_logs() as records:
            s = train(resume=copy_dir, data=moved / data.name, workers=0)
    finally:
        os.chdir(old)
    assert s["epochs"] == 2
    notes = [r.getMessage() for r in records if "overrides" in r.getMessage()]
    assert any(f"--data {moved / data.name} overrides the run's gone/data.yaml" in n
               for n in notes), notes


def test_ctrl_c_messages_say_what_is_true(tmp_path, run, monkeypatch):
    """Before the first epoch ends nothing is saved and no resume is suggested; after it,
    the resume command is given in CLI terms."""
    _, data, _ = run

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "forward_backward", interrupt)
    with pytest.raises(TrainingStopped) as e:
        train(str(CFG), data, **_kw(tmp_path / "runs"))
    msg = str(e.value)
    assert "before any epoch finished: nothing was saved (no weights/last.ckpt)" in msg
    assert "resume" not in msg and "=" not in msg
    run_dir, _, _ = run
    r = tmp_path / "again"
    shutil.copytree(run_dir, r)
    with pytest.raises(TrainingStopped, match=r"interrupted during epoch 2/2; \S+last.ckpt holds "
                                              r"epoch 1; continue with: yolov7c train --resume "
                                              rf"{r}$"):
        train(resume=r, workers=0)
