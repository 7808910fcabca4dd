"""Deterministic, meaningful random weights for models that come without weights.

Default initialisation makes every BatchNorm an identity (μ = 0, σ² = 1, γ = 1, β = 0) and
every implicit vector nearly trivial, so folding them could be wrong and still "pass". We set
BN statistics from one batch (each layer sees unit-scale activations, so a deep net does not
collapse to its biases) after drawing γ and β at random, and draw the implicit vectors.
β is centred on 1, not 0: with β ≈ 0 a random BN network is chaotic (each layer amplifies
perturbations ~1.1×, so fp32 rounding alone reaches 1e-3 after E6's ~140 layers), which a
trained network is not; the shift keeps the check sensitive to folding errors, not to chaos.

The public API gives every weightless model source (zoo name, DSL file, YAML cfg, Graph) its
weights through this one function, so two verbs on the same source see the same weights.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import modules as M


@torch.no_grad()
def randomize_weights(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, γ, β and implicit vectors (in place); returns ``model``.

    ``x`` is the batch whose activations set the BN statistics (use ≥ 2 images). Conv
    weights keep whatever they hold: seed torch (``torch.manual_seed``) before building the
    model when they must be reproducible too."""
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


__all__ = ["randomize_weights"]
