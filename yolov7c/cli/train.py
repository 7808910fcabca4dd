"""``train``: argparse and printing over ``yolov7c.api.training.train``.

Multi-process: ``torchrun --nproc_per_node 2 -m yolov7c train ...`` (torchrun's environment
is read by the trainer; there is no ``--local_rank`` flag). Only rank 0 prints the summary.
"""
from __future__ import annotations

import argparse
import os

from ..train_defaults import TRAIN
from . import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (any source) on a dataset: SGD + warmup/"
                       "cosine, EMA, OTA loss; runs/train/expN with checkpoints and plots")
    p.add_argument("model", nargs="?", default=None,
                   help="zoo name, DSL .py, cfg .yaml (fresh weights), or our .ckpt / an "
                   "official .pt (fine-tuning)")
    p.add_argument("--data", help="data YAML (train and val splits)")
    p.add_argument("--img", type=int, help="training and validation size (default: the data's "
                   "image size when smaller than the model's 640 P5 / 1280 P6, else a "
                   "checkpoint's training size, else the model's; printed)")
    p.add_argument("--epochs", type=int, default=TRAIN.epochs, help=f"epochs ({TRAIN.epochs})")
    p.add_argument("--batch", type=int, default=TRAIN.batch,
                   help=f"total batch over all processes ({TRAIN.batch}); gradients "
                   f"accumulate to --nominal-batch")
    p.add_argument("--hyp", help="hyperparameters: p5, p6, tiny or a YAML file "
                   "(default by model)")
    p.add_argument("--nc", type=int, help="train a new head with this many classes")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, default=TRAIN.seed, help="seed of weights, order and "
                   f"augmentation ({TRAIN.seed})")
    p.add_argument("--resume", metavar="RUN", help="continue the run folder RUN (or its "
                   "last.ckpt) exactly where it stopped")
    p.add_argument("--workers", type=int, default=TRAIN.workers,
                   help=f"data loading processes ({TRAIN.workers})")
    p.add_argument("--project", dest="out", default=TRAIN.project, metavar="DIR",
                   help=f"parent folder of the run folders ({TRAIN.project})")
    p.add_argument("--name", default=TRAIN.name,
                   help=f"run folder name ({TRAIN.name}, {TRAIN.name}2, ...)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--clip", type=float, help="clip the gradient norm (off)")
    p.add_argument("--no-sync-bn", dest="sync_bn", action="store_false",
                   help="per-process BatchNorm statistics in multi-process runs")
    p.add_argument("--nominal-batch", type=int, default=TRAIN.nominal_batch,
                   help=f"images per optimizer step by accumulation ({TRAIN.nominal_batch}, "
                   f"the official)")
    p.add_argument("--warmup-iters", dest="min_warmup_iters", type=int,
                   default=TRAIN.min_warmup_iters,
                   help=f"minimum warmup batches ({TRAIN.min_warmup_iters}, the official)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; on a busy "
                   "2-core machine 1 trains several times faster than 2)")
    p.add_argument("--time-limit", type=float, metavar="SECONDS", help="stop after the epoch "
                   "that would overrun this many seconds (the checkpoints stay usable)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from ..api.training import train
    summary = train(args.model, args.data, img=args.img, epochs=args.epochs, batch=args.batch,
                    hyp=args.hyp, nc=args.nc, device=args.device, seed=args.seed,
                    resume=args.resume, out=args.out, name=args.name, workers=args.workers,
                    amp=args.amp, compile=args.compile, clip=args.clip, sync_bn=args.sync_bn,
                    nominal_batch=args.nominal_batch, min_warmup_iters=args.min_warmup_iters,
                    threads=args.threads, time_limit=args.time_limit)
    if os.environ.get("RANK", "0") != "0":
        return 0
    if args.json:
        emit_json(summary)
        return 0
    stop = " (time limit)" if summary.get("stopped_early") else ""
    print(f"trained {summary['epochs']} epochs in {summary['seconds']:.0f} s{stop} → "
          f"{summary['run']}")
    print(f"  best (epoch {summary['best_epoch']}): mAP@0.5 {summary['map50']:.4f}  "
          f"mAP@0.5:0.95 {summary['map']:.4f}")
    print(f"  loss: {summary['first_loss']:.4f} (epoch 1) → {summary['last_loss']:.4f} (last)")
    if summary.get("transfer"):
        print(f"  fine-tuning: {summary['transfer']}")
    print(f"  weights: {summary['best']}  {summary['last']}")
    print(f"  results: {summary['results']}  (plots: results.png, labels.png)")
    return 0
