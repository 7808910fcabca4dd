"""fuse-repconv: a sum of parallel linear branches on one input becomes one conv.

RepVGG / RepConv structure, matched by shape, not by module type: an ``add`` tree whose every
leaf reads the same tensor ``x`` through ``BN(conv_k×k(x))``, ``conv(x)`` or ``BN(x)`` (the
identity branch). RepConv (3×3+BN, 1×1+BN, identity BN), RepConvN (no identity) and a user's
own RepVGG block all match; after fold-bn the branches are plain convs and still match.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import _fx
from .base import Pass, PassResult
from .fold_batchnorm import fold_weights, foldable

Branch = tuple[list[fx.Node], nn.Conv2d | None, nn.BatchNorm2d | None]  # nodes, conv, bn


def _leaves(root: fx.Node) -> tuple[list[fx.Node], list[fx.Node]]:
    """(add nodes, leaf operands) of the add tree at ``root``; inner adds must have one user."""
    adds, leaves, todo = [root], [], list(root.args)
    while todo:
        a = todo.pop(0)
        if isinstance(a, fx.Node) and _fx.is_add(a) and len(a.users) == 1:
            adds.append(a)
            todo.extend(a.args)
        else:
            leaves.append(a)
    return adds, leaves


def _branch(gm: fx.GraphModule, leaf: object, sites: dict[str, int]) -> tuple[fx.Node, Branch] | None:
    """(input, branch) for a leaf of form conv(x), BN(conv(x)) or BN(x); None otherwise."""
    if not isinstance(leaf, fx.Node) or len(leaf.users) != 1 or leaf.op != "call_module":
        return None
    if sites[str(leaf.target)] != 1 or len(leaf.args) != 1 or leaf.kwargs:
        return None
    m, src = _fx.module(gm, leaf), leaf.args[0]
    if isinstance(m, nn.Conv2d):
        return src, ([leaf], m, None)
    if not isinstance(m, nn.BatchNorm2d) or not foldable(m) or not isinstance(src, fx.Node):
        return None
    inner = _fx.module(gm, src)
    if (isinstance(inner, nn.Conv2d) and len(src.users) == 1 and sites[str(src.target)] == 1
            and len(src.args) == 1):
        return src.args[0], ([leaf, src], inner, m)
    return src, ([leaf], None, m)


def _fusable(convs: list[nn.Conv2d], identity: bool, channels: int) -> bool:
    """Same output geometry for every branch: stride, groups, channels, 'same' padding."""
    c0 = convs[0]
    for c in convs:
        if (c.stride != c0.stride or c.groups != c0.groups or c.out_channels != c0.out_channels
                or c.dilation != (1, 1) or c.padding_mode != "zeros"
                or any(k % 2 == 0 or p != k // 2 for k, p in zip(c.kernel_size, c.padding))):
            return False
    return not identity or (c0.stride == (1, 1) and c0.out_channels == channels)


def _kernel(conv: nn.Conv2d | None, bn: nn.BatchNorm2d | None, like: nn.Conv2d,
            k: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One branch as a k×k kernel and bias."""
    if conv is None:  # identity: W[c, c mod (C/g), centre] = 1
        w = torch.zeros(like.out_channels, like.in_channels // like.groups, *k)
        idx = torch.arange(like.out_channels)
        w[idx, idx % (like.in_channels // like.groups), k[0] // 2, k[1] // 2] = 1.0
        b = torch.zeros(like.out_channels)
    else:  # centre the smaller kernel: zero-pad (k − k_i)/2 on each side
        ph, pw = (k[0] - conv.kernel_size[0]) // 2, (k[1] - conv.kernel_size[1]) // 2
        w = F.pad(conv.weight.detach(), (pw, pw, ph, ph))
        b = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
    if bn is not None:  # W' = W·γ/σ, b' = (b − μ)·γ/σ + β (torch's fuse_conv_bn_weights)
        w, b = fold_weights(w.to(bn.running_mean), b.to(bn.running_mean), bn)
    return w.to(like.weight), b.to(like.weight)


def _fuse_at(gm: fx.GraphModule, root: fx.Node, sites: dict[str, int]) -> str | None:
    adds, leaves = _leaves(root)
    found = [_branch(gm, leaf, sites) for leaf in leaves]
    if len(found) < 2 or any(f is None for f in found) or len({f[0] for f in found}) != 1:
        return None
    x = found[0][0]
    branches = [f[1] for f in found]
    convs = [c for _, c, _ in branches if c is not None]
    identity = any(c is None for _, c, _ in branches)
    if not convs or not _fusable(convs, identity, convs[0].in_channels):
        return None
    like = convs[0]
    k = (max(c.kernel_size[0] for c in convs), max(c.kernel_size[1] for c in convs))
    parts = [_kernel(c, bn, like, k) for _, c, bn in branches]
    fused = nn.Conv2d(like.in_channels, like.out_channels, k, like.stride,
                      (k[0] // 2, k[1] // 2), groups=like.groups, bias=True)
    with torch.no_grad():  # W = Σ W_i (padded to k×k), b = Σ b_i — the branches are linear
        fused.weight.copy_(sum(w for w, _ in parts))
        fused.bias.copy_(sum(b for _, b in parts))
    names = [str(n.target) for nodes, _, _ in branches for n in nodes]
    prefix = _common_prefix(names)
    target = _fx.unique_target(gm, f"{prefix}.rbr_reparam" if prefix else "rbr_reparam")
    gm.add_submodule(target, fused.to(like.weight.device))
    with gm.graph.inserting_before(root):
        new = gm.graph.call_module(target, (x,))
    root.replace_all_uses_with(new)
    for n in adds + [n for nodes, _, _ in branches for n in nodes]:
        gm.graph.erase_node(n)
    return f"{len(branches)} branches ({', '.join(names)}) fused into {target}"


def _common_prefix(names: list[str]) -> str:
    """Longest dotted module path that contains every name (the block being fused)."""
    parts = [n.split(".")[:-1] for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def fuse_repconv(gm: fx.GraphModule) -> PassResult:
    """Fuse every parallel-branch sum whose branches are all linear in the same input."""
    sites = _fx.call_sites(gm)
    changes = []
    for node in list(gm.graph.nodes):
        if not _fx.is_add(node):
            continue
        if len(node.users) == 1 and _fx.is_add(next(iter(node.users))):
            continue  # an inner add: handled from the root of its tree
        change = _fuse_at(gm, node, sites)
        if change:
            changes.append(change)
    return PassResult(_fx.finish(gm), bool(changes), tuple(changes))


PASS = Pass("fuse-repconv", "outputs in eval mode (parallel conv/BN branches summed into one "
            "conv)", fuse_repconv)
