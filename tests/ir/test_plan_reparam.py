"""The re-parameterization planner: policies on hand-built graphs, RepConvN through the IR,
YAML, DSL, lowering and the verified deploy pipeline, bad input, the CLI."""
from __future__ import annotations

import contextlib
import io
import json
import runpy

import pytest
from torch import nn

import yolov7c
from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.init_weights import randomize_weights
from yolov7c.backends.torch.lower import lower
from yolov7c.cli import main
from yolov7c.errors import UserError
from yolov7c.ir.dsl import Builder
from yolov7c.ir.emit_dsl import to_dsl
from yolov7c.ir.plan_reparam import choice_of, plan, plan_reparam
from yolov7c.ir.yaml_io import from_yaml, to_yaml
from yolov7c.passes import example_input, run_passes

ANCHORS = [[10, 13, 16, 30]]


def small_elan() -> yolov7c.Graph:
    """A plain chain (p0 → p1, 16 → 16) then a step-1 ELAN (three 3×3 convs, every output
    concatenated with the chain's input), then a widening 3×3 (16·4 → 32)."""
    b = Builder("small-elan")
    x = b.conv(b.input, 16, 3, 2, name="stem")
    x = b.conv(b.conv(x, 16, 3, name="p0"), 16, 3, name="p1")
    chain = [x]
    for i in range(3):
        chain.append(b.conv(chain[-1], 16, 3, name=f"m{i}"))
    cat = b.concat(*chain[::-1], name="cat")
    b.detect([b.conv(cat, 32, 3, name="wide")], 2, ANCHORS)
    return b.build()


def _choices(g: yolov7c.Graph) -> dict[str, str]:
    return {n.name: choice_of(g, n.index) for n in g.nodes if n.op in ("Conv", "RepConv")}


def test_planned_on_a_small_elan() -> None:
    g = plan_reparam(small_elan(), "planned")
    assert _choices(g) == {"stem": "Conv", "p0": "RepConv", "p1": "RepConv",
                           "m0": "RepConvN", "m1": "RepConvN", "m2": "RepConvN",
                           "wide": "RepConvN"}  # plain, but 64 → 32: no identity possible
    assert [g[i].attrs.get("identity") for i in (3, 4, 5)] == [False] * 3  # explicit RepConvN


def test_repconv_everywhere_gives_identity_wherever_shapes_allow() -> None:
    g = plan_reparam(small_elan(), "repconv-everywhere")
    assert _choices(g) == {"stem": "Conv", "p0": "RepConv", "p1": "RepConv", "m0": "RepConv",
                           "m1": "RepConv", "m2": "RepConv", "wide": "RepConvN"}


def test_none_and_named_candidates() -> None:
    planned = plan_reparam(small_elan(), "planned")
    assert plan_reparam(planned, "none").nodes == small_elan().nodes  # back to the base
    only = plan(small_elan(), "repconv-everywhere", candidates="m1, p0")
    assert [d.position.name for d in only.decisions] == ["p0", "m1"]
    assert {k for k, v in _choices(only.graph).items() if v != "Conv"} == {"p0", "m1"}


def test_decisions_name_position_and_reason() -> None:
    d = {x.position.name: x for x in plan(small_elan(), "planned").decisions}
    assert (d["m1"].position.kind, d["m1"].before, d["m1"].choice) == ("concat", "Conv",
                                                                       "RepConvN")
    assert "cat" in d["m1"].reason and "§4.1" in d["m1"].reason
    assert d["wide"].reason.startswith("plain chain") and "64 ≠ c_out 32" in d["wide"].reason


@pytest.mark.parametrize("policy", ["planned", "repconv-everywhere", "none"])
def test_deploy_numbers_equal_the_plain_base(policy: str) -> None:
    """Every choice fuses to one 3×3 conv with bias: deploy params and FLOPs (every
    convention) are the base's, on yolov7 (its lead RepConvs become plain under 'none')."""
    base = yolov7c.graph("yolov7")
    a = yolov7c.analyze(yolov7c.to_deploy(base), 640)
    b = yolov7c.analyze(yolov7c.to_deploy(yolov7c.plan_reparam(base, policy)), 640)
    assert b.params == a.params
    assert all(b.gflops(c) == a.gflops(c) for c in ("official", "paper", "macs2"))


def test_repconvn_params_hand_counted() -> None:
    """8 → 8 channels, 3×3: dense 8·8·9 + BN 2·8 = 592, 1×1 8·8 + 2·8 = 80 → RepConvN 672;
    the identity BN adds 2·8 → RepConv 688. The torch modules count the same."""
    for identity, want in ((False, 672), (None, 688)):
        b = Builder("count")
        x = b.conv(b.input, 8, 1, name="in")     # 3·8 + 16 = 40 params
        y = b.repconv(x, 8, name="r", identity=identity)
        b.detect([b.concat(y)], 1, ANCHORS)
        g = b.build()
        assert yolov7c.analyze(g, 64).nodes[1].params == want
        rep = lower(g).model[1]
        assert isinstance(rep, M.RepConv) and (rep.rbr_identity is None) == (identity is False)
        assert sum(p.numel() for p in rep.parameters()) == want


