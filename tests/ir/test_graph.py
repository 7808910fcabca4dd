"""IR validation and the DSL: channels inferred, errors name the node and the fix."""
from __future__ import annotations

import pytest

from yolov7c.errors import UserError
from yolov7c.ir.analysis import analyze
from yolov7c.ir.blocks import elan, elan_taps
from yolov7c.ir.dsl import Builder
from yolov7c.ir.graph import GRAPH_INPUT, Graph, Node

ANCHORS = ((10, 13, 16, 30, 33, 23),)


def tiny_graph(**override) -> list[Node]:
    nodes = [Node(0, "stem", "Conv", (GRAPH_INPUT,), {"c": 16, "k": 3, "s": 2}),
             Node(1, "a", "Conv", (0,), {"c": 8}),
             Node(2, "b", "Conv", (0,), {"c": 8}),
             Node(3, "cat", "Concat", (1, 2), {"dim": 1}),
             Node(4, "det", "Detect", (3,), {"nc": 2, "anchors": ANCHORS})]
    for i, node in override.items():
        nodes[int(i[1:])] = node
    return nodes


def test_concat_width_is_inferred_sum() -> None:
    g = Graph("t", tiny_graph())
    assert g.c_out(3) == 16 and g.stride(3) == 2 and g.strides == (2,)


def test_elan_taps_follow_the_official_patterns() -> None:
    assert elan_taps(4, 2) == [4, 2, 0]          # yolov7 backbone: concat [-1,-3,-5,-6]
    assert elan_taps(6, 2) == [6, 4, 2, 0]       # E6 / yolov7x: [-1,-3,-5,-7,-8]
    assert elan_taps(4, 1) == [4, 3, 2, 1, 0]    # neck: [-1..-6]


def test_dsl_elan_block_records_roles_and_widths() -> None:
    b = Builder("toy")
    y = elan(b.conv(b.input, 32, 3, 2), c=16, convs=4, out=48, c3=8, step=1)
    b.detect([y], nc=1, anchors=ANCHORS, kind="Detect")
    g = b.build()
    cat = next(n for n in g.nodes if n.op == "Concat")
    assert g.c_out(cat.index) == 2 * 16 + 4 * 8  # two 1×1 branches + four tapped 3×3s
    assert g.c_out(y.index) == 48
    assert g[y.index].role == "transition" and cat.role == "computational"
    assert g.blocks["elan"].args["convs"] == 4


@pytest.mark.parametrize("case,match", [
    ("unknown_op", r"node 1 \(a, Bogus\): unknown op 'Bogus'"),
    ("out_of_range", r"node 3 \(cat, Concat\): input 9 is out of range"),
    ("shortcut", r"node 3 \(cat, Shortcut\): inputs have 8 and 4 channels"),
    ("cycle", r"cycle through nodes"),
    ("zero_width", r"node 1 \(a, Conv\): width c=0 must be positive"),
    ("negative_width", r"node 1 \(a, Conv\): width c=-8 must be positive"),
    ("concat_strides", r"node 3 \(cat, Concat\): inputs have different strides"),
])
def test_bad_graphs_give_one_line_errors(case: str, match: str) -> None:
    nodes = {
        "unknown_op": tiny_graph(n1=Node(1, "a", "Bogus", (0,), {})),
        "out_of_range": tiny_graph(n3=Node(3, "cat", "Concat", (1, 9), {})),
        "shortcut": tiny_graph(n2=Node(2, "b", "Conv", (0,), {"c": 4}),
                               n3=Node(3, "cat", "Shortcut", (1, 2), {})),
        "cycle": tiny_graph(n1=Node(1, "a", "Conv", (2,), {"c": 8}),
                            n2=Node(2, "b", "Conv", (1,), {"c": 8})),
        "zero_width": tiny_graph(n1=Node(1, "a", "Conv", (0,), {"c": 0})),
        "negative_width": tiny_graph(n1=Node(1, "a", "Conv", (0,), {"c": -8})),
        "concat_strides": tiny_graph(n2=Node(2, "b", "Conv", (0,), {"c": 8, "s": 2})),
    }[case]
    with pytest.raises(UserError, match=match) as e:
        Graph("t", nodes)
    assert "\n" not in str(e.value)


def test_dsl_errors_name_the_node() -> None:
    b = Builder("toy")
    x = b.conv(b.input, 8)
    y = b.conv(b.input, 4)
    with pytest.raises(UserError, match=r"node 2 \(shortcut, Shortcut\): inputs have 8 and 4"):
        b.shortcut(x, y)


def test_img_must_be_a_multiple_of_the_max_stride() -> None:
    g = Graph("t", tiny_graph())
    with pytest.raises(UserError, match="largest stride 2"):
        analyze(g, 33)


def test_analysis_is_symbolic_in_img() -> None:
    import sympy
    img = sympy.Symbol("img", positive=True, integer=True)
    g = Graph("t", tiny_graph())
    expr = analyze(g, img).flops("macs2")
    # stem: (img/2)²·16·3·9 ; 1×1s: 2·(img/2)²·8·16 ; head: (img/2)²·21·16
    assert sympy.simplify(expr - 2 * (img / 2) ** 2 * (16 * 27 + 2 * 8 * 16 + 21 * 16)) == 0
    assert expr.subs(img, 64) == analyze(g, 64).flops("macs2")
