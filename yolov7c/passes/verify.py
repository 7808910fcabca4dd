"""Numerical verification helpers: meaningful random weights, head outputs, error measures.

Default initialisation makes every BatchNorm an identity (μ = 0, σ² = 1, γ = 1, β = 0) and
every implicit vector nearly trivial, so folding them could be wrong and still "pass". We set
BN statistics from one batch (each layer sees unit-scale activations, so a deep net does not
collapse to its biases) after drawing γ and β at random, and draw the implicit vectors.
β is centred on 1, not 0: with β ≈ 0 a random BN network is chaotic (each layer amplifies
perturbations ~1.1×, so fp32 rounding alone reaches 1e-3 after E6's ~140 layers), which a
trained network is not; the shift keeps the check sensitive to folding errors, not to chaos.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..backends.torch import modules as M


@torch.no_grad()
def randomize(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, γ, β and implicit vectors (in place); returns ``model``."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        if bn.affine:
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)  # γ ∈ [0.5, 1.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.2 + 1)  # β ~ N(1, 0.2²)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch → running stats = batch stats
    was_training = model.training
    model.train()(x)  # statistics of what each BN really sees, with the γ, β above
    model.train(was_training)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    for m in model.modules():
        if isinstance(m, M.ImplicitA):
            m.implicit.copy_(torch.randn(m.implicit.shape, generator=g) * 0.5)
        elif isinstance(m, M.ImplicitM):
            m.implicit.copy_(torch.rand(m.implicit.shape, generator=g) + 0.5)
    return model


def head_outputs(out: Any) -> list[torch.Tensor]:
    """The raw head outputs of a YOLO eval output ``(decoded, [raw...])``; for any other
    model, every tensor in the output, flattened in order."""
    if (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor)
            and isinstance(out[1], (tuple, list))):
        return list(out[1])
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in head_outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in head_outputs(o)]
    return []


def errors(ref: list[torch.Tensor], got: list[torch.Tensor]) -> tuple[float, float]:
    """(max |got − ref|, that / max |ref|) over all outputs; inf when the structure differs."""
    if len(ref) != len(got) or any(r.shape != o.shape for r, o in zip(ref, got)):
        return float("inf"), float("inf")
    if not ref:
        return 0.0, 0.0
    err = max(float((o.float() - r.float()).abs().max()) for r, o in zip(ref, got))
    scale = max(float(r.float().abs().max()) for r in ref)
    return err, err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))


def example_input(model: nn.Module, img: int | None = None, batch: int = 1,
                  seed: int = 0) -> torch.Tensor:
    """A uniform [0, 1) image batch sized for ``model`` (img defaults to 4 × its max stride)."""
    graph = ir_graph(model)
    channels = graph.in_channels if graph is not None else 3
    if img is None:
        img = 4 * graph.max_stride if graph is not None else 128
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, img, img, generator=g)


def ir_graph(model: nn.Module) -> Any:
    """The IR graph behind a model we built (YoloModel.graph, or a passes-produced module's
    source graph), else None."""
    meta = getattr(model, "meta", None)
    if isinstance(meta, dict) and "yolov7c" in meta:
        return meta["yolov7c"]["graph"]
    graph = getattr(model, "graph", None)
    return graph if graph is not None and hasattr(graph, "max_stride") else None
