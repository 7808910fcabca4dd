"""The shared setup of the DDP exactness test: one optimizer step of the real trainer on a
small synthetic set, no augmentation randomness, with a loss that is a sum over images."""
from __future__ import annotations

from pathlib import Path

import torch

from yolov7c import zoo
from yolov7c.backends.torch.lower import lower
from yolov7c.data.dataset import load_dataset
from yolov7c.train.hyp import load_hyp
from yolov7c.train.trainer import Settings, Trainer

IMG, BATCH = 64, 4


def sum_over_images(model, hyp, img):
    """loss = Σ over images of a per-image value, like the official scale (batch × mean), but
    decomposable: each process's share adds up to the single-process value exactly."""
    def crit(outputs, targets):
        per = sum((o.sigmoid() ** 2).flatten(1).mean(1) for o in outputs)
        loss = per.sum().reshape(1)
        return loss, torch.stack([loss[0].detach()] * 4)
    return crit


def plain_hyp() -> dict:
    h = load_hyp("tiny")
    h.update(mosaic=0.0, mixup=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.0, flipud=0.0,
             translate=0.0, scale=0.0, degrees=0.0, shear=0.0, perspective=0.0,
             warmup_epochs=0.0, lr0=0.05)
    return h


def one_step(data: str, run_dir: Path, sync_bn: bool) -> dict[str, torch.Tensor]:
    """The weights (params and buffers) after one step on the first global batch."""
    torch.manual_seed(0)
    # float64: at 64 px the deepest BatchNorms see 2 × 2 maps, and their backward pass turns
    # float32 rounding into ~1e-4 relative noise; in float64 the comparison shows the math
    model = lower(zoo.get("yolov7-tiny", nc=3)).double()
    s = Settings(data=data, img=IMG, epochs=1, batch=BATCH, hyp=plain_hyp(), seed=0,
                 workers=0, device="cpu", sync_bn=sync_bn, min_warmup_iters=0,
                 nominal_batch=BATCH)
    ds = load_dataset(data, "train")
    t = Trainer(model, s, run_dir, sum_over_images, None, ds, None)
    t._train_epoch(0)
    return {k: v.detach().clone() for k, v in t.model.state_dict().items()}
