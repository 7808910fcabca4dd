"""Budget solver, --emit dsl|yaml round trips, the ``scale`` CLI, and E-ELAN."""
from __future__ import annotations

import importlib.util
import json
from fractions import Fraction

import pytest
import torch

from yolov7c import zoo
from yolov7c.cli import main
from yolov7c.errors import UserError
from yolov7c.ir.analysis import analyze
from yolov7c.ir.blocks import e_elan
from yolov7c.ir.budget import WIDTH_GRID, Budget, depth_grid, solve
from yolov7c.ir.dsl import Builder
from yolov7c.ir.emit_dsl import to_dsl
from yolov7c.ir.scaling import find_elans, scale
from yolov7c.ir.yaml_io import from_yaml, to_yaml


def node_key(g):
    return [(n.index, n.name, n.op, n.inputs, dict(n.attrs), n.block, n.role, n.stage)
            for n in g.nodes]


def gflops(g):
    return analyze(g, 640).gflops("official")


# ----- budget -----------------------------------------------------------------------------------
def test_budget_60_gflops_is_tight_on_the_grid():
    g = zoo.get("yolov7")
    sol = solve(g, Budget("gflops", 60, 640))
    assert gflops(sol.graph) <= 60
    assert sol.depth in depth_grid(g) and sol.width in WIDTH_GRID
    ds, ws = list(depth_grid(g)), list(WIDTH_GRID)
    bigger_d = ds[ds.index(sol.depth) + 1]
    bigger_w = ws[ws.index(sol.width) + 1]
    assert gflops(scale(g, bigger_d, sol.width)) > 60      # next depth step is over
    assert gflops(scale(g, sol.depth, bigger_w)) > 60      # next width step is over
    # and no grid point beats it (exhaustive check at three depths around it)
    for d in ds[max(0, ds.index(sol.depth) - 1):ds.index(sol.depth) + 2]:
        for w in ws:
            v = gflops(scale(g, d, w))
            assert v > 60 or v <= gflops(sol.graph)


def test_budget_params_with_fixed_depth_and_continuous():
    g = zoo.get("yolov7")
    sol = solve(g, Budget("params", 40e6, 640), depth=1.5)
    assert sol.depth == Fraction(3, 2) and analyze(sol.graph).params <= 40e6
    rel = solve(g, Budget("gflops", 60, 640), depth=1.5, continuous=True)
    assert abs(float(rel.value) - 60) < 1e-6
    # the relaxed w lies between the grid step that fits and the one that does not
    assert rel.width > solve(g, Budget("gflops", 60, 640), depth=1.5).width


def test_budget_below_smallest_is_one_line():
    with pytest.raises(UserError, match="below the smallest variant") as e:
        solve(zoo.get("yolov7"), Budget("gflops", 0.5, 640))
    assert "\n" not in str(e.value)


