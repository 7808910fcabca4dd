"""Concat-aware compound scaling: yolov7 → yolov7x exactly, Table 3's shape, the rules,
closed forms against numeric graphs, and one-line errors.

Expected numbers come from the official figures (shared/reference), from the zoo layout
fed hand-written configs (a different code path than the graph rewrite under test), or
from hand arithmetic written out below.
"""
from __future__ import annotations

import random
from fractions import Fraction

import pytest
import sympy

from yolov7c import zoo
from yolov7c.errors import UserError
from yolov7c.ir.analysis import analyze
from yolov7c.ir.blocks import elan
from yolov7c.ir.deploy import to_deploy
from yolov7c.ir.dsl import Builder
from yolov7c.ir.scaling import D, IMG, W, closed_form, find_elans, full_elan_form, scale
from yolov7c.report.reference_figures import OFFICIAL
from yolov7c.zoo import p5

# the official figures packaged with the project (facts measured on the official code), so
# this runs on a fresh clone; tests/zoo checks the packaged copy against ../shared
FIGURES = OFFICIAL


def node_key(g):
    return [(n.index, n.name, n.op, n.inputs, dict(n.attrs), n.block, n.role, n.stage)
            for n in g.nodes]


def deploy_numbers(g):
    a = analyze(to_deploy(g), 640)
    return a.params, float(a.gflops("paper"))


# ----- yolov7 → yolov7x -------------------------------------------------------------------------
def test_compound_1_5_is_yolov7x_node_for_node():
    s = scale(zoo.get("yolov7"), depth=1.5)
    x = zoo.get("yolov7x")
    assert node_key(s) == node_key(x)
    assert s.shapes.c_out == x.shapes.c_out          # layer-by-layer channels
    assert s.blocks == x.blocks


def test_compound_1_5_equals_official_yolov7x_figures():
    s = scale(zoo.get("yolov7"), depth=1.5)
    t = FIGURES["training/yolov7x"]
    a = analyze(s, 640)
    assert a.params == t["params"] == 71_347_394
    assert float(a.gflops("official")) == pytest.approx(t["gflops"][640], abs=1e-9)
    assert float(a.gflops("paper")) == pytest.approx(t["gflops_paper"][640], abs=1e-9)
    assert float(a.gflops("macs2")) == pytest.approx(t["gflops_macs2"][640], abs=1e-9)
    p, f = deploy_numbers(s)
    assert p == FIGURES["deploy/yolov7x"]["fused_params"] == 71_311_741
    assert f == pytest.approx(FIGURES["deploy/yolov7x"]["fused_gflops_paper"][640], abs=1e-9)


def test_transition_widths_follow_the_concat_ratio():
    """256→320, 512→640, 1024→1280: ×5/4 = (2c + 3c)/(2c + 2c), read off the graph."""
    base, s = zoo.get("yolov7"), scale(zoo.get("yolov7"), depth=1.5)
    old = {e.name: e for e in find_elans(base)}
    for e in find_elans(s):
        assert Fraction(e.concat_width, old[e.name].concat_width) == Fraction(5, 4)
        assert Fraction(e.out, old[e.name].out) == Fraction(5, 4)
        assert (e.convs, e.step, e.c3) == (6, 2, e.c)


def test_identity_and_lead_option():
    g = zoo.get("yolov7")
    assert node_key(scale(g)) == node_key(g)         # d = w = 1 changes nothing
    keep = scale(g, depth=1.5, lead="keep")
    assert sum(n.op == "RepConv" for n in keep.nodes) == 3
    # RepConv is a training-time form: the fused deploy model is yolov7x either way
    assert deploy_numbers(keep)[0] == 71_311_741


# ----- Table 3 shape ----------------------------------------------------------------------------
# v7-X light = yolov7 with its 4 neck ELANs in full-width form (4 convs of c, step 2) instead of
# 4 convs of c/2, step 1. Deploy (fused) params, by hand: per neck block the 3×3 convs go from
# (c→c/2) + 3×(c/2→c/2) to 4×(c→c), each with a bias: Δ = 36c² + 4c − (4.5c² + 6.75c² + 2c)
# = 24.75c² + 2c; c = 256, 128, 256, 512 → 1,622,528·2 + 405,760 + 6,489,088 = 10,139,904.
V7X_LIGHT_DEPLOY_PARAMS = 36_905_341 + 10_139_904           # = 47,045,245 (paper 47.0M)

LIGHT = p5.ElanP5(stem=(32, 64, 64, 128), elan_c=(64, 128, 256, 256),
                  elan_out=(256, 512, 1024, 1024), convs=4, spp=512, route=(256, 128),
                  head_c=(256, 128, 256, 512), head_c3=(256, 128, 256, 512),
                  head_out=(256, 128, 256, 512), head_convs=4, head_step=2,
                  lead=(256, 512, 1024), rep=True)
