"""The deploy step list is one table: the IR deploy form, the fx pipeline and the report's
training-vs-deploy walk all read ``ir.deploy.DEPLOY_STEPS``. Each IR step is checked
before/expected on a tiny hand-built graph."""
from __future__ import annotations

import yolov7c
from yolov7c.ir import deploy as ird
from yolov7c.ir.dsl import Builder
from yolov7c.ir.graph import Graph
from yolov7c.passes import PIPELINES
from yolov7c.report.compare import compare

ANCHORS = [[10, 13, 16, 30]]


def _before() -> Graph:
    """stem → RepConv → IAuxDetect(lead = RepConv, aux = a 1×1 only the aux head reads)."""
    b = Builder("tiny")
    x = b.conv(b.input, 8, 3, 2, name="stem")
    lead = b.repconv(x, 8, name="lead")
    aux = b.conv(x, 8, 1, name="aux")
    b.detect([lead, aux], nc=1, anchors=ANCHORS, kind="IAuxDetect", name="head")
    return b.build()


def _expected(head: str, fused: bool, aux: bool) -> Graph:
    b = Builder("tiny")
    x = b.conv(b.input, 8, 3, 2, name="stem")
    lead = b.repconv(x, 8, name="lead")
    ins = [lead, b.conv(x, 8, 1, name="aux")] if aux else [lead]
    b.detect(ins, nc=1, anchors=ANCHORS, kind=head, name="head")
    g = b.build()
    if fused:  # written out: the conv with bias a RepConv and a BN become
        nodes = [n.replace(attrs={**n.attrs, "bn": False, "bias": True}) if n.op == "Conv"
                 else n.replace(op="Conv", attrs={"c": 8, "k": 3, "s": 1, "act": "silu",
                                                  "bn": False, "bias": True})
                 if n.op == "RepConv" else n for n in g.nodes]
        g = g.replace_nodes(nodes)
    return g


def _key(g: Graph) -> list[tuple]:
    return [(n.index, n.name, n.op, n.inputs, dict(n.attrs)) for n in g.nodes]


def test_each_ir_step_before_expected() -> None:
    g = _before()
    detached = ird.DEPLOY_STEPS[0].rewrite(g)   # prune-aux rewires, keeps the aux conv ...
    assert _key(detached) == _key(_with_dead_aux())
    g = ird.apply_step("prune-aux", g)           # ... which the step's DCE removes
    assert _key(g) == _key(_expected("IDetect", False, aux=False))
    g = ird.apply_step("fold-implicit", g)
    assert _key(g) == _key(_expected("Detect", False, aux=False))
    g = ird.apply_step("fuse-repconv", g)
    g = ird.apply_step("fold-bn", g)
    assert _key(g) == _key(_expected("Detect", True, aux=False))
    assert _key(ird.to_deploy(_before())) == _key(g)
    assert ird.to_deploy(_before()).form == "deploy"


def _with_dead_aux() -> Graph:
    b = Builder("tiny")
    x = b.conv(b.input, 8, 3, 2, name="stem")
    lead = b.repconv(x, 8, name="lead")
    b.conv(x, 8, 1, name="aux")
    b.detect([lead], nc=1, anchors=ANCHORS, kind="IDetect", name="head")
    return b.build()


def test_one_step_table_for_ir_fx_and_report() -> None:
    names = [s.name for s in ird.DEPLOY_STEPS]
    assert list(PIPELINES["deploy"]) == names
    assert list(PIPELINES["fuse"]) == [s.name for s in ird.DEPLOY_STEPS if s.fused_only]
    c = compare(yolov7c.graph("yolov7-tiny"), 320)
    assert list(c.steps) == [s.label for s in ird.DEPLOY_STEPS]
    unfused = ird.to_deploy(yolov7c.graph("yolov7"), fuse=False)
    assert _key(unfused) == _key(ird.run_steps(yolov7c.graph("yolov7"),
                                               [s.name for s in ird.deploy_steps(False)]))
