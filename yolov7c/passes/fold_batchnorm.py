"""fold-bn: ``conv → BatchNorm`` becomes one conv with bias (inference statistics).

Matches any ``_ConvNd`` (not transposed) whose only reader is a ``_BatchNorm`` call with
running statistics, in any model: the pattern is structural, so it works on user networks as
well as ours. The algebra is torch's own ``fuse_conv_bn_weights``:
W' = W·γ/σ, b' = (b − μ)·γ/σ + β, σ = √(var + ε).
"""
from __future__ import annotations

import torch
from torch import fx
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils.fusion import fuse_conv_bn_weights

from . import _fx
from .base import Pass, PassResult


def foldable(bn: object) -> bool:
    """A BatchNorm whose eval-mode output is an affine map of its input (running stats)."""
    return (isinstance(bn, _BatchNorm) and bn.running_mean is not None
            and bn.running_var is not None)


def fold_weights(weight: torch.Tensor, bias: torch.Tensor | None,
                 bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of ``bn(conv(x))`` for a conv with ``weight``/``bias`` (None = no bias)."""
    w, b = fuse_conv_bn_weights(weight.detach(), None if bias is None else bias.detach(),
                                bn.running_mean, bn.running_var, bn.eps,
                                None if bn.weight is None else bn.weight.detach(),
                                None if bn.bias is None else bn.bias.detach())
    return w.detach(), b.detach()


def fold_conv_bn(conv: _ConvNd, bn: _BatchNorm) -> _ConvNd:
    """A new conv equal to ``bn(conv(x))`` in eval mode."""
    fused = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, bias=True,
                       padding_mode=conv.padding_mode)
    w, b = fold_weights(conv.weight, conv.bias, bn)
    with torch.no_grad():
        fused.weight.copy_(w)
        fused.bias.copy_(b)
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
        if not foldable(bn) or sites[str(bn_node.target)] != 1:
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

__all__ = ["PASS", "fold_bn", "fold_conv_bn", "fold_weights", "foldable"]