WIDTH_125 = p5.ElanP5(stem=(40, 80, 80, 160), elan_c=(80, 160, 320, 320),
                      elan_out=(320, 640, 1280, 1280), convs=4, spp=640, route=(320, 160),
                      head_c=(320, 160, 320, 640), head_c3=(320, 160, 320, 640),
                      head_out=(320, 160, 320, 640), head_convs=4, head_step=2,
                      lead=(320, 640, 1280), rep=True)
DEPTH_2 = p5.ElanP5(stem=(32, 64, 64, 128), elan_c=(64, 128, 256, 256),
                    elan_out=(256, 512, 1024, 1024), convs=8, spp=512, route=(256, 128),
                    head_c=(256, 128, 256, 512), head_c3=(256, 128, 256, 512),
                    head_out=(256, 128, 256, 512), head_convs=8, head_step=2,
                    lead=(256, 512, 1024), rep=False)


def _same_but_name(a, b):
    return [k[1:] for k in node_key(a)] == [k[1:] for k in node_key(b)]


def test_table3_variants_equal_hand_configs():
    base = full_elan_form(zoo.get("yolov7"))
    assert _same_but_name(base, p5.elan_p5("x", LIGHT))
    assert deploy_numbers(base)[0] == V7X_LIGHT_DEPLOY_PARAMS
    assert _same_but_name(scale(base, width=1.25, rule="width-only"), p5.elan_p5("x", WIDTH_125))
    assert _same_but_name(scale(base, depth=2.0, rule="depth-only"), p5.elan_p5("x", DEPTH_2))
    assert _same_but_name(scale(base, depth=1.5), zoo.get("yolov7x"))


# (rule, factors) → the paper's printed row (params M, GFLOPs): deploy fused, paper-conv @640
TABLE3 = [("base", {}, 47.0, 125.5), ("width-only", dict(width=1.25), 73.4, 195.5),
          ("depth-only", dict(depth=2.0), 69.3, 187.6), ("compound", dict(depth=1.5), 71.3, 189.9)]


@pytest.mark.parametrize("rule,factors,paper_m,paper_g", TABLE3)
def test_table3_rows_close_to_paper(rule, factors, paper_m, paper_g):
    base = full_elan_form(zoo.get("yolov7"))
    g = base if rule == "base" else scale(base, rule=rule, **factors)
    p, f = deploy_numbers(g)
    assert round(p / 1e6, 1) == paper_m                   # params agree to the printed digit
    assert abs(f - paper_g) / paper_g < 0.002             # GFLOPs within 0.2 %


def test_table3_ordering_and_depth_per_parameter():
    """Paper ordering: width-only > compound > depth-only in params and FLOPs. Depth (3×3
    convs in ELAN chains) per parameter: depth-only > compound > width-only — compound buys
    more depth per parameter than width scaling, and is the only rule that adds depth while
    keeping every block's transition/concat width ratio (Fig. 3c)."""
    base = full_elan_form(zoo.get("yolov7"))
    rows = {r: scale(base, rule=r, **f) for r, f, _, _ in TABLE3[1:]}
    params = {r: deploy_numbers(g)[0] for r, g in rows.items()}
    assert params["width-only"] > params["compound"] > params["depth-only"]
    depth = {r: sum(e.convs for e in find_elans(g)) for r, g in rows.items()}
    assert depth == {"width-only": 32, "depth-only": 64, "compound": 48}
    per = {r: depth[r] / params[r] for r in rows}
    assert per["depth-only"] > per["compound"] > per["width-only"]
    ratio0 = {e.name: Fraction(e.out, e.concat_width) for e in find_elans(base)}
    for r, g in rows.items():
        same = all(Fraction(e.out, e.concat_width) == ratio0[e.name] for e in find_elans(g))
        assert same == (r != "depth-only")


