"""Training batches: a dataset wrapper that applies the augmentation recipe, the collate
function, and the DataLoader with worker processes and a DistributedSampler.

Determinism: sample ``i`` of epoch ``e`` draws all its randomness from
``numpy.random.default_rng([seed, e, i])`` and the shuffle order from ``seed + e`` (the
DistributedSampler's rule), so the batches do not depend on the number of workers or on
whether the run was resumed, and each rank of a DDP run sees its own slice of one order.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data import augment as A
from ..data.dataset import DetectionDataset, read_image


class TrainDataset(Dataset):
    """``__getitem__(i)`` → (uint8 (3, S, S) image, float32 (n, 6) labels with column 0 free
    for the image index, then class, cx, cy, w, h normalized)."""

    def __init__(self, data: DetectionDataset, img: int, hyp: dict, *, augment: bool = True,
                 seed: int = 0) -> None:
        self.data, self.img, self.hyp = data, int(img), dict(hyp)
        self.augment, self.seed, self.epoch = augment, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``i`` resized so its long side is ``img``, and its pixel xyxy labels."""
        im = A.resize_long_side(read_image(self.data.paths[i]), self.img)
        h, w = im.shape[:2]
        return im, A.xywhn_to_xyxy(self.data.labels[i].reshape(-1, 5), w, h)

    def _mosaic(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s, n = self.img, len(self.data)
        if rng.random() < 1 - A.MOSAIC9_P:
            idx = [i, *rng.integers(0, n, 3).tolist()]
            canvas, labels = A.mosaic(self.load, idx, s, rng)
        else:
            idx = [i, *rng.integers(0, n, 8).tolist()]
            canvas, labels = A.mosaic9(self.load, idx, s, rng)
        return A.random_perspective(canvas, labels, self.hyp, rng, border=-s // 2)

    def sample(self, i: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (S, S, 3) image, (n, 5) cls cx cy w h normalized) for ``i`` in ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch, i])
        hyp = self.hyp
        if self.augment and rng.random() < hyp.get("mosaic", 0.0):
            img, labels = self._mosaic(i, rng)
            if rng.random() < hyp.get("mixup", 0.0):
                other = self._mosaic(int(rng.integers(0, len(self.data))), rng)
                img, labels = A.mixup((img, labels), other, rng)
        else:
            img, labels = A.letterbox_labels(*self.load(i), self.img)
            if self.augment:
                img, labels = A.random_perspective(img, labels, hyp, rng)
        if self.augment:
            img = A.augment_hsv(img, hyp.get("hsv_h", 0.0), hyp.get("hsv_s", 0.0),
                                hyp.get("hsv_v", 0.0), rng)
            img, labels = A.flips(img, labels, hyp.get("flipud", 0.0), hyp.get("fliplr", 0.0),
                                  rng)
        h, w = img.shape[:2]
        return img, A.xyxy_to_xywhn(labels, w, h)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, labels = self.sample(i, self.epoch)
        out = np.zeros((len(labels), 6), np.float32)
        out[:, 1:] = labels
        return (torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
                torch.from_numpy(out))


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images; concatenate labels with column 0 = the image's index in the batch."""
    imgs, labels = zip(*batch)
    for k, lab in enumerate(labels):
        lab[:, 0] = k
    return torch.stack(imgs, 0), torch.cat(labels, 0)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and warp images; leave the cores to the model


def make_loader(ds: TrainDataset, batch: int, *, workers: int = 0, rank: int = 0,
                world: int = 1, seed: int = 0, pin_memory: bool = False
                ) -> tuple[DataLoader, DistributedSampler]:
    """A loader over this rank's share (``batch`` images per rank per step); call
    ``sampler.set_epoch(e)`` and ``ds.set_epoch(e)`` before each epoch."""
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=False)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                        collate_fn=collate, pin_memory=pin_memory, drop_last=False,
                        worker_init_fn=_worker_init if workers else None,
                        persistent_workers=False)
    return loader, sampler
