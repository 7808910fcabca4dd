"""``train``: any model source + a dataset → a run folder with checkpoints, results and plots.

Model sources (one resolver, ``api.models.resolve``): a zoo name, a DSL ``.py``, an official
``.yaml`` cfg or a Graph start from the official initialisation (fresh conv weights, BN γ = 1
β = 0, prior head biases); our checkpoint, an official ``.pt`` or a YoloModel with weights are
fine-tuned (matching tensors transferred; with another ``nc`` the detection convs start fresh).
``resume`` continues a run folder from its ``weights/last.ckpt``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from torch import nn

from .. import zoo
from ..backends.torch import checkpoint as ckpt_io
from ..backends.torch.lower import YoloModel, lower
from ..data.dataset import DetectionDataset, load_dataset
from ..errors import UserError
from ..eval_settings import META_KEY as EVAL_META_KEY, EvalSettings
from ..run_dirs import next_run_dir
from ..io_util import write_text_atomic
from ..ir.graph import Graph
from ..train import ddp
from ..train.hyp import load_hyp, save_hyp
from ..train.resume import check_resume
from ..train.trainer import Settings, Trainer, check_data
from ..train.transfer import transfer
from ..train_defaults import TRAIN
from .args import check_img, check_nc, default_img, image_size, positive_float, positive_int
from .models import model_name, resolve, with_nc

WEIGHTLESS_SUFFIXES = (".py", ".yaml", ".yml")
log = logging.getLogger("yolov7c.train")


# the training settings' defaults: Settings' own (which come from train_defaults.TRAIN)
_S = {f.name: f.default for f in dataclasses.fields(Settings)
      if f.default is not dataclasses.MISSING}


def train(source: Any = None, data: str | os.PathLike | None = None, *, img: int | None = None,
          epochs: int = TRAIN.epochs, batch: int = TRAIN.batch, hyp: Any = None,
          nc: int | None = None, device: str | None = _S["device"], seed: int = _S["seed"],
          resume: str | os.PathLike | None = None, out: str | os.PathLike = TRAIN.project,
          name: str = TRAIN.name, workers: int = _S["workers"], amp: bool | None = _S["amp"],
          compile: bool = _S["compile"], clip: float | None = _S["clip"],
          sync_bn: bool = _S["sync_bn"], val_batch: int | None = _S["val_batch"],
          min_warmup_iters: int = _S["min_warmup_iters"],
          nominal_batch: int = _S["nominal_batch"], time_limit: float | None = _S["time_limit"],
          threads: int | None = None) -> dict[str, Any]:
    """Train ``source`` on ``data`` (a data YAML); returns the run summary (run folder, best
    and last checkpoints, best mAP@0.5 and mAP@0.5:0.95, first/last epoch loss).

    ``batch`` is the total over all processes (torchrun); ``hyp`` a preset (``p5``, ``p6``,
    ``tiny``; default by model), a YAML file or a dict; ``nc`` trains a new head with that
    many classes; ``resume`` a run folder (or its last.ckpt) to continue exactly where it
    stopped. ``min_warmup_iters`` and ``nominal_batch`` (images per optimizer step, by
    gradient accumulation) default to the official values (``train_defaults.TRAIN``, like
    every default here); tiny datasets and tests lower them. ``time_limit`` (seconds) stops after the epoch that would overrun it. ``img``
    defaults to the data's image size when its images are smaller than the model's default
    size, else to the size a checkpoint source was trained at, else the model's (logged).
    ``threads``: torch threads for this call (on a busy 2-core machine 1 is much faster)."""
    if threads is not None:
        positive_int(threads, "threads")
    if time_limit is not None:
        positive_float(time_limit, "time_limit")
    with _torch_threads(threads):
        return _train(source, data, img=img, epochs=epochs, batch=batch, hyp=hyp, nc=nc,
                      device=device, seed=seed, resume=resume, out=out, name=name,
                      workers=workers, amp=amp, compile=compile, clip=clip, sync_bn=sync_bn,
                      val_batch=val_batch, min_warmup_iters=min_warmup_iters,
                      nominal_batch=nominal_batch, time_limit=time_limit)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(source: Any, data: str | os.PathLike | None, *, img: int | None, epochs: int,
           batch: int, hyp: Any, nc: int | None, device: str | None, seed: int,
           resume: str | os.PathLike | None, out: str | os.PathLike, name: str, workers: int,
           amp: bool | None, compile: bool, clip: float | None, sync_bn: bool,
           val_batch: int | None, min_warmup_iters: int, nominal_batch: int,
           time_limit: float | None) -> dict[str, Any]:
    e = ddp.env()
    if resume is not None:
        fixed = [k for k, v in (("model", source), ("img", img), ("hyp", hyp), ("nc", nc))
                 if v is not None]
        if fixed:
            raise UserError(f"resume {resume}: {', '.join(fixed)} cannot change on resume (the "
                            f"run continues with its own); drop {', '.join(fixed)}, or start a "
                            f"new run from the run's weights/last.ckpt", arg="resume")
        return _resume(resume, device=device, workers=workers, data=data,
                       time_limit=time_limit)
    if source is None:
        raise UserError("source: give a model (zoo name, .py, .yaml, .ckpt or official .pt) "
                        "or resume a run", arg="source")
    if data is None:
        raise UserError("data: give the data YAML to train on", arg="data")
    positive_int(epochs, "epochs")
    positive_int(batch, "batch")
    positive_int(workers, "workers", minimum=0)
    if nc is not None:
        check_nc(nc)
    if clip is not None and not clip > 0:
        raise UserError(f"clip {clip!r}: a maximum gradient norm must be > 0", arg="clip")
    train_ds = load_dataset(data, "train")
    val_ds = load_dataset(data, "val") if e.main else None
    model, report = build_model(source, nc if nc is not None else _default_nc(source, train_ds),
                                seed)
    img = image_size(model, img if img is not None else _default_img(model, source, train_ds,
                                                                       e.main))
    check_data(train_ds, val_ds, model.nc, str(data))
    hyp_d = load_hyp(hyp if hyp is not None else default_hyp(model))
    settings = Settings(data=_abs_data(data), img=img, epochs=epochs, batch=batch, hyp=hyp_d,
                        seed=seed, workers=workers, device=device, amp=amp, compile=compile,
                        clip=clip, sync_bn=sync_bn, min_warmup_iters=min_warmup_iters,
                        nominal_batch=positive_int(nominal_batch, "nominal_batch"),
                        val_batch=val_batch, time_limit=time_limit, source=model_name(source))
    run_dir = _run_dir(out, name, e, device)
    if e.main:
        save_hyp(hyp_d, run_dir / "hyp.yaml")
        write_text_atomic(run_dir / "settings.yaml", yaml.safe_dump(
            {k: v for k, v in settings.to_extra().items() if k != "hyp"}, sort_keys=False))
    meta = {"source": str(source) if isinstance(source, (str, os.PathLike)) else
            model_name(source), "data": settings.data}
    if report is not None:
        meta["transfer"] = json.dumps(report.as_dict())
    trainer = Trainer(model, settings, run_dir, _criterion, _evaluator(settings), train_ds,
                      val_ds, meta=_checkpoint_meta(settings, meta))
    summary = trainer.fit()
    if report is not None:
        summary["transfer"] = report.summary()
    return summary


def _default_img(model: nn.Module, source: Any, data: DetectionDataset, main: bool) -> int:
    """The training size when none is given: the data's largest image side (rounded up to the
    stride) when it is below the model's default, else a checkpoint's own training size,
    else the model's default; logged with the reason."""
    from ..backends.common import max_stride
    default, stride = default_img(model), max_stride(model)
    side = max((max(hw) for hw in data.shapes), default=0)
    size, why = default, "the model's default"
    if 0 < side < default:
        size, why = -(-side // stride) * stride, f"the data's images are at most {side} px"
    elif (trained := trained_img(source)) is not None:
        size, why = trained, "the size the checkpoint was trained at"
    if main:
        log.info("img %d (%s; --img to change)", size, why)
    return size


def _criterion(model: nn.Module, hyp: dict, img: int):
    from ..train.loss import criterion
    return criterion(model, hyp, img)


def validation_settings(s: Settings) -> EvalSettings:
    """How a run validates each epoch: at its training size, with ``val_batch`` (default:
    the training batch) and the official NMS settings; the checkpoints record them."""
    return EvalSettings(img=s.img, batch=s.val_batch or max(s.batch, 1))


def _evaluator(s: Settings):
    """Validation of the EMA module with the project's evaluator (pycocotools)."""
    from ..eval.evaluator import evaluate
    from ..eval.predictor import TorchPredictor
    es = validation_settings(s)

    def run(module: nn.Module, ds: DetectionDataset) -> dict:
        dev = str(next(module.parameters()).device)
        return evaluate(TorchPredictor(module, device=dev), ds, **es.evaluate_kw(),
                        out_dir=None, plots=False, progress=True)
    return run


def _checkpoint_meta(s: Settings, meta: dict) -> dict:
    """``meta`` plus the record of how the run validates (``val`` of the checkpoint reuses
    it, so it reproduces the mAP the run reported)."""
    return {**meta, EVAL_META_KEY: validation_settings(s).as_meta()}


def _run_dir(out: str | os.PathLike, name: str, e: ddp.DistEnv, device: str | None) -> Path:
    """Rank 0 claims ``out/name{N}``; the other ranks learn it from rank 0 (the process
    group joined here, with the backend of the run's device, is the trainer's)."""
    if not e.distributed:
        return next_run_dir(out, name)
    ddp.setup(e, ddp.device_for(device, e))
    return Path(ddp.broadcast(str(next_run_dir(out, name)) if e.main else None))


def _default_nc(source: Any, data: DetectionDataset) -> int | None:
    """A zoo name takes the data's classes; other sources keep their own (a mismatch is
    then reported with the fix)."""
    return data.nc if isinstance(source, str) and source in zoo.names() else None


def default_hyp(model: nn.Module) -> str:
    """The official preset for the model: tiny for -tiny models, p6 for stride-64 models."""
    g = getattr(model, "graph", None)
    name = g.name if isinstance(g, Graph) else ""
    if "tiny" in name:
        return "tiny"
    return "p6" if max(getattr(g, "strides", (32,))) >= 64 else "p5"


def _has_weights(source: Any) -> bool:
    if isinstance(source, nn.Module):
        return True
    if isinstance(source, (str, os.PathLike)):
        p = Path(os.fspath(source))
        return p.is_file() and p.suffix.lower() not in WEIGHTLESS_SUFFIXES
    return False


def build_model(source: Any, nc: int | None, seed: int):
    """(train-mode YoloModel, transfer report or None) for ``source`` with ``nc`` classes."""
    if not _has_weights(source):
        graph = source if isinstance(source, Graph) else _graph_of(resolve(source, nc=nc))
        graph = with_nc(graph, nc)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return lower(graph).train(), None
    pre = resolve(source)
    graph = _graph_of(pre)
    if graph.form != "training":
        raise UserError(f"source {model_name(source)}: a deploy-form model cannot be trained; "
                        f"start from the training checkpoint", arg="source")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = lower(with_nc(graph, nc))
    report = transfer(pre, model)
    return model.train(), report


def _graph_of(model: nn.Module) -> Graph:
    if isinstance(model, YoloModel):
        return model.graph
    raise UserError(f"{type(model).__name__}: only yolov7c models (zoo, DSL, YAML, our "
                    f"checkpoints, official .pt) can be trained", arg="source")


def _resumed_settings(ck_path: Path, ck: dict, model: nn.Module, *, data: Any,
                      device: str | None, workers: int, time_limit: float | None) -> Settings:
    """The run's settings, validated like a new run's arguments (``train.resume``), with the
    flags that do not change what is learned (data moved, device, workers, time limit)
    overriding them, each with a note."""
    s = check_resume(ck_path, ck, model)
    try:
        check_img(model, s.img)
    except UserError as e:
        raise UserError(f"resume {ck_path}: settings {e}", arg="resume") from None
    given = {"data": None if data is None else _abs_data(data), "device": device,
             "workers": workers, "time_limit": time_limit}
    for k, v in given.items():
        if v is not None and v != getattr(s, k):
            if k != "workers":
                log.info("resume: --%s %s overrides the run's %s", k.replace("_", "-"), v,
                         getattr(s, k))
            setattr(s, k, v)
    if not Path(s.data).exists():
        raise UserError(f"resume {ck_path}: the run's data {s.data} is not there (a relative "
                        f"path is read from the current folder); give --data <path to the "
                        f"data YAML>", arg="data")
    return s


def _abs_data(data: str | os.PathLike) -> str:
    """An existing data file as an absolute path, so a run resumes from any folder."""
    p = Path(os.fspath(data))
    return str(p.resolve()) if p.exists() else str(p)


def _resume(resume: str | os.PathLike, *, device: str | None, workers: int,
            data: Any = None, time_limit: float | None = None) -> dict[str, Any]:
    p = Path(resume)
    ck_path = p if p.is_file() else p / "weights" / "last.ckpt"
    if not ck_path.is_file():
        raise UserError(f"resume {p}: no weights/last.ckpt there (no epoch finished, or not a "
                        f"run folder); start a new run instead", arg="resume")
    run_dir = ck_path.parent.parent
    ck = ckpt_io.read(ck_path)
    model = lower(ck["graph"]).train()
    s = _resumed_settings(ck_path, ck, model, data=data, device=device, workers=workers,
                          time_limit=time_limit)
    extra = ck["extra"]
    if extra["epoch"] + 1 >= s.epochs:
        raise UserError(f"resume {p}: the run already finished its {s.epochs} epochs; to "
                        f"train longer, fine-tune {run_dir / 'weights' / 'best.ckpt'}",
                        arg="resume")
    e = ddp.env()
    train_ds = load_dataset(s.data, "train")
    val_ds = load_dataset(s.data, "val") if e.main else None
    check_data(train_ds, val_ds, model.nc, s.data)
    meta = json.loads(ck["meta"]) if isinstance(ck.get("meta"), str) else dict(ck.get("meta")
                                                                               or {})
    meta = {k: v for k, v in meta.items() if k in ("source", "data", "transfer")}
    trainer = Trainer(model, s, run_dir, _criterion, _evaluator(s), train_ds, val_ds,
                      resume_extra=extra, meta=_checkpoint_meta(s, meta))
    trainer.restore_ema(ck["state_dict"])
    return trainer.fit()


def has_weights(source: Any) -> bool:
    """Whether ``train`` fine-tunes ``source`` (it carries weights) or starts it fresh."""
    return _has_weights(source)


def trained_img(source: Any) -> int | None:
    """The image size our checkpoint ``source`` was trained at (None for any other source),
    so val, detect, e2e and fine-tuning default to it instead of the zoo's 640."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    from .models import is_our_checkpoint
    p = Path(os.fspath(source))
    if not (p.is_file() and is_our_checkpoint(p)):
        return None
    ck = ckpt_io.read(p)
    settings = ck["extra"].get("settings")
    img = ck["meta"].get("img", settings.get("img") if isinstance(settings, dict) else None)
    return img if isinstance(img, int) and not isinstance(img, bool) and img > 0 else None


def trained_eval(source: Any) -> EvalSettings | None:
    """The settings the run that wrote our checkpoint ``source`` validated with (None for
    any other source, and for checkpoints written before runs recorded them); a malformed
    record is a one-line error naming the field."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    from .models import is_our_checkpoint
    p = Path(os.fspath(source))
    if not (p.is_file() and is_our_checkpoint(p)):
        return None
    meta = ckpt_io.read(p)["meta"]
    if EVAL_META_KEY not in meta:
        return None
    return EvalSettings.from_meta(meta[EVAL_META_KEY], f"checkpoint {p}")