# ----- closed forms -----------------------------------------------------------------------------
def _stage_lcm(g):
    import math
    return math.lcm(*[e.convs // (2 if e.light else e.step) for e in find_elans(g)])


@pytest.mark.parametrize("name", zoo.names())
def test_symbolic_equals_numeric_at_50_points(name):
    """Closed form (unrounded widths, relaxed depth) = the numeric graph with round_to=None
    at 50 random points with stages·d integral, d ≠ 1, w arbitrary; img symbolic too."""
    g = zoo.get(name)
    cf = closed_form(g)
    k = _stage_lcm(g)
    rng = random.Random(name)
    for _ in range(50):
        m = rng.choice([m for m in range(1, 3 * k + 1) if m != k])
        d, w = Fraction(m, k), Fraction(rng.randint(10, 250), rng.choice([16, 100, 7]))
        img = zoo.entry(name).img
        a = analyze(scale(g, depth=d, width=w, round_to=None), img)
        sub = {D: sympy.Rational(d.numerator, d.denominator),
               W: sympy.Rational(w.numerator, w.denominator), IMG: img}
        assert cf.params.subs(sub) == sympy.Rational(*_nd(a.params))
        for conv in ("macs2", "official", "paper"):
            assert cf.gflops[conv].subs(sub) * 10**9 == sympy.Rational(*_nd(a.flops(conv)))


def _nd(x):
    x = Fraction(x)
    return x.numerator, x.denominator


def test_symbolic_light_keep_and_other_rules():
    g = zoo.get("yolov7-w6")
    for rule, kw, pts in (("compound", dict(light="keep"), [(Fraction(3, 2), Fraction(5, 4))]),
                          ("depth-only", {}, [(Fraction(2), 1)]),
                          ("width-only", {}, [(1, Fraction(3, 4))])):
        cf = closed_form(g, img=1280, rule=rule, **kw)
        for d, w in pts:
            a = analyze(scale(g, depth=d, width=w, rule=rule, round_to=None, **kw), 1280)
            assert cf.params.subs({D: sympy.nsimplify(d), W: sympy.nsimplify(w)}) == a.params


def test_rounded_widths_agree_where_rounding_is_exact():
    """yolov7 at w ∈ {1, 2} (d = 1.5, 2): every scaled width (e.g. stem 32·w·5/4) is
    already a multiple of 8, so the default rounding is a no-op there."""
    cf = closed_form(zoo.get("yolov7"), img=640)
    for d, w in ((1.5, 1), (1.5, 2), (2, 1)):
        a = analyze(scale(zoo.get("yolov7"), depth=d, width=w), 640)
        assert cf.at(d, w)["params"] == a.params
        assert cf.at(d, w)["official"] * 10**9 == a.flops("official")


def test_symbolic_channels_are_expressions():
    s = scale(zoo.get("yolov7"), depth=D, width=W)
    tr = next(n for n in s.nodes if n.name == "backbone.p2.elan.transition")
    # transition = 256 · (2·64w + 64w·2d) / 256 = 128w(1 + d); its concat is the same width
    assert sympy.expand(tr.attrs["c"] - 128 * W * (1 + D)) == 0
    assert sympy.expand(s.c_out(tr.index) - (128 * W + 128 * W * D)) == 0


# ----- errors -----------------------------------------------------------------------------------
def _no_elan_graph():
    b = Builder("plain")
    x = b.conv(b.input, 16, 3, 2)
    b.detect([b.conv(x, 16, 3, 2)], nc=1, anchors=[[10, 13, 16, 30, 33, 23]])
    return b.build()


@pytest.mark.parametrize("call,match,arg", [
    (lambda g: scale(g, depth=0), r"^depth 0: .*must be positive", "depth"),
    (lambda g: scale(g, width=-1.25), r"^width -1.25: .*must be positive", "width"),
    (lambda g: scale(g, depth="x"), r"^depth 'x': expected a positive number", "depth"),
    (lambda g: scale(g, rule="wide"), r"^rule 'wide': expected one of", "rule"),
    (lambda g: scale(g, depth=1.5, rule="width-only"), "drop depth", "rule"),
    (lambda g: scale(g, width=1.5, rule="depth-only"), "drop width", "rule"),
    (lambda g: scale(g, light="on"), r"^light 'on': expected one of", "light"),
    (lambda g: scale(_no_elan_graph(), depth=1.5), "no scalable blocks", None),
    (lambda g: analyze(g, 100), r"^img 100 is not a positive multiple .* stride 32", "img"),
])
def test_bad_input_is_one_line_naming_the_argument(call, match, arg):
    """Library errors name the argument (``depth 0: ...``), never a CLI flag (the CLI maps
    ``arg`` to its flag)."""
    with pytest.raises(UserError, match=match) as e:
        call(zoo.get("yolov7"))
    assert "\n" not in str(e.value) and "--" not in str(e.value)
    assert e.value.arg == arg


def test_custom_dsl_graph_scales():
    b = Builder("toy")
    x = b.conv(b.input, 32, 3, 2, name="stem")
    with b.scope("p2", stage="P2"):
        x = elan(x, c=16, convs=2, out=64, step=1)
    b.detect([b.conv(x, 64, 3, 2, name="lead")], nc=3, anchors=[[10, 13, 16, 30, 33, 23]])
    s = scale(b.build(), depth=1.5)
    # 2 → 3 convs, all tapped: concat 16·(2+3) = 80 vs 64 → ratio 5/4 on every tied width
    assert [n.attrs.get("c") for n in s.nodes if n.op == "Conv"] == [40, 16, 16, 16, 16, 16,
                                                                      80, 80]
