"""The one resolver: every model source, one weights rule, one image-size rule."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import yolov7c
from yolov7c.api.args import check_img, default_img
from yolov7c.api.models import deploy, graph_of, is_our_checkpoint, resolve
from yolov7c.errors import UserError
from yolov7c.ir.yaml_io import to_yaml

DSL = '''
from yolov7c.ir.dsl import Builder
from yolov7c.ir.blocks import elan, mp_down, sppcspc, lead_convs

def build():
    b = Builder("my-detector", act="silu")
    x = b.conv(b.conv(b.input, 16, 3, 2), 32, 3, 2)
    p3 = elan(mp_down(elan(x, c=16, convs=2, out=64), 32), c=32, convs=2, out=64)
    p4 = elan(mp_down(p3, 64), c=32, convs=2, out=128)
    heads = lead_convs([p3, sppcspc(p4, 64)], widths=(32, 64), rep=True)
    b.detect(heads, nc=3, anchors=[[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]])
    return b.build()
'''


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory: pytest.TempPathFactory) -> yolov7c.Graph:
    """A small detector from the DSL (fast to build, run and deploy)."""
    f = tmp_path_factory.mktemp("dsl") / "small.py"
    f.write_text(DSL)
    from yolov7c.api.models import graph_from_dsl
    return graph_from_dsl(f)


@pytest.fixture(scope="module")
def tiny(small_graph: yolov7c.Graph) -> torch.nn.Module:
    return resolve(small_graph)


def test_weightless_sources_share_one_weights_rule(small_graph, tiny, tmp_path: Path) -> None:
    """Graph, DSL file and the same architecture as a YAML cfg give identical weights, and
    a second call gives them again (so `passes X` and `export X` agree); so does a zoo name."""
    assert same_weights(tiny, resolve(small_graph))
    cfg = tmp_path / "small.yaml"
    cfg.write_text(to_yaml(small_graph))
    assert same_weights(tiny, resolve(cfg))
    assert not same_weights(tiny, resolve(small_graph, seed=1))
    assert not tiny.training
    # the weights are not trivial: BN statistics were measured, not left at 0 / 1
    bn = next(m for m in tiny.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert float(bn.running_var.sub(1).abs().max()) > 1e-3
    zoo = resolve("yolov7-tiny", nc=3)
    assert same_weights(zoo, resolve(yolov7c.graph("yolov7-tiny", nc=3)))


def test_dsl_file_and_its_errors(tmp_path: Path) -> None:
    f = tmp_path / "mine.py"
    f.write_text(DSL)
    m = resolve(f, nc=5)  # nc re-heads a weightless source
    assert m.graph.name == "my-detector" and m.nc == 5
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n\n\nraise RuntimeError('boom')\n")
    with pytest.raises(UserError, match=r"bad.py:4: RuntimeError: boom"):
        resolve(bad)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(UserError, match="defines no `graph`"):
        resolve(empty)


def test_checkpoints_keep_their_weights(tiny, tmp_path: Path) -> None:
    x = torch.rand(1, 3, 64, 64)
    yolov7c.save(tiny, tmp_path / "run.ckpt")
    back = resolve(tmp_path / "run.ckpt")
    assert is_our_checkpoint(tmp_path / "run.ckpt") and same_weights(tiny, back)
    dep = deploy(tiny)
    yolov7c.save(dep, tmp_path / "dep.pt")  # content, not the suffix, says ours
    again = yolov7c.load(tmp_path / "dep.pt")
    with torch.no_grad():
        ref, got = tiny(x)[0], again(x)[0]
    err = float((got - ref).abs().max() / ref.abs().max())
    print(f"deploy checkpoint vs training model: max rel err {err:.2e}")
    assert err <= 1e-4
    assert deploy(again) is again  # already deploy form: not run twice
    assert graph_of(tmp_path / "dep.pt").form == "deploy"
    with pytest.raises(UserError, match="holds a model with 3 classes") as e:
        resolve(tmp_path / "run.ckpt", nc=80)
    assert e.value.arg == "nc"


def test_training_checkpoint_with_extra_state(tiny, tmp_path: Path) -> None:
    p = tmp_path / "last.ckpt"
    yolov7c.save(tiny, p, extra={"epoch": 3, "optimizer": {"lr": torch.tensor([0.01])}})
    assert same_weights(tiny, resolve(p))


def test_official_pt_goes_through_the_safe_importer(shared, tmp_path: Path) -> None:
    src = shared("fixtures", "yolov7-tiny-official.pt")
    copy = tmp_path / "yolov7_training.pt"
    shutil.copy(src, copy)
    assert not is_our_checkpoint(copy)
    m = resolve(copy)
    assert m.nc == 80 and sum(p.numel() for p in m.parameters()) == 6_228_762


@pytest.mark.parametrize("source,match", [
    ("yolov9", r"unknown model .yolov9.: not a file and not in the zoo"),
    ("missing/run.ckpt", r"missing/run.ckpt: no such file"),
    (42, r"source 42: expected a zoo name"),
])
def test_unknown_sources_are_one_line_errors(source, match: str) -> None:
    with pytest.raises(UserError, match=match):
        resolve(source)


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError):
        resolve(junk)


@pytest.mark.parametrize("img,hint", [(-5, "use 32 or 64"), (0, "use 32 or 64"),
                                      (300, "use 288 or 320"), (-320, "use 32 or 64"),
                                      (33, "use 32 or 64")])
def test_image_size_rule_names_valid_sizes(img: int, hint: str) -> None:
    model = yolov7c.build("yolov7-tiny")
    with pytest.raises(UserError, match=rf"^img {img}: .*stride 32; {hint}$") as e:
        check_img(model, img)
    assert e.value.arg == "img"
    assert check_img(model, 320) == 320 and default_img(model) == 640
