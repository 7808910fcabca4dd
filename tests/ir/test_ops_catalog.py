"""The op catalog is the one source of truth for attributes and their defaults: unknown or
missing attributes are errors naming the node, every reader (lowering, DSL, IR deploy
rewrites, scaling) takes defaults from it, and no module of ours restates one."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch import nn

import yolov7c
from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.lower import FACTORIES, lower
from yolov7c.errors import UserError
from yolov7c.ir import ops
from yolov7c.ir.deploy import fuse_repconv
from yolov7c.ir.dsl import Builder
from yolov7c.ir.graph import Graph, Node

PACKAGE = Path(yolov7c.__file__).parent


def _graph(op: str, **attrs: object) -> Graph:
    b = Builder("g")
    x = b.add(op, [b.conv(b.input, 8, 3, 2)], "x", **attrs)
    b.detect([x], nc=1, anchors=[[10, 13, 16, 30]], kind="Detect")
    return b.build()


def test_unknown_attribute_names_the_node_and_the_schema() -> None:
    with pytest.raises(UserError, match=r"node 1 \(x, Conv\): unknown attribute 'kk'; Conv "
                                         r"takes c, k, s, g, act, bn, bias"):
        _graph("Conv", c=8, kk=3)


def test_missing_required_attribute_names_the_node() -> None:
    with pytest.raises(UserError, match=r"node 1 \(x, RepConv\): missing attribute 'c'"):
        _graph("RepConv", k=3)


def test_lowering_fills_defaults_from_the_catalog() -> None:
    """Nodes that give only the required attributes get the catalog's defaults."""
    conv = lower(_graph("Conv", c=8)).model[1]
    spec = ops.get("Conv")
    assert conv.conv.kernel_size == (spec.default("k"),) * 2 == (1, 1)
    assert isinstance(conv.bn, nn.BatchNorm2d) and isinstance(conv.act, nn.SiLU)
    rep = lower(_graph("RepConv", c=8)).model[1]
    assert rep.rbr_dense[0].kernel_size == (3, 3) and rep.rbr_identity is not None
    mp = lower(_graph("MP")).model[1]
    assert mp.m.kernel_size == ops.get("MP").default("k")


def test_ir_rewrites_read_defaults_from_the_catalog() -> None:
    """A RepConv given no kernel fuses into a conv with the RepConv default (3), not Conv's."""
    g = fuse_repconv(_graph("RepConv", c=8))
    assert g[1].op == "Conv" and g[1].attrs["k"] == 3 and g[1].attrs["bias"] is True


def test_every_catalog_op_with_a_module_builds_from_complete_attrs() -> None:
    """Every op (but the symbolic-only ElanChain) has a torch factory; module constructor
    defaults equal the catalog's."""
    assert set(ops.CATALOG) - set(FACTORIES) == {"ElanChain"}
    c = M.Conv(4, 4)
    assert (c.conv.kernel_size[0], c.conv.stride[0], c.conv.groups) == tuple(
        ops.get("Conv").default(k) for k in ("k", "s", "g"))
    assert M.RepConv(4, 4).rbr_dense[0].kernel_size[0] == ops.get("RepConv").default("k")


# The files that must not restate an attribute default (``attrs.get("k", 1)``) or an op's
# arity: everything of ours that reads IR attributes, except the catalog itself and the YAML
# importer (another owner's, pending its own change).
READERS = ["ir/dsl.py", "ir/blocks.py", "ir/deploy.py", "ir/scaling.py", "ir/analysis.py",
           "ir/graph.py", "ir/emit_dsl.py", "ir/budget.py", "backends/torch/lower.py",
           "backends/torch/modules.py", *[f"passes/{p.name}" for p in (PACKAGE / "passes")
                                          .glob("*.py")], *[f"report/{p.name}" for p in
                                                             (PACKAGE / "report").glob("*.py")]]


@pytest.mark.parametrize("path", READERS)
def test_no_module_restates_an_attribute_default(path: str) -> None:
    text = (PACKAGE / path).read_text()
    hits = re.findall(r"attrs\.get\([^)]*,[^)]*\)|setdefault\(\"[a-z]+\"", text)
    assert not hits, f"{path}: {hits} — read defaults with ops.get(op).attr(attrs, name)"


def test_node_attrs_round_trip_through_complete() -> None:
    n = Node(0, "c", "Conv", (-1,), {"c": 4, "k": 3})
    full = ops.get("Conv").complete(n.attrs)
    assert full == {"c": 4, "k": 3, "s": 1, "g": 1, "act": "silu", "bn": True, "bias": False}


@pytest.mark.parametrize("op,attrs,match", [
    ("Conv", {"c": 8, "k": -3}, r"attribute k=-3 must be an integer in \[1, 63\]"),
    ("Conv", {"c": 8, "k": 2.5}, r"attribute k=2.5 must be an integer"),
    ("Conv", {"c": 8, "k": 100001}, r"attribute k=100001 must be an integer"),
    ("Conv", {"c": 8, "s": 0}, r"attribute s=0 must be an integer in \[1, 16\]"),
    ("Conv", {"c": 8, "bn": 1}, r"attribute bn=1 must be true or false"),
    ("SPPCSPC", {"c": 8, "k": (5, -9)}, r"attribute k=\(5, -9\) must be an integer"),
    ("Upsample", {"scale": 0}, r"attribute scale=0 must be an integer"),
])
def test_attribute_values_are_checked_by_the_catalog(op: str, attrs: dict, match: str) -> None:
    """Value rules live in the catalog too: the DSL, YAML and checkpoint readers share them."""
    with pytest.raises(UserError, match=r"node 1 \(x, " + op + r"\): " + match):
        _graph(op, **attrs)
