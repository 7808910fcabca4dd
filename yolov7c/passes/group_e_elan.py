"""group-e-elan: two isomorphic conv branches on one input, summed → grouped convolutions.

The released E6E realises E-ELAN's cardinality 2 as two ELANs on the same input ``x`` whose
outputs are added (paper §3.1; ``ir.blocks.e_elan_sum``). Matched by structure, never by
index: an ``add`` of two units ``act?(conv1×1(cat_j))`` whose concats read two *branches*:
sets of ``act?(conv(·))`` units, read only inside their branch, that reach one shared
tensor ``x`` and are isomorphic (same geometry, activation and wiring, unit for unit).

- units reading ``x`` (cv1, cv2 of both branches): one conv, outputs concatenated
  (``[W¹; W²]·x = [W¹·x; W²·x]``, ``b = [b¹; b²]``);
- every other unit pair reads a pair ``[p¹; p²]``: one group conv, 2·g groups
  (``conv_g2([p¹; p²]; [W¹; W²]) = [W¹·p¹; W²·p²]``, ``b = [b¹; b²]``);
- transitions without activation (a linear sum): one dense 1×1 conv over the paired taps
  (``W¹·cat¹ + W²·cat² = [W¹ W²]·[cat¹; cat²]``, columns reordered to the new concat,
  ``b = b¹ + b²``: one bias vector where there were two);
- transitions with an activation (the released E6E: Conv = conv+BN+SiLU before the sum):
  ``act(W¹·cat¹ + b¹) + act(W²·cat²+ b²)`` is not a function of ``W¹·cat¹ + W²·cat²``, so
  the two become one 1×1 group conv (g = 2) over ``[cat¹; cat²]``, the activation, and the
  sum of its two halves (merge cardinality): parameters exactly unchanged.
Run after fold-bn (units are conv(+bias) → activation).
"""
from __future__ import annotations

import copy
import heapq
import operator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from . import _fx
from .base import Pass, PassResult
from .fuse_repconv import _common_prefix

ACTS = (nn.SiLU, nn.ReLU, nn.LeakyReLU, nn.Hardswish, nn.Sigmoid, nn.Mish, nn.GELU, nn.Tanh,
        nn.ReLU6, nn.Hardsigmoid)  # elementwise, parameter-free: act([a; b]) = [act a; act b]


@dataclass(frozen=True)
class Unit:
    """``act?(conv(src))``: its output node, its conv node/module and activation node."""

    out: fx.Node
    conv_node: fx.Node
    conv: nn.Conv2d
    act_node: fx.Node | None
    src: fx.Node

    @property
    def nodes(self) -> tuple[fx.Node, ...]:
        return (self.conv_node,) if self.act_node is None else (self.conv_node, self.act_node)

    def key(self) -> tuple[Any, ...]:
        c, a = self.conv, self.act_node
        act = None if a is None else repr(a.graph.owning_module.get_submodule(str(a.target)))
        return (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation,
                c.groups, c.bias is not None, c.padding_mode, act)


def _unit(gm: fx.GraphModule, t: Any, sites: dict[str, int]) -> Unit | None:
    if not isinstance(t, fx.Node) or t.op != "call_module" or len(t.args) != 1 or t.kwargs:
        return None
    act, conv_node = None, t
    if isinstance(_fx.module(gm, t), ACTS):
        act, conv_node = t, t.args[0]
        if not isinstance(conv_node, fx.Node) or len(conv_node.users) != 1:
            return None
    conv = _fx.module(gm, conv_node)
    if (type(conv) is not nn.Conv2d or sites[str(conv_node.target)] != 1
            or len(conv_node.args) != 1 or conv_node.kwargs
            or not isinstance(conv_node.args[0], fx.Node)):
        return None
    return Unit(t, conv_node, conv, act, conv_node.args[0])


def _cat_inputs(n: Any) -> list[fx.Node] | None:
    """The tensors of ``torch.cat([...], 1)``, else None."""
    if not (isinstance(n, fx.Node) and n.op == "call_function" and n.target is torch.cat):
        return None
    dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
    ts = n.args[0]
    return list(ts) if dim == 1 and all(isinstance(t, fx.Node) for t in ts) else None


