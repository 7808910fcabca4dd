"""Compound scaling of the grouped E-ELAN block (paper §3.1): the group parameter g and the
width factor on every computational conv, the transition by the concat ratio; numbers
against a hand count, closed forms against a hand-derived polynomial in (d, w, g)."""
from __future__ import annotations

import pytest
import sympy

from yolov7c.errors import UserError
from yolov7c.ir.analysis import analyze
from yolov7c.ir.blocks import e_elan, elan
from yolov7c.ir.dsl import Builder
from yolov7c.ir.scaling import D, G, IMG, W, closed_form, scale


def _grouped(g: int = 2, plain_after: bool = False):
    """stem 3→32 (3×3/2), e_elan(c=16, convs=4, step 2, out=64, g), IDetect(nc=1, 3 anchors)."""
    b = Builder("e", act="silu")
    x = b.conv(b.input, 32, 3, 2, name="stem")
    y = e_elan(x, c=16, convs=4, out=64, g=g)
    if plain_after:
        y = elan(y, c=16, convs=4, out=64, name="plain")  # k = 2: k·d integer below
    b.detect([y], nc=1, anchors=[[10, 13, 16, 30, 33, 23]])
    return b.build()


def test_scaled_grouped_block_by_hand():
    """d = 1.5, w = 1.5, g = 4, no rounding. k = 2 stages → 3 (6 convs); per-group width
    16·1.5 = 24, so every computational conv is 96 wide with 4 groups; merged concat
    24·(3 + 2) = 120 (was 16·4 = 64): r = 120/64, transition 64 → 120, stem 32 → 60."""
    s = scale(_grouped(), depth=1.5, width=1.5, groups=4, round_to=None)
    stem = 3 * 60 * 9 + 2 * 60                        # conv weight + BN γ, β
    cv = 96 * (60 // 4) * 1 + 2 * 96                  # cv1, cv2: 60→96, g=4, 1×1
    m = 96 * (96 // 4) * 9 + 2 * 96                   # 6 × 3×3 96→96, g=4
    transition = 120 * 120 + 2 * 120                  # reads the merged 120 channels
    head = 120 * 18 + 18 + 120 + 18                   # IDetect conv + ImplicitA + ImplicitM
    want = stem + 2 * cv + 6 * m + transition + head
    assert want == 147_528
    assert analyze(s).params == want
    by = {n.name: n for n in s.nodes}
    assert [by[f"e_elan.m{i}"].attrs["g"] for i in range(6)] == [4] * 6
    assert by["e_elan.shuffle"].attrs == {"g": 4, "parts": 5}
    assert s.c_out(by["e_elan.merge"].index) == 120
    assert s.blocks["e_elan"].args == {"c": 24, "convs": 6, "step": 2, "out": 120, "groups": 4}
    import yolov7c  # the scaled graph lowers and its module has the same count
    assert sum(p.numel() for p in yolov7c.build(s).parameters()) == want


def test_g_alone_changes_only_the_computational_convs():
    """At d = w = 1 the transition and everything outside the block keep their widths
    (E-ELAN changes only the computational block); cv/m params grow as g (per-group width
    fixed): 1×1s 32·16·g/… by hand below."""
    base, s = _grouped(2), scale(_grouped(2), groups=8, round_to=None)
    diff = analyze(s).params - analyze(base).params
    # 1×1: (16g)·(32/g) + 2·16g; 3×3: (16g)·16·9 + 2·16g; four 3×3, two 1×1; g 2 → 8
    per_g = 2 * 2 * 16 + 4 * (16 * 16 * 9 + 2 * 16)
    assert diff == per_g * (8 - 2)
    assert [n.attrs["c"] for n in s.nodes if n.name in ("stem", "e_elan.transition")] == \
        [32, 64]


def test_closed_form_in_d_w_g_equals_the_hand_polynomial():
    """Symbolic d, w, g: stages 2d, per-group width 16w, merged concat M = 16w·(2d + 2),
    r = M/64, stem S = 32r; params and MACs written from the block definition."""
    cf = closed_form(_grouped())
    M = 16 * W * (2 * D + 2)
    S = 32 * M / 64
    weights = (27 * S                                   # stem 3×3, 3 → S
               + 2 * (16 * W * G) * (S / G)             # cv1, cv2: S → 16wg, g groups
               + 4 * D * (16 * W * G) * (16 * W) * 9    # 4d chain convs, 16wg → 16wg, g
               + M * M + 18 * M)                        # transition M → M; head conv
    bn = 2 * (S + 2 * 16 * W * G + 4 * D * 16 * W * G + M)
    head = 18 + M + 18                                  # head bias, ImplicitA, ImplicitM
    assert sympy.expand(cf.params - (weights + bn + head)) == 0
    area = (IMG / 2) ** 2                               # everything runs at stride 2
    assert sympy.expand(cf.gflops["macs2"] - 2 * area * weights / 10 ** 9) == 0
    assert G in cf.params.free_symbols and cf.g0 == 2


@pytest.mark.parametrize("d, w, g", [(1, 1, 2), (1.5, 1.5, 4), (2, 0.5, 1), (0.5, 2, 8)])
def test_closed_form_equals_the_numeric_graph(d, w, g):
    base = _grouped(plain_after=True)
    s = scale(base, depth=d, width=w, groups=g, round_to=None)
    a, at = analyze(s, 64), closed_form(base, img=64).at(d, w, g=g)
    assert at["params"] == a.params and at["macs2"] == sympy.Rational(a.flops("macs2"), 10**9)


def test_bad_groups_are_one_line_errors_naming_the_argument():
    with pytest.raises(UserError, match=r"^groups 0: expected a positive integer") as e:
        scale(_grouped(), groups=0)
    assert e.value.arg == "groups"
    with pytest.raises(UserError, match=r"has no grouped E-ELAN block"):
        from yolov7c import zoo
        scale(zoo.get("yolov7-tiny"), groups=2)
    with pytest.raises(UserError, match=r"e_elan\.cv1.*groups g=7 must divide"):
        scale(_grouped(), depth=1.5, width=1.5, groups=7, round_to=None)


def test_report_names_g_and_evaluates_at_the_base_g():
    from yolov7c.report.closed_form import closed_form_text
    text = closed_form_text(_grouped(), 64)
    assert text.startswith("params(d, w, g) = ") and "params 26,244 (model 26,244)" in text


GROUPED_DSL = """from yolov7c.ir.blocks import e_elan
from yolov7c.ir.dsl import Builder

b = Builder("e", act="silu")
x = b.conv(b.input, 32, 3, 2, name="stem")
b.detect([e_elan(x, c=16, convs=4, out=64, g=2)], nc=1, anchors=[[10, 13, 16, 30, 33, 23]])
graph = b.build()
"""


def _scale_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from yolov7c.cli import main
    rc = main(["scale", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_groups_flag_scales_g_and_fixes_it_in_the_closed_form(tmp_path, capsys):
    """``yolov7c scale model.py --groups 4``: the hand count of
    test_scaled_grouped_block_by_hand (147,528 params); ``--symbolic`` keeps g a symbol
    unless ``--groups`` gives it; a graph without grouped blocks and g = 0 are one line."""
    import json
    src = tmp_path / "grouped.py"
    src.write_text(GROUPED_DSL)
    rc, out, err = _scale_cli(capsys, str(src), "--depth", "1.5", "--width", "1.5",
                              "--groups", "4", "--round-to", "1", "--json")
    assert rc == 0, err
    assert json.loads(out)["params"] == 147_528
    rc, out, _ = _scale_cli(capsys, str(src), "--symbolic", "--json")
    assert rc == 0 and "g" in json.loads(out)["params"]
    rc, out, _ = _scale_cli(capsys, str(src), "--symbolic", "--groups", "4", "--json")
    params = sympy.sympify(json.loads(out)["params"])
    assert rc == 0 and {s.name for s in params.free_symbols} == {"d", "w"}
    full = sympy.sympify(json.loads(_scale_cli(capsys, str(src), "--symbolic", "--json")[1])
                         ["params"])
    assert sympy.simplify(full.subs(sympy.Symbol("g"), 4) - params) == 0
    for argv, msg in (([str(src), "--groups", "0"], "--groups"),
                      (["yolov7", "--groups", "4"], "grouped")):
        rc, out, err = _scale_cli(capsys, *argv)
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert msg in err, err