def test_identity_true_where_shapes_forbid_is_an_error() -> None:
    b = Builder("bad")
    with pytest.raises(UserError, match=r"identity=True needs c_in == c"):
        b.repconv(b.conv(b.input, 8, 1), 16, identity=True)


def test_planned_graph_round_trips_yaml_and_dsl() -> None:
    g = plan_reparam(small_elan(), "planned")
    text = to_yaml(g)
    # m0..m2 are RepConvN by choice; 'wide' is a RepConv whose shapes forbid the identity
    assert text.count("RepConvN") == 3 and from_yaml(text).nodes == g.nodes
    ns = runpy.run_path(_write(to_dsl(g)))
    assert ns["build"]().nodes == g.nodes


def _write(text: str) -> str:
    import tempfile
    f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    f.write(text)
    f.close()
    return f.name


def test_official_style_repconvn_row_imports() -> None:
    cfg = """nc: 2
anchors: [[10, 13, 16, 30]]
backbone:
  [[-1, 1, Conv, [16, 3, 2]],
   [-1, 1, RepConvN, [16, 3, 1]],
   [-1, 1, RepConv, [16, 3, 1]]]
head:
  [[[2], 1, Detect, [nc, anchors]]]
"""
    g = from_yaml(cfg)
    assert (g[1].attrs["identity"], "identity" in g[2].attrs) == (False, False)
    assert (choice_of(g, 1), choice_of(g, 2)) == ("RepConvN", "RepConv")


@pytest.mark.parametrize("policy", ["planned", "repconv-everywhere"])
def test_planned_variant_deploys_verified(policy: str) -> None:
    """Through the existing deploy pipeline with BN statistics randomized: both kinds of
    RepConv fuse (none is left), max relative error ≤ 1e-4 after every pass, and the
    deployed params equal the plain base's deploy params."""
    base = small_elan()
    model = lower(plan_reparam(base, policy))
    randomize_weights(model, example_input(model, 64, batch=2, seed=1))
    result = run_passes(model, "deploy", img=64)
    for rec in result.records:
        print(policy, rec.name, rec.max_abs_err, rec.max_rel_err)
        assert rec.max_rel_err <= 1e-4
    assert not any(isinstance(m, (M.RepConv, nn.BatchNorm2d)) for m in result.module.modules())
    assert result.params == yolov7c.analyze(yolov7c.to_deploy(base), 64).params


def test_bad_input_is_one_line() -> None:
    with pytest.raises(UserError, match=r"^policy 'repvgg': expected one of planned, "):
        plan_reparam(small_elan(), "repvgg")
    with pytest.raises(UserError, match=r"candidates: node 6 \(cat, Concat\) is not a 3×3 "):
        plan_reparam(small_elan(), "planned", candidates=["cat"])
    with pytest.raises(UserError, match=r"candidates: no node 'm9'"):
        plan_reparam(small_elan(), "planned", candidates=["m9"])
    b = Builder("one-by-one")
    b.detect([b.conv(b.conv(b.input, 8, 3, 2), 8, 1)], 1, ANCHORS)
    with pytest.raises(UserError, match=r"has no 3×3 stride-1 convolutions"):
        plan_reparam(b.build(), "planned")
    with pytest.raises(UserError, match=r"deploy form"):
        plan_reparam(yolovc_deploy(), "planned")


def yolovc_deploy() -> yolov7c.Graph:
    return yolov7c.to_deploy(small_elan())


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_cli_plan(tmp_path) -> None:
    rc, out, _ = _cli("plan", "fig6-elan3", "--json", "--out", str(tmp_path / "p.yaml"))
    s = json.loads(out)
    assert rc == 0 and s["policy"] == "planned" and len(s["candidates"]) == 24
    assert s["base"]["deploy_params"] == s["planned"]["deploy_params"]
    assert from_yaml(tmp_path / "p.yaml").nodes == \
        plan_reparam(yolov7c.zoo.get("fig6-elan3"), "planned").nodes
    rc, out, _ = _cli("plan", "yolov7-tiny", "--policy", "none")
    assert rc == 0 and "index  node" in out and "concat" in out
    for argv, words in ((("--policy", "bogus"), "--policy 'bogus'"),
                        (("--candidates", "head.idetect"), "--candidates"),
                        (("--out", str(tmp_path / "p.txt")), "--out")):
        rc, out, err = _cli("plan", "yolov7-tiny", *argv)
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err


def test_planned_model_checkpoint_round_trip(tmp_path) -> None:
    """RepConvN survives our checkpoint (architecture spec + weights): same graph, no
    identity branch where there was none, same outputs."""
    import torch
    g = plan_reparam(small_elan(), "planned")
    model = yolov7c.resolve(g)
    path = yolov7c.save(model, tmp_path / "planned.ckpt")
    back = yolov7c.load(path)
    assert back.graph.nodes == g.nodes
    reps = [m for m in back.modules() if isinstance(m, M.RepConv)]
    assert [m.rbr_identity is None for m in reps] == [False, False, True, True, True, True]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(back(x)[0], model(x)[0])