# ----- emission ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.list())
def test_emit_dsl_and_yaml_import_back(name, tmp_path):
    g = scale(zoo.get(name), depth=1.5, width=0.75)
    path = tmp_path / "variant.py"
    path.write_text(to_dsl(g))
    spec = importlib.util.spec_from_file_location("variant", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    back = mod.build()
    assert node_key(back) == node_key(g) and back.blocks == g.blocks
    assert mod.build(nc=3).nc == 3
    y = from_yaml(to_yaml(g))
    assert node_key(y) == node_key(g)
    assert analyze(y).params == analyze(g).params


# ----- CLI --------------------------------------------------------------------------------------
def run_cli(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_json_compound(capsys):
    rc, out, _ = run_cli(capsys, "scale", "yolov7", "--depth", "1.5", "--json")
    d = json.loads(out)
    assert rc == 0 and d["params"] == 71_347_394 and d["layers"] == 122
    assert (d["depth"], d["width"], d["rule"]) == (1.5, 1.0, "compound")
    assert {"model", "form", "img", "nc", "gflops", "gflops_macs2", "gflops_paper",
            "nodes"} <= set(d)
    assert {"index", "name", "op", "inputs", "c_in", "c_out", "stride", "params",
            "macs"} <= set(d["nodes"][0])


def test_cli_budget_symbolic_emit_and_errors(capsys):
    rc, out, _ = run_cli(capsys, "scale", "yolov7", "--target-gflops", "60", "--json")
    d = json.loads(out)
    assert rc == 0 and d["gflops"] <= 60 and d["budget"]["limit"] == 60
    assert d["budget"]["next_larger"]["width"]["value"] > 60
    rc, out, _ = run_cli(capsys, "scale", "yolov7", "--symbolic", "--img", "640")
    assert rc == 0 and "params(d, w) = " in out and "d**2*w**2" in out
    rc, out, _ = run_cli(capsys, "scale", "yolov7", "--depth", "1.5", "--emit", "yaml")
    assert rc == 0 and node_key(from_yaml(out)) == node_key(zoo.get("yolov7x"))
    for argv in (["--depth", "0"], ["--target-gflops", "0.5"], ["--width", "2", "--rule",
                                                                   "depth-only"]):
        rc, out, err = run_cli(capsys, "scale", "yolov7", *argv)
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1


# ----- E-ELAN -----------------------------------------------------------------------------------
def _grouped(g=2):
    b = Builder("e", act="silu")
    x = b.conv(b.input, 32, 3, 2, name="stem")
    y = e_elan(x, c=16, convs=4, out=64, g=g)
    b.detect([y], nc=1, anchors=[[10, 13, 16, 30, 33, 23]])
    return b.build()


def test_grouped_e_elan_params_by_hand():
    # stem 3·32·9 + 64; cv1, cv2: 32→32 g2 = 32·16 + 64 each; 4 × 3×3 32→32 g2 = 32·16·9 + 64;
    # concat 4 taps × 32 → shuffle → sum of 2 groups = 64; transition 64·64 + 128;
    # IDetect: 64·18 + 18 + (64 + 18)
    expect = (864 + 64) + 2 * (512 + 64) + 4 * (4608 + 64) + (4096 + 128) + (1152 + 18 + 82)
    g = _grouped()
    assert analyze(g).params == expect
    assert g.c_out(next(n.index for n in g.nodes if n.op == "GroupSum")) == 64
    m = __import__("yolov7c").build(g)
    assert sum(p.numel() for p in m.parameters()) == expect


def test_shuffle_and_merge_modules():
    from yolov7c.backends.torch.modules import GroupSum, Shuffle
    x = torch.arange(12.).view(1, 12, 1, 1)                    # 3 parts × 2 groups × 2
    y = Shuffle(g=2, parts=3)(x).flatten().tolist()
    assert y == [0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]          # group 0 of every part first
    assert GroupSum(2)(Shuffle(2, 3)(x)).flatten().tolist() == [2, 4, 10, 12, 18, 20]


def test_e6e_is_e6_with_every_elan_doubled_and_summed():
    """Released E6E = E6 + a second identical ELAN group per block (merged by a sum): its
    params are E6's plus the params of every E6 ELAN block once more."""
    e6, e6e = zoo.get("yolov7-e6"), zoo.get("yolov7-e6e")
    a = analyze(e6, 1280)
    per = {n.index: n.params for n in a.nodes}
    extra = sum(per[n.index] for e in find_elans(e6) for n in e.nodes)
    assert analyze(e6e, 1280).params == a.params + extra == 166_408_884
    assert a.params == 111_898_292


def test_grouped_e_elan_scales_by_its_concat_ratio():
    """Grouped blocks scale now (tests/ir/test_scaling_grouped.py has the hand counts):
    depth 1.5 → 3 stages, merged concat 16·5 = 80, transition 64 → 80."""
    s = scale(_grouped(), depth=1.5)
    assert s.c_out(next(n.index for n in s.nodes if n.op == "GroupSum")) == 80
