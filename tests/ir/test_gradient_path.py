"""Gradient-path positions (paper §4.1) on hand-built graphs, one per kind, and the
build-time lint for a RepConv identity on a residual or concatenation path."""
from __future__ import annotations

import warnings

import pytest

import yolov7c
from yolov7c.ir.dsl import Builder
from yolov7c.ir.gradient_path import PlannedReparamWarning, candidates, classify, positions

ANCHORS = [[10, 13, 16, 30]]


def _kinds(g: yolov7c.Graph) -> dict[str, str]:
    return {p.name: p.kind for p in positions(g).values()}


def test_plain_chain() -> None:
    b = Builder("plain")
    x = b.conv(b.input, 16, 3, 2, name="stem")          # stride 2: not a candidate
    x = b.conv(b.conv(x, 16, 3, name="a"), 16, 3, name="b")
    b.detect([x], 2, ANCHORS)
    g = b.build()
    assert _kinds(g) == {"a": "plain", "b": "plain"}
    assert classify(g, 1).merge is None


def test_residual_spans_the_first_conv_only() -> None:
    """x → a → b → add(x): a's input is added to the block output (residual); b's input is
    a's output, which reaches the add only through b (plain)."""
    b = Builder("res")
    x = b.conv(b.input, 16, 3, 2, name="stem")
    y = b.conv(b.conv(x, 16, 3, name="a"), 16, 3, name="b")
    s = b.shortcut(y, x, name="add")
    b.detect([s], 2, ANCHORS)
    g = b.build()
    assert _kinds(g) == {"a": "residual", "b": "plain"}
    p = classify(g, 1)
    assert (p.merge, p.merge_name) == (3, "add") and "added to" in p.reason()


def test_residual_through_a_copy_of_the_input() -> None:
    """a reads a one-input Concat of t (a copy of t); t is added to a's output."""
    b = Builder("copy")
    t = b.conv(b.input, 16, 3, 2, name="stem")
    x = b.concat(t, name="copy")
    a = b.conv(x, 16, 3, name="a")
    b.detect([b.shortcut(a, t, name="add")], 2, ANCHORS)
    assert _kinds(b.build()) == {"a": "residual"}


def test_concat_tap_chain_step1_and_step2() -> None:
    """ELAN tap chain (yolov7 backbone, step 2): a conv whose input is tapped by the Concat
    is 'concat'; a conv whose input is untapped reaches the Concat only through it: 'plain'.
    With step 1 every input is tapped: all 'concat'."""
    b = Builder("elan")
    x = b.conv(b.input, 16, 3, 2, name="stem")
    m0 = b.conv(x, 16, 3, name="m0")
    m1 = b.conv(m0, 16, 3, name="m1")
    m2 = b.conv(m1, 16, 3, name="m2")
    m3 = b.conv(m2, 16, 3, name="m3")
    b.detect([b.concat(m3, m1, x, name="cat")], 2, ANCHORS)   # taps x, m1, m3 (step 2)
    g = b.build()
    assert _kinds(g) == {"m0": "concat", "m1": "plain", "m2": "concat", "m3": "plain"}
    assert classify(g, 1).merge_name == "cat"
    b = Builder("elan1")
    x = b.conv(b.input, 16, 3, 2, name="stem")
    m0 = b.conv(x, 16, 3, name="m0")
    m1 = b.conv(m0, 16, 3, name="m1")
    b.detect([b.concat(m1, m0, x)], 2, ANCHORS)
    assert _kinds(b.build()) == {"m0": "concat", "m1": "concat"}


def test_concat_through_another_layer() -> None:
    """The input reaches the Concat through a parallel 1×1 conv: still concat (the gradient
    reaches x without passing through the 3×3)."""
    b = Builder("csp")
    x = b.conv(b.input, 16, 3, 2, name="stem")
    a = b.conv(x, 16, 3, name="a")
    side = b.conv(x, 16, 1, name="side")
    b.detect([b.concat(a, side)], 2, ANCHORS)
    assert _kinds(b.build()) == {"a": "concat"}


def test_head_is_not_a_merge_and_unrelated_merges_do_not_span() -> None:
    """t feeds a 3×3 lead conv and, separately, a Concat the lead conv's output never
    reaches: plain (the detection head reads its levels apart)."""
    b = Builder("lead")
    t = b.conv(b.input, 16, 3, 2, name="stem")
    lead = b.conv(t, 32, 3, name="lead")
    down = b.concat(b.conv(t, 16, 3, 2, name="down"), b.mp(t), name="cat")
    b.detect([lead, down], 2, [[10, 13], [30, 61]])
    g = b.build()
    assert _kinds(g) == {"lead": "plain"}
    assert not classify(g, 1).identity_possible       # 16 → 32 channels


def test_nearest_merge_decides() -> None:
    """A residual one step away and a Concat further on: residual."""
    b = Builder("both")
    x = b.conv(b.input, 16, 3, 2, name="stem")
    s = b.shortcut(b.conv(x, 16, 3, name="a"), x, name="add")
    b.detect([b.concat(b.conv(s, 16, 1, name="t"), x, name="cat")], 2, ANCHORS)
    p = classify(b.build(), 1)
    assert (p.kind, p.merge_name) == ("residual", "add")


def test_candidates_are_3x3_stride1_training_convs() -> None:
    b = Builder("cands")
    x = b.conv(b.input, 16, 3, 2, name="s2")      # stride 2
    x = b.conv(x, 16, 1, name="k1")                # 1×1
    x = b.conv(x, 16, 3, name="k3")                # candidate
    x = b.repconv(x, 16, name="rep")               # candidate
    b.add("Conv", [x], "folded", c=16, k=3, s=1, bn=False, bias=True)  # BN folded: deploy form
    b.detect([x], 2, ANCHORS)
    g = b.build()
    assert [g[i].name for i in candidates(g)] == ["k3", "rep"]


def _res_block(identity: bool | None) -> yolov7c.Graph:
    b = Builder("lint")
    x = b.conv(b.input, 16, 3, 2, name="stem")
    y = b.repconv(x, 16, name="a", identity=identity)
    b.detect([b.shortcut(y, x)], 2, ANCHORS)
    return b.build()


def test_lint_warns_for_an_automatic_identity_in_a_residual_position() -> None:
    with pytest.warns(PlannedReparamWarning, match=r"node 1 \(a, RepConv\).*residual.*"
                                                   r"identity=False"):
        _res_block(None)


@pytest.mark.parametrize("identity", [False, True])
def test_lint_silent_for_repconvn_and_a_deliberate_identity(identity: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlannedReparamWarning)
        _res_block(identity)


def test_lint_silent_on_the_zoo() -> None:
    """yolov7's lead RepConvs sit in plain positions (and change width): no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlannedReparamWarning)
        for name in ("yolov7", "yolov7-tiny"):
            yolov7c.graph(name)