def _branch(gm: fx.GraphModule, cat: fx.Node, sites: dict[str, int], pos: dict[fx.Node, int]
            ) -> tuple[fx.Node, list[Unit], list[int]] | None:
    """(x, units in canonical order, taps as unit numbers) of the branch feeding ``cat``.
    Latest node first, so every user inside the branch is owned before a tensor is judged."""
    taps = _cat_inputs(cat)
    if taps is None:
        return None
    owned, units, external = {cat}, {}, set()
    heap = [(-pos[t], t.name) for t in taps]
    by_name = {t.name: t for t in taps}
    heapq.heapify(heap)
    while heap:
        t = by_name[heapq.heappop(heap)[1]]
        if t in units or t in external:
            continue
        u = _unit(gm, t, sites)
        if u is not None and all(user in owned for user in t.users):
            units[t] = u
            owned.update(u.nodes)
            by_name[u.src.name] = u.src
            heapq.heappush(heap, (-pos[u.src], u.src.name))
        else:
            external.add(t)
    if len(external) != 1 or any(t not in units for t in taps):
        return None
    x, seq = external.pop(), []

    def visit(t: fx.Node) -> None:  # post-order: a unit after the unit it reads
        if t is not x and t not in seq:
            visit(units[t].src)
            seq.append(t)
    for t in taps:
        visit(t)
    return x, [units[t] for t in seq], [seq.index(t) for t in taps]


def _signature(x: fx.Node, units: list[Unit]) -> list[tuple[Any, ...]]:
    outs = [u.out for u in units]
    return [(u.key(), -1 if u.src is x else outs.index(u.src)) for u in units]


def _conv(like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, groups: int
          ) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], like.kernel_size, like.stride,
                     like.padding, like.dilation, groups, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv.to(like.weight.device)


def _cat_params(convs: list[nn.Conv2d], groups: int) -> nn.Conv2d:
    """Output-stacked weights: ``[W¹; W²; …]``, ``b = [b¹; b²; …]``."""
    w = torch.cat([c.weight.detach() for c in convs])
    b = None if convs[0].bias is None else torch.cat([c.bias.detach() for c in convs])
    return _conv(convs[0], w, b, groups)


class _Rewriter:
    """Emits the grouped form of one matched pair of branches, before the ``add``."""

    def __init__(self, gm: fx.GraphModule, base: str) -> None:
        self.gm, self.g, self.base, self.splits = gm, gm.graph, base, {}

    def module(self, name: str, m: nn.Module, arg: fx.Node, act: fx.Node | None) -> fx.Node:
        """``act?(m(arg))``, both registered in the grouped block (the act is stateless)."""
        y = self.g.call_module(self._add(name, m), (arg,))
        if act is None:
            return y
        return self.g.call_module(self._add(f"{name}_act", copy.deepcopy(
            self.gm.get_submodule(str(act.target)))), (y,))

    def _add(self, name: str, m: nn.Module) -> str:
        target = _fx.unique_target(self.gm, f"{self.base}.{name}")
        self.gm.add_submodule(target, m)
        return target

    def part(self, t: fx.Node, sizes: tuple[int, ...], k: int) -> fx.Node:
        """Piece ``k`` of ``t`` split along channels into ``sizes`` (one split per layout)."""
        if len(sizes) == 1:
            return t
        if (t, sizes) not in self.splits:
            s = self.g.call_function(torch.split, (t, list(sizes)), {"dim": 1})
            self.splits[(t, sizes)] = (s, {})
        s, got = self.splits[(t, sizes)]
        if k not in got:
            got[k] = self.g.call_function(operator.getitem, (s, k))
        return got[k]


