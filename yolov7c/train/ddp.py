"""Multi-process training on torch.distributed: torchrun's environment (RANK, LOCAL_RANK,
WORLD_SIZE; no ``--local_rank`` argument), the process group (NCCL on GPUs, gloo on CPU),
DistributedDataParallel, SyncBN, and the "rank 0 writes, the others wait" rule.

torch's ``nn.SyncBatchNorm`` refuses CPU tensors, so on CPU (gloo) BatchNorm layers become
``SyncBatchNorm2d`` below: the same statistics from two differentiable all-reduces.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def env() -> DistEnv:
    """This process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))


def setup(e: DistEnv, device: torch.device) -> None:
    """Join the process group (idempotent); NCCL for CUDA devices, gloo otherwise."""
    if not e.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def device_for(requested: str | None, e: DistEnv) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or None (CUDA if available); under torchrun each
    process takes the GPU of its LOCAL_RANK."""
    from ..errors import UserError
    want = (requested or ("cuda" if torch.cuda.is_available() else "cpu")).lower()
    if want == "cpu":
        return torch.device("cpu")
    if not want.startswith("cuda") and not want.isdigit():
        raise UserError(f"device {requested!r}: expected cpu, cuda or cuda:N", arg="device")
    if not torch.cuda.is_available():
        raise UserError(f"device {requested!r}: CUDA is not available here; use device='cpu'",
                        arg="device")
    if e.distributed:
        return torch.device("cuda", e.local_rank)
    idx = want.split(":")[-1] if ":" in want else (want if want.isdigit() else "0")
    return torch.device("cuda", int(idx))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (a no-op outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on every rank (e.g. "my loss is finite"), so all ranks stop
    together instead of hanging in the next collective."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() == 0)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Σ over ranks, differentiable: the gradient of a sum over ranks is the sum over ranks
    of the gradients (each rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        dist.all_reduce(g)
        return g


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose batch statistics cover the whole global batch (every rank).

    mean = Σx / N and var = Σ(x − mean)² / N over all ranks, by two all-reduces that carry
    gradients (``_AllReduceSum``), so the backward pass is exact too.
    Running stats use the unbiased variance N/(N−1)·var, like ``nn.BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        sums = torch.cat((x.sum((0, 2, 3)), count))
        sums = _AllReduceSum.apply(sums)
        n = sums[-1]
        mean = sums[:c] / n
        sq = _AllReduceSum.apply(((x - mean.view(1, c, 1, 1)) ** 2).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else (
                    1.0 / float(self.num_batches_tracked))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(sq.detach() * n / (n - 1), alpha=m)
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(sq.view(1, c, 1, 1) + self.eps)
        return y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm → torch's SyncBatchNorm on CUDA, ``SyncBatchNorm2d`` elsewhere (in place;
    the parameter and buffer objects are kept, so the optimizer and state_dict keys still
    refer to them)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            # the same Parameter and buffer objects: an optimizer built before keeps working
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            setattr(model, name, new)
        else:
            convert_sync_bn(child, device)
    return model


def wrap(model: nn.Module, e: DistEnv, device: torch.device, sync_bn: bool = True
         ) -> nn.Module:
    """DDP-wrap ``model`` for a distributed run (SyncBN first when asked); as is otherwise."""
    if not e.distributed:
        return model
    if sync_bn:
        model = convert_sync_bn(model, device)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=(
        ids[0] if ids else None))

