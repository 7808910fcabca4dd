"""fold-bn: ``conv → BatchNorm`` becomes one conv with bias (inference statistics).

Matches any ``_ConvNd`` (not transposed) whose only reader is a ``_BatchNorm`` call, in any
model: the pattern is structural, so it works on user networks as well as ours.
"""
from __future__ import annotations

import torch
from torch import fx
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from . import _fx
from .base import Pass, PassResult


def bn_scale_shift(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (s, t) with BN(y) = s·y + t in eval mode.

    s = γ/σ, t = β − μ·γ/σ, σ = √(var + ε); γ = 1, β = 0 when the BN is not affine.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    sigma = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(sigma)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(sigma)
    s = gamma / sigma
    return s.detach(), (beta - bn.running_mean * s).detach()


def fold_conv_bn(conv: _ConvNd, bn: _BatchNorm) -> _ConvNd:
    """A new conv equal to ``bn(conv(x))``: W' = W·γ/σ, b' = (b − μ)·γ/σ + β."""
    s, t = bn_scale_shift(bn)
    fused = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, bias=True,
                       padding_mode=conv.padding_mode)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(s)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * s.view(shape))   # W' = W·s
        fused.bias.copy_(b * s + t)                       # b' = b·s + t
    return fused.to(conv.weight.device)


def _conv_feeding(gm: fx.GraphModule, bn_node: fx.Node, sites: dict[str, int]) -> fx.Node | None:
    """The conv node that is the BN's input, read by nothing else and called once."""
    src = bn_node.args[0] if bn_node.args else None
    if not isinstance(src, fx.Node) or len(src.users) != 1 or len(bn_node.args) != 1:
        return None
    conv = _fx.module(gm, src)
    if not isinstance(conv, _ConvNd) or conv.transposed or sites[str(src.target)] != 1:
        return None
    return src


def fold_bn(gm: fx.GraphModule) -> PassResult:
    """Fold every conv→BN pair; a conv read by more than the BN is left alone."""
    sites = _fx.call_sites(gm)
    changes = []
    for bn_node in list(gm.graph.nodes):
        bn = _fx.module(gm, bn_node)
        if not isinstance(bn, _BatchNorm) or sites[str(bn_node.target)] != 1:
            continue
        conv_node = _conv_feeding(gm, bn_node, sites)
        if conv_node is None:
            continue
        conv = _fx.module(gm, conv_node)
        gm.add_submodule(str(conv_node.target), fold_conv_bn(conv, bn))
        bn_node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(bn_node)
        changes.append(f"{bn_node.target} folded into {conv_node.target}")
    return PassResult(_fx.finish(gm), bool(changes), tuple(changes))


PASS = Pass("fold-bn", "outputs in eval mode (BN running statistics become conv weight/bias)",
            fold_bn)

__all__ = ["PASS", "bn_scale_shift", "fold_bn", "fold_conv_bn"]
