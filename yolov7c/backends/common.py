"""Helpers every backend needs: the Detect head and its stride, the image-size rule, a
deterministic example input, and the flat output wrapper backends trace.

They live apart from any one backend so ONNX and TVM share them without importing each other.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from ..errors import UserError
from ..ir.analysis import valid_sizes

if TYPE_CHECKING:
    from ..ir.graph import Graph

INPUT_NAME = "images"


def detect_module(model: nn.Module, required: bool = True) -> nn.Module | None:
    """The model's detection head: the last module with a ``stride`` tensor and an
    ``anchor_grid`` (Detect/IDetect/IAuxDetect, also inside a traced deploy graph or a DDP
    wrapper). The one head finder of backends, predictors and the training loss. Without a
    head: a one-line UserError, or None when not ``required``."""
    heads = [m for m in model.modules()
             if hasattr(m, "anchor_grid") and isinstance(getattr(m, "stride", None), torch.Tensor)]
    if heads:
        return heads[-1]
    if not required:
        return None
    raise UserError(f"{type(model).__name__}: no Detect/IDetect/IAuxDetect head found; a YOLO "
                    "model ends its graph with b.detect(...)", arg="model")


def max_stride(model: nn.Module) -> int:
    """The largest output stride, from the Detect head's ``stride`` buffer."""
    return int(detect_module(model).stride.max().item())


def check_img_size(model: nn.Module, img: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from ``img``; both must be positive multiples of the model's max stride (the
    head's grids would not line up otherwise). The hint names valid sizes only."""
    try:
        hw = (int(img), int(img)) if isinstance(img, (int, float)) else (int(img[0]), int(img[-1]))
    except (TypeError, ValueError, IndexError):
        raise UserError(f"img {img!r}: give an image size in pixels (an integer, or [h, w])",
                        arg="img") from None
    s = max_stride(model)
    for v in hw:
        if v <= 0 or v % s:
            lo, hi = valid_sizes(v, s)
            raise UserError(f"img {v}: must be a positive multiple of the model's max stride "
                            f"{s}; use {lo} or {hi}", arg="img")
    return hw


def example_input(model: nn.Module, img: int | Sequence[int], batch: int = 1,
                  seed: int = 0) -> torch.Tensor:
    """A deterministic random image batch in [0, 1), (B, 3, H, W) fp32."""
    h, w = check_img_size(model, img)
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, h, w, generator=g)


class Outputs(nn.Module):
    """Flattens a YOLO model's eval output ``(decoded, [raw...])`` into a tuple of tensors.

    Backends need a flat, fixed list of outputs: ``decoded`` always, the per-level raw heads
    only when asked (they make numerical comparisons sharper than the sigmoid-squashed
    decoded tensor).
    """

    def __init__(self, model: nn.Module, raw: bool = False) -> None:
        super().__init__()
        self.model = model
        self.raw = raw

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            return (out,)
        decoded, raws = out[0], out[1]
        return (decoded, *raws) if self.raw else (decoded,)


def output_names(model: nn.Module, raw: bool = False) -> list[str]:
    """Names matching :class:`Outputs`: ``output`` then ``raw0..rawN``."""
    return ["output"] + ([f"raw{i}" for i in range(detect_module(model).nl)] if raw else [])


def prepare(model: nn.Module) -> nn.Module:
    """Eval mode, no grads: what every backend traces."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def all_finite(t: torch.Tensor) -> bool:
    """True when a tensor holds no NaN or infinity. The float64 sum is finite exactly then
    (NaN and ±inf propagate, float64 cannot overflow on weights) and is ~50x faster than
    ``isfinite(t).all()`` on a loaded machine; the exact test runs only to confirm a miss."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.sum(dtype=torch.float64))) or bool(torch.isfinite(t).all())


def params_of(graph: "Graph") -> int:
    """The parameter count a graph declares (no tensor is built). Parameters do not depend on
    the image size; analysis needs one its strides divide, so take a multiple of the largest."""
    from ..ir.analysis import analyze
    s = max(graph.strides or (32,))
    return int(analyze(graph, s * max(1, 640 // s)).params)