def _rewrite(gm: fx.GraphModule, add: fx.Node, x: fx.Node, b1: list[Unit], b2: list[Unit],
             taps: list[int], t1: Unit, t2: Unit) -> str:
    names = [str(u.conv_node.target) for u in (*b1, *b2, t1, t2)]
    prefix = _common_prefix(names)
    r = _Rewriter(gm, _fx.unique_target(gm, f"{prefix}.grouped_e_elan" if prefix
                                        else "grouped_e_elan"))
    outs = [u.out for u in b1]
    readers = [i for i, u in enumerate(b1) if u.src is x]
    width = [u.conv.out_channels for u in b1]
    with gm.graph.inserting_before(add):
        by_geometry: dict[Any, list[int]] = {}
        for i in readers:
            by_geometry.setdefault(b1[i].key(), []).append(i)
        pair: dict[int, tuple[fx.Node, tuple[int, ...], int]] = {}  # i → (node, sizes, k)
        half: dict[int, tuple[fx.Node, tuple[int, ...], int]] = {}  # i → (node, sizes, k¹)
        pieces: list[tuple[fx.Node, list[int]]] = []  # (node, units whose pairs it holds)
        for n, idx in enumerate(by_geometry.values()):
            merged = r.module(f"x{n}", _cat_params([c for i in idx for c in (b1[i].conv,
                              b2[i].conv)], 1), x, b1[idx[0]].act_node)
            pieces.append((merged, idx))
            for k, i in enumerate(idx):
                pair[i] = (merged, tuple(2 * width[j] for j in idx), k)
                half[i] = (merged, tuple(width[j] for j in idx for _ in (1, 2)), 2 * k)
        for i, u in enumerate(b1):
            if i in pair:
                continue
            src = r.part(*pair[outs.index(u.src)])
            node = r.module(f"m{i}", _cat_params([u.conv, b2[i].conv], 2 * u.conv.groups),
                            src, u.act_node)
            pair[i], half[i] = (node, (2 * width[i],), 0), (node, (width[i],) * 2, 0)
        if t1.act_node is None:  # linear sum: W¹·cat¹ + W²·cat² = [W¹ W²]·[cat¹; cat²]
            pieces = [(pair[i][0], [i]) for i in dict.fromkeys(taps) if i not in readers
                      ] + pieces  # the new concat: paired chain taps, then whole x-convs
            offsets = [sum(width[j] for j in taps[:p]) for p in range(len(taps))]

            def cols(w: torch.Tensor, i: int) -> torch.Tensor:  # tapped twice: Σ, never: 0
                return sum((w[:, o:o + width[i]] for o, j in zip(offsets, taps) if j == i),
                           w.new_zeros(w.shape[0], width[i], *w.shape[2:]))
            w = torch.cat([cols(t.conv.weight.detach(), i) for _, idx in pieces for i in idx
                           for t in (t1, t2)], 1)
            b = None if t1.conv.bias is None else t1.conv.bias.detach() + t2.conv.bias.detach()
            q = gm.graph.call_function(torch.cat, ([n for n, _ in pieces], 1))
            out = r.module("transition", _conv(t1.conv, w, b, 1), q, None)
            how = "one 1×1 conv, biases summed"
        else:  # act(W¹·cat¹ + b¹) + act(W²·cat² + b²): group conv g=2 over [cat¹; cat²]
            h = [r.part(n, s, k + j) for j in (0, 1) for n, s, k in (half[i] for i in taps)]
            q = gm.graph.call_function(torch.cat, (h, 1))
            y = r.module("transition", _cat_params([t1.conv, t2.conv], 2), q, t1.act_node)
            c = t1.conv.out_channels
            out = gm.graph.call_function(operator.add, (r.part(y, (c, c), 0),
                                                        r.part(y, (c, c), 1)))
            how = "one 1×1 group conv (g=2), activation, sum of halves"
    add.replace_all_uses_with(out)
    old = [add, *t1.nodes, *t2.nodes, t1.src, t2.src, *(n for u in (*b1, *b2) for n in u.nodes)]
    pos = {n: i for i, n in enumerate(gm.graph.nodes)}
    for n in sorted(old, key=lambda n: -pos[n]):  # users before what they read
        gm.graph.erase_node(n)
    after = len(by_geometry) + len(b1) - len(readers) + 1
    return (f"{2 * len(b1) + 2} convs ({names[0]}, …) → {after} in {r.base}: transitions as "
            f"{how}")


def _match(gm: fx.GraphModule, add: fx.Node, sites: dict[str, int], pos: dict[fx.Node, int]
           ) -> tuple[Any, ...] | None:
    ts = [_unit(gm, a, sites) for a in add.args]
    if any(t is None or len(t.out.users) != 1 for t in ts) or ts[0].out is ts[1].out:
        return None
    t1, t2 = ts
    if (t1.key() != t2.key() or t1.conv.kernel_size != (1, 1) or t1.conv.groups != 1
            or t1.conv.stride != (1, 1) or t1.conv.padding != (0, 0)
            or any(len(t.src.users) != 1 for t in ts)):
        return None
    found = [_branch(gm, t.src, sites, pos) for t in ts]
    if any(f is None for f in found) or found[0][0] is not found[1][0]:
        return None
    (x, b1, taps1), (_, b2, taps2) = found
    if taps1 != taps2 or _signature(x, b1) != _signature(x, b2):
        return None
    if any(u.conv.groups != 1 for u in b1 if u.src is x):
        return None  # stacked outputs of a group conv would land in the wrong groups
    return x, b1, b2, taps1, t1, t2


def group_e_elan(gm: fx.GraphModule) -> PassResult:
    """Rewrite every summed pair of isomorphic conv branches on one input (E6E's E-ELAN)."""
    changes = []
    for add in list(gm.graph.nodes):
        if not _fx.is_add(add) or not all(isinstance(a, fx.Node) for a in add.args):
            continue
        pos = {n: i for i, n in enumerate(gm.graph.nodes)}
        if add not in pos:  # erased by an earlier rewrite
            continue
        m = _match(gm, add, _fx.call_sites(gm), pos)
        if m is not None:
            changes.append(_rewrite(gm, add, *m))
    return PassResult(_fx.finish(gm), bool(changes), tuple(changes))


PASS = Pass("group-e-elan", "outputs in eval mode (E6E's summed ELAN pairs become merged and "
            "group convolutions, g=2)", group_e_elan)
