"""One predictor interface over every backend: float32 (B, 3, H, W) in [0, 1] → the decoded
head output (B, N, 5 + nc) as a torch tensor.

``fixed_shape`` is the (H, W) a backend was built for (None: any multiple of ``stride``);
``max_batch`` is 1 for backends that run image by image (TVM libraries are compiled for one
input shape, batch 1 included), None when any batch size works.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..backends.common import detect_module
from ..errors import UserError, one_line

log = logging.getLogger(__name__)


@runtime_checkable
class Predictor(Protocol):
    name: str
    fixed_shape: tuple[int, int] | None
    max_batch: int | None
    stride: int

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


def _decoded(out) -> torch.Tensor:
    """The decoded tensor from a model's eval output ``(decoded, raw)`` or ``decoded``."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


class TorchPredictor:
    """A PyTorch module (training form, run in eval mode, or a deploy GraphModule). The
    module's train/eval flag is restored after each call, so a trainer can evaluate its live
    model; inputs are cast to the module's dtype (fp16 models work)."""

    def __init__(self, module: nn.Module, device: str = "cpu", name: str = "torch") -> None:
        self.module = module.to(device)
        self.device = device
        self.name = name
        self.fixed_shape: tuple[int, int] | None = None
        self.max_batch: int | None = None
        head = detect_module(module, required=False)
        self.stride = int(head.stride.max()) if head is not None else 32
        self.nc = int(head.nc) if head is not None else None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        p = next(self.module.parameters(), None)
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        was = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                out = self.module(batch.to(self.device, dtype))
        finally:
            self.module.train(was)
        return _decoded(out).float().cpu()


class OnnxPredictor:
    """An exported ONNX file run by onnxruntime (CPU); batched when the batch axis is dynamic."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        from ..backends.onnx import ort_session
        p = Path(path)
        if not p.is_file():
            raise UserError(f"model {p}: no such ONNX file", arg="model")
        try:
            self.session = ort_session(p, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own error types
            raise UserError(f"model {p}: onnxruntime cannot load it "
                            f"({one_line(e, 160)})", arg="model") from None
        inp = self.session.get_inputs()[0]
        outs = self.session.get_outputs()
        if outs[0].name == "detections" or len(outs[0].shape) != 3:
            raise UserError(f"model {p}: exported with NMS inside (output {outs[0].name} "
                            f"{outs[0].shape}); evaluation needs the decoded output: export "
                            "again without NMS", arg="model")
        self.input_name = inp.name
        self.name = "onnxruntime"
        b, _, h, w = inp.shape
        self.max_batch = None if not isinstance(b, int) else b
        self.fixed_shape = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.stride = 32
        self.path = str(p)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch, np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])


class TvmPredictor:
    """A TVM library from ``yolov7c compile``: one fixed input shape, run image by image."""

    def __init__(self, path: str | os.PathLike) -> None:
        from ..backends import tvm as tvm_backend
        p = Path(path)
        try:
            self.runner = tvm_backend.load(p)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a shared library that is no TVM library
            raise UserError(f"model {p}: not a library from `yolov7c compile` ({type(e).__name__}: "
                            f"{one_line(str(e), 120)}); recompile it", arg="model") from None
        shape = self.runner.input_shape
        if len(shape) != 4:
            raise UserError(f"model {p}: no input shape in {p}.json (the sidecar `yolov7c "
                            "compile` writes); recompile the library", arg="model")
        self.name = "tvm"
        self.fixed_shape = (int(shape[2]), int(shape[3]))
        self.max_batch = int(shape[0])
        self.stride = 32
        self.path = str(p)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch, np.float32)
        outs = [self.runner(x[i:i + self.max_batch])[0] for i in range(0, len(x), self.max_batch)]
        return torch.from_numpy(np.concatenate(outs, 0))
