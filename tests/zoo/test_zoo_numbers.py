"""Every zoo model equals the official implementation's numbers exactly.

Parametrized over the registry, so a new zoo entry is tested automatically. The expected
figures are the official measurements packaged in ``yolov7c.report.reference_figures``
(facts measured on the official code, not produced by ours); a second test checks that
packaged copy against ../shared/reference when that folder is present.
"""
from __future__ import annotations

import pytest

import yolov7c
from yolov7c.ir.analysis import analyze
from yolov7c.ir.deploy import to_deploy
from yolov7c.report.reference_figures import OFFICIAL

CONVENTIONS = {"official": "gflops", "paper": "gflops_paper", "macs2": "gflops_macs2"}


def _cases(form: str):
    for name in yolov7c.zoo.list():
        e = yolov7c.zoo.entry(name)
        key = e.official_training if form == "training" else e.official_deploy
        if key is None:
            continue
        for img in OFFICIAL[key]["gflops"]:
            yield pytest.param(name, key, int(img), id=f"{name}@{img}")


@pytest.mark.parametrize("name,key,img", list(_cases("training")))
def test_training_form_equals_official(name: str, key: str, img: int) -> None:
    ref = OFFICIAL[key]
    a = analyze(yolov7c.graph(name), img)
    assert a.params == ref["params"]
    for conv, field in CONVENTIONS.items():
        assert abs(float(a.gflops(conv)) - ref[field][img]) < 0.01, conv
        # exact to the op, not just to 0.01 GFLOPs
        assert abs(float(a.flops(conv)) - ref[field][img] * 1e9) < 1.0, conv


@pytest.mark.parametrize("name,key,img", list(_cases("deploy")))
@pytest.mark.parametrize("fused", [False, True], ids=["deploy-cfg", "fused"])
def test_deploy_forms_equal_official(name: str, key: str, img: int, fused: bool) -> None:
    ref = OFFICIAL[key]
    prefix = "fused_" if fused else ""
    a = analyze(to_deploy(yolov7c.graph(name), fuse=fused), img)
    assert a.params == ref[prefix + "params"]
    for conv, field in CONVENTIONS.items():
        assert abs(float(a.flops(conv)) - ref[prefix + field][img] * 1e9) < 1.0, conv


def test_every_zoo_model_has_official_figures() -> None:
    for name in yolov7c.zoo.list():
        e = yolov7c.zoo.entry(name)
        assert e.official_deploy in OFFICIAL, name
        assert e.official_training is None or e.official_training in OFFICIAL, name


def test_packaged_figures_equal_shared_reference(shared) -> None:
    ref = shared.json("reference", "official_figures.json")
    assert set(ref) == set(OFFICIAL)
    for key, figures in ref.items():
        for field, value in figures.items():
            if isinstance(value, dict):
                assert {int(k): v for k, v in value.items()} == dict(OFFICIAL[key][field])
            else:
                assert OFFICIAL[key][field] == value, (key, field)


def test_nc_and_anchor_count_change_the_head_only() -> None:
    g80, g3 = yolov7c.graph("yolov7", nc=80), yolov7c.graph("yolov7", nc=3)
    a80, a3 = analyze(g80, 640), analyze(g3, 640)
    # per level: conv weight c_in·na·(nc+5), bias na·(nc+5), ImplicitM na·(nc+5)
    cins = (256, 512, 1024)  # yolov7's three lead RepConv widths
    assert a80.params - a3.params == (sum(cins) + 2 * len(cins)) * 3 * (80 - 3)
    four = ((10, 13, 16, 30, 33, 23, 5, 5),) * 3
    assert yolov7c.graph("yolov7", nc=3, anchors=four).c_out(g3.head.index) == 4 * 8
