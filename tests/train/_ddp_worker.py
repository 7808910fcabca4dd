"""One process of the DDP exactness test, launched like torchrun (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the environment). Runs the shared one-step setup
with SyncBN and without it; rank 0 writes both weight sets. Not collected by pytest."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _ddp_setup import one_step  # noqa: E402

from yolov7c.train import ddp  # noqa: E402


def main() -> None:
    data, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    rank = os.environ["RANK"]
    result = {}
    for sync_bn in (True, False):
        result[f"sync_bn={sync_bn}"] = one_step(data, out.parent / f"run{rank}{sync_bn}",
                                                sync_bn)
    if rank == "0":
        torch.save(result, out)
    ddp.cleanup()


if __name__ == "__main__":
    main()
