"""fold-implicit: IDetect (ImplicitA → 1×1 conv → ImplicitM per level) becomes Detect.

The implicit vectors are constants at inference, so they fold into each level's conv; the
head module is swapped for a plain ``Detect`` with the same anchors, classes and strides.
"""
from __future__ import annotations

import torch
from torch import fx

from ..backends.torch import modules as M
from . import _fx
from .base import Pass, PassResult


def fold_level(conv: torch.nn.Conv2d, a: torch.Tensor, m: torch.Tensor,
               into: torch.nn.Conv2d) -> None:
    """Write m·conv(x + a) into ``into`` (a conv without padding, so a is a constant shift).

    m·(W(x + a) + b) = (W·m) x + (b + W·a)·m  ⇒  W' = W·m, b' = (b + W·a)·m
    """
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0])
    a, m = a.detach().flatten(), m.detach().flatten()
    with torch.no_grad():
        into.weight.copy_(w * m.view(-1, 1, 1, 1))                # W' = W·m
        into.bias.copy_((b + w.sum(dim=(2, 3)) @ a) * m)          # b' = (b + W·a)·m


def fold_implicit(gm: fx.GraphModule) -> PassResult:
    """Replace every IDetect head (exactly IDetect: IAuxDetect is pruned first) by Detect."""
    changes = []
    for node in gm.graph.nodes:
        head = _fx.module(gm, node)
        if type(head) is not M.IDetect:
            continue
        if any(conv.padding != (0, 0) for conv in head.m):
            continue  # a constant before a padded conv is not a constant after it
        plain = _fx.new_head(M.Detect, head)
        for i in range(head.nl):
            fold_level(head.m[i], head.ia[i].implicit, head.im[i].implicit, plain.m[i])
        gm.add_submodule(str(node.target), plain)
        changes.append(f"{node.target}: IDetect → Detect ({head.nl} levels, implicit folded)")
    return PassResult(_fx.finish(gm), bool(changes), tuple(changes))


PASS = Pass("fold-implicit", "outputs (ImplicitA/ImplicitM folded into the head convs)",
            fold_implicit)
