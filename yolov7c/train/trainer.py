"""The training loop: data → forward → the paper's loss → accumulated SGD steps → EMA →
per-epoch validation of the EMA weights → checkpoints and results.

What makes ``resume`` continue bit for bit: lrs and momenta are functions of (iteration,
epoch) (``optim.Schedule``); batches are functions of (seed, epoch, index) (``loader``); the
checkpoint holds the raw weights, the EMA weights and update count, the optimizer's momentum
buffers, the gradients accumulated but not yet applied, the AMP scaler, the torch RNG state,
and the history. A run resumes at the start of the epoch after the last completed one.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..backends.torch.checkpoint import save as save_checkpoint
from ..data.dataset import DetectionDataset
from ..errors import UserError, one_line
from ..progress import Progress, hms
from ..train_defaults import TRAIN
from . import ddp
from .ema import ModelEMA, unwrap
from .loader import TrainDataset, make_loader
from .optim import Schedule, accumulate_steps, build_optimizer
from .runs import plot_labels, plot_results, results_row, write_results

log = logging.getLogger("yolov7c.train")

Criterion = Callable[..., tuple[torch.Tensor, torch.Tensor]]


class TrainingStopped(UserError):
    """The run stopped early (non-finite loss, Ctrl-C); the message says what was kept."""


@dataclass
class Settings:
    """Everything that defines a run (saved in every checkpoint; ``resume`` reuses it)."""

    data: str
    img: int
    epochs: int
    batch: int                     # total images per step over all processes
    hyp: dict
    seed: int = TRAIN.seed
    workers: int = TRAIN.workers
    device: str | None = None      # None: CUDA when available, else CPU
    amp: bool | None = None        # None: on for CUDA
    compile: bool = False          # torch.compile (CUDA only)
    clip: float | None = None      # max gradient norm; off like the official recipe
    sync_bn: bool = True           # SyncBN in multi-process runs
    min_warmup_iters: int = TRAIN.min_warmup_iters   # floor on warmup batches
    nominal_batch: int = TRAIN.nominal_batch         # images per optimizer step
    val_batch: int | None = None
    time_limit: float | None = None  # seconds: stop after the epoch that would overrun it
    source: str = ""

    def to_extra(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_extra(cls, d: dict) -> "Settings":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class TrainState:
    """Training state restored by ``resume`` (see the module docstring)."""

    epoch: int = -1                 # last completed epoch
    best: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)


def check_data(train: DetectionDataset, val: DetectionDataset | None, nc: int, data: str
               ) -> None:
    """The model's classes must be the data's, and there must be something to learn."""
    if train.nc != nc:
        raise UserError(f"data {data}: {train.nc} classes but the model has {nc}; pass "
                        f"nc={train.nc} to train a new head for this data (the detection "
                        f"convs are re-initialised, the rest is kept)", arg="nc")
    n = sum(len(x) for x in train.labels)
    if n == 0:
        raise UserError(f"data {data}: the train split has no labels (0 boxes in "
                        f"{len(train)} images); put 'class cx cy w h' lines in labels/*.txt "
                        f"beside the images", arg="data")
    if val is not None and len(val) == 0:
        raise UserError(f"data {data}: the val split has no images", arg="data")


def schedule_warnings(schedule: Schedule, s: Settings, batches_per_epoch: int) -> list[str]:
    """Settings that make a run learn little: a warmup as long as the whole run (the lr never
    reaches lr0), or at most 2 optimizer steps per epoch; each message names the fixing flag."""
    out = []
    total = batches_per_epoch * s.epochs
    if schedule.warmup_iters >= total:
        out.append(f"warmup lasts {schedule.warmup_iters} batches but the whole run has "
                   f"{total} ({s.epochs} epochs × {batches_per_epoch}): the lr never reaches "
                   f"lr0; lower --warmup-iters (e.g. {max(total // 10, 1)}) or train more "
                   f"epochs")
    accumulate = accumulate_steps(s.batch, s.nominal_batch)
    steps = math.ceil(batches_per_epoch / accumulate)
    if steps <= 2:
        out.append(f"{steps} optimizer step(s) per epoch ({batches_per_epoch} batches of "
                   f"{s.batch}, accumulated to --nominal-batch {s.nominal_batch}): lower "
                   f"--nominal-batch (e.g. to --batch {s.batch}) or use more images")
    return out


def _oom(err: BaseException) -> bool:
    s = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in s or "can't allocate memory" in s


class Trainer:
    """One run. ``model``: a fresh or pre-trained YoloModel (train-mode outputs);
    ``criterion_fn(model, hyp, img)`` builds the loss; ``evaluate_fn(module, dataset)``
    returns a dict with precision, recall, map50, map (None: no validation)."""

    def __init__(self, model: nn.Module, settings: Settings, run_dir: Path,
                 criterion_fn: Callable[[nn.Module, dict, int], Criterion],
                 evaluate_fn: Callable[[nn.Module, DetectionDataset], dict] | None,
                 train_data: DetectionDataset, val_data: DetectionDataset | None,
                 resume_extra: dict | None = None, meta: dict | None = None) -> None:
        self.s = settings
        self.run_dir = Path(run_dir)
        self.env = ddp.env()
        self.device = ddp.device_for(settings.device, self.env)
        ddp.setup(self.env, self.device)
        if settings.batch % self.env.world:
            raise UserError(f"batch {settings.batch}: must be a multiple of the {self.env.world} "
                            f"processes", arg="batch")
        self.per_rank = settings.batch // self.env.world
        self.amp = bool(settings.amp if settings.amp is not None
                        else self.device.type == "cuda") and self.device.type == "cuda"
        self.train_data, self.val_data = train_data, val_data
        self.evaluate_fn = evaluate_fn
        self.meta = dict(meta or {})
        self.stopped_early = False      # set when --time-limit ends the run before its epochs
        torch.manual_seed(settings.seed)

        self.model = model.to(self.device).train()
        self.criterion = criterion_fn(self.model, settings.hyp, settings.img)
        self.optimizer = build_optimizer(self.model, settings.hyp, settings.batch,
                                         settings.nominal_batch)
        self.ema = ModelEMA(self.model) if self.env.main else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.state = TrainState()
        if resume_extra is not None:
            self._restore(resume_extra)

        self.dataset = TrainDataset(train_data, settings.img, settings.hyp, augment=True,
                                    seed=settings.seed)
        self.loader, self.sampler = make_loader(
            self.dataset, self.per_rank, workers=settings.workers, rank=self.env.rank,
            world=self.env.world, seed=settings.seed, pin_memory=self.device.type == "cuda")
        self.schedule = Schedule.from_hyp(settings.hyp, settings.epochs, len(self.loader),
                                          settings.batch, settings.min_warmup_iters,
                                          settings.nominal_batch)
        self.net: nn.Module = ddp.wrap(self.model, self.env, self.device, settings.sync_bn)
        if settings.compile and self.device.type == "cuda":
            self.net = torch.compile(self.net)

    # ----------------------------------------------------------------- checkpoints
    def _extra(self) -> dict:
        grads = [p.grad.detach().cpu() if p.grad is not None else torch.zeros(0)
                 for p in self.model.parameters()]
        assert self.ema is not None
        return {"settings": self.s.to_extra(), "epoch": self.state.epoch,
                "best": self.state.best, "best_epoch": self.state.best_epoch,
                "history": self.state.history,
                "model": {k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "grads": grads,
                "ema_updates": self.ema.updates, "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state()}

    def _restore(self, x: dict) -> None:
        self.model.load_state_dict(x["model"])
        self.optimizer.load_state_dict(x["optimizer"])
        for p, g in zip(self.model.parameters(), x["grads"]):
            p.grad = g.to(self.device) if g.numel() else None
        if self.ema is not None:
            self.ema.updates = int(x["ema_updates"])
        if x.get("scaler"):
            self.scaler.load_state_dict(x["scaler"])
        torch.set_rng_state(x["torch_rng"])
        self.state = TrainState(int(x["epoch"]), float(x["best"]), int(x["best_epoch"]),
                                list(x["history"]))

    def restore_ema(self, state_dict: dict[str, torch.Tensor]) -> None:
        """The EMA weights of a resumed run (they are the checkpoint's ``state_dict``)."""
        if self.ema is not None:
            self.ema.module.load_state_dict(state_dict)

    def _save(self, path: Path) -> None:
        """The one place that writes a training checkpoint (EMA weights + ``extra``)."""
        assert self.ema is not None
        save_checkpoint(self.ema.module, path, extra=self._extra(), kind="train",
                        epoch=self.state.epoch, img=self.s.img, **self.meta)

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, Any]:
        s, main = self.s, self.env.main
        start = self.state.epoch + 1
        wdir = self.run_dir / "weights"
        if main:
            wdir.mkdir(parents=True, exist_ok=True)
            if start == 0:
                plot_labels(self.run_dir / "labels.png", self.train_data.labels,
                            self.train_data.names)
            if start:
                log.info("resuming %s from epoch %d/%d (epochs 1-%d done in %s)",
                         self.run_dir, start + 1, s.epochs, start, hms(self._time_before()))
            log.info("training %s on %s: %d images, %d epochs, batch %d (%d per process × %d,"
                     " accumulate to %d), img %d, device %s%s, %d torch threads", s.source,
                     s.data, len(self.train_data), s.epochs, s.batch, self.per_rank,
                     self.env.world, s.nominal_batch, s.img, self.device,
                     ", AMP" if self.amp else "", torch.get_num_threads())
            for warning in schedule_warnings(self.schedule, s, len(self.loader)):
                log.warning("warning: %s", warning)
        t_start = time.perf_counter()
        t0 = t_start - self._time_before()  # time_s and the summary go on across resumes
        self._epoch_s: list[float] = []
        epoch = start
        try:
            for epoch in range(start, s.epochs):
                t_epoch = time.perf_counter()
                parts, lrs = self._train_epoch(epoch)
                if main:
                    self._end_epoch(epoch, parts, lrs, time.perf_counter() - t0)
                ddp.barrier()
                now = time.perf_counter()
                self._epoch_s.append(now - t_epoch)
                if s.time_limit and now - t_start + (now - t_epoch) > s.time_limit and \
                        epoch + 1 < s.epochs:
                    self.stopped_early = True
                    if main:
                        log.info("time limit %.0f s: stopping after epoch %d/%d", s.time_limit,
                                 epoch + 1, s.epochs)
                    break
        except KeyboardInterrupt:
            raise TrainingStopped(self._interrupted(epoch)) from None
        finally:
            ddp.cleanup()
        return self.summary(time.perf_counter() - t0)

    def _interrupted(self, epoch: int) -> str:
        """What a Ctrl-C leaves, in CLI terms: the resume command only when a last.ckpt
        exists (the first epoch of a new run had not finished: nothing to resume)."""
        head = f"interrupted during epoch {epoch + 1}/{self.s.epochs}"
        if self.state.epoch < 0:
            return (f"{head}, before any epoch finished: nothing was saved (no "
                    f"weights/last.ckpt); run the same command again to start over")
        return (f"{head}; {self.run_dir / 'weights' / 'last.ckpt'} holds epoch "
                f"{self.state.epoch + 1}; continue with: yolov7c train --resume {self.run_dir}")

    def _train_epoch(self, epoch: int) -> tuple[list[float], list[float]]:
        s = self.s
        self.net.train()
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        nb = len(self.loader)
        sums = torch.zeros(4)
        lrs: list[float] = [0.0, 0.0, 0.0]
        head = f"epoch {epoch + 1}/{s.epochs}"
        images = len(self.sampler) * self.env.world  # every process's share, counted once
        with Progress(images, head, enabled=self.env.main, unit="img") as bar:
            for i, (imgs, targets) in enumerate(self.loader):
                ni = i + nb * epoch
                accumulate = self.schedule.apply(self.optimizer, ni, epoch)
                lrs = [g["lr"] for g in self.optimizer.param_groups]
                items = self.forward_backward(imgs, targets, epoch, i, ni)
                if ni % accumulate == 0:
                    self.step()
                sums += items
                m = sums / (i + 1)
                bar.label = f"{head} box {m[0]:.4f} obj {m[1]:.4f} cls {m[2]:.4f} lr {lrs[1]:.1e}"
                bar.note = self._run_eta(bar, epoch)
                bar.update(len(imgs) * self.env.world)
        return (sums / max(nb, 1)).tolist(), lrs

    def _time_before(self) -> float:
        """Seconds the run had trained before this process (0 unless resumed)."""
        h = self.state.history
        return float(h[-1]["time_s"]) if h else 0.0

    def _run_eta(self, bar: Progress, epoch: int) -> str:
        """"run ETA …": this epoch's ETA plus the later epochs at the mean epoch time so far
        (training and validation), or this epoch's projected time before one has ended."""
        left = bar.eta()
        if left is None:
            return ""
        per_epoch = (sum(self._epoch_s) / len(self._epoch_s) if self._epoch_s
                     else bar.elapsed + left)
        return f"run ETA {hms(left + (self.s.epochs - epoch - 1) * per_epoch)}"

    def forward_backward(self, imgs: torch.Tensor, targets: torch.Tensor, epoch: int, i: int,
                         ni: int) -> torch.Tensor:
        """Loss of one batch (× world size: DDP averages gradients, the loss is a sum over
        images) and its backward pass; returns the detached (box, obj, cls, total)."""
        dtype = next(self.model.parameters()).dtype  # float32; float64 in exactness tests
        x = imgs.to(self.device, non_blocking=True).to(dtype) / 255.0
        t = targets.to(self.device)
        try:
            with torch.autocast(self.device.type, enabled=self.amp):
                out = self.net(x)
            # the loss (assignment, IoU, BCE) runs in float32 even under AMP
            loss, parts = self.criterion([o.float() for o in out], t)
            finite = bool(torch.isfinite(loss).all())
            if not ddp.all_true(finite, self.device):
                kept = (f"weights/last.ckpt keeps epoch {self.state.epoch + 1}"
                        if self.state.epoch >= 0 else "no checkpoint was written yet")
                raise TrainingStopped(
                    f"loss is not finite (box, obj, cls = {parts[:3].tolist()}) at epoch "
                    f"{epoch + 1}, batch {i + 1} (iteration {ni}); stopped, {kept}; lower lr0 "
                    f"in the hyp or check the labels", arg="hyp")
            if self.env.distributed:
                loss = loss * self.env.world
            self.scaler.scale(loss).backward()
        except RuntimeError as e:
            if _oom(e):
                raise UserError(
                    f"batch {self.s.batch} at img {self.s.img} does not fit in memory on "
                    f"{self.device} ({one_line(e, 120)}); lower batch (e.g. "
                    f"{max(self.s.batch // 2, 1)}) or img", arg="batch") from None
            raise
        return parts.detach().float().cpu()

    def step(self) -> None:
        """Apply the accumulated gradients (optionally clipped), then update the EMA."""
        if self.s.clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.s.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=False)
        if self.ema is not None:
            self.ema.update(self.model)

    def _end_epoch(self, epoch: int, parts: list[float], lrs: list[float], elapsed: float
                   ) -> None:
        assert self.ema is not None
        metrics = (self.evaluate_fn(self.ema.module, self.val_data)
                   if self.evaluate_fn is not None and self.val_data is not None else {})
        row = results_row(epoch + 1, parts, metrics, lrs, elapsed)
        self.state.history.append(row)
        self.state.epoch = epoch
        fitness = row["mAP50-95"] if not math.isnan(row["mAP50-95"]) else -row["train/total"]
        improved = fitness > self.state.best
        if improved:
            self.state.best, self.state.best_epoch = fitness, epoch
        wdir = self.run_dir / "weights"
        self._save(wdir / "last.ckpt")
        if improved:
            self._save(wdir / "best.ckpt")
        write_results(self.run_dir / "results.csv", self.state.history)
        plot_results(self.run_dir / "results.png", self.state.history)
        log.info("epoch %d/%d: loss %.4f (box %.4f obj %.4f cls %.4f)  P %.3f R %.3f "
                 "mAP@.5 %.3f mAP@.5:.95 %.3f%s", epoch + 1, self.s.epochs, parts[3], *parts[:3],
                 row["precision"], row["recall"], row["mAP50"], row["mAP50-95"],
                 "  (best)" if improved else "")

    def summary(self, seconds: float) -> dict[str, Any]:
        h = self.state.history
        best = next((r for r in h if r["epoch"] == self.state.best_epoch + 1), None)
        w = self.run_dir / "weights"
        return {"run": str(self.run_dir), "epochs": self.state.epoch + 1,
                "seconds": round(seconds, 1), "last": str(w / "last.ckpt"),
                "best": str(w / "best.ckpt"), "best_epoch": self.state.best_epoch + 1,
                "map50": best["mAP50"] if best else math.nan,
                "map": best["mAP50-95"] if best else math.nan,
                "first_loss": h[0]["train/total"] if h else math.nan,
                "last_loss": h[-1]["train/total"] if h else math.nan,
                "results": str(self.run_dir / "results.csv"),
                "stopped_early": self.stopped_early}
