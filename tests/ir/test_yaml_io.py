"""Official cfg import/export: round trips, official-style files, and row-level errors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import yolov7c
from yolov7c.errors import UserError
from yolov7c.ir.analysis import analyze
from yolov7c.ir.deploy import to_deploy
from yolov7c.ir.yaml_io import from_cfg, from_yaml, to_yaml

# A small cfg in the official format, shared with tests/hardening (tests/small_cfg.yaml)
SMALL = (Path(__file__).resolve().parents[1] / "small_cfg.yaml").read_text()


def test_small_official_cfg_imports() -> None:
    g = from_yaml(SMALL)
    assert [n.op for n in g.nodes][-1] == "IDetect" and g.nc == 2
    assert g.c_out(4) == 32 and g.c_out(10) == 64 and g.strides == (8, 16)
    assert g[0].attrs["act"] == "leaky" and g[7].attrs["act"] == "silu"
    assert g[6].attrs == {"k": 5, "s": 1}
    # params by hand: conv0 16·3·9+32, conv1 32·16·9+64, two 1×1 16·32+32 each,
    # RepConv 32·32·9+64 + 32·32+64 + identity BN 64, conv8 32·32·9+64,
    # IDetect: convs (64+1)·21 + (32+1)·21, ImplicitA 64+32, ImplicitM 2·21
    expect = (16*27+32) + (32*16*9+64) + 2*(16*32+32) + (32*32*9+64 + 32*32+64 + 64) \
        + (32*32*9+64) + (65*21 + 33*21) + (64+32) + 2*21
    assert analyze(g, 64).params == expect == sum(
        p.numel() for p in yolov7c.build(g).parameters())


@pytest.mark.parametrize("name", yolov7c.zoo.list())
def test_round_trip_is_identical(name: str) -> None:
    for g in (yolov7c.graph(name), to_deploy(yolov7c.graph(name), fuse=False)):
        back = from_yaml(to_yaml(g))
        assert back.nodes == g.nodes and back.blocks == g.blocks
        assert (back.name, back.form, back.in_channels) == (g.name, g.form, g.in_channels)


@pytest.mark.parametrize("name", yolov7c.zoo.list())
def test_official_style_cfg_gives_the_zoo_numbers(name: str) -> None:
    """Without our metadata key (as the official files are), the architecture and the
    numbers are those of the zoo model, in training and in deploy-cfg form."""
    for g in (yolov7c.graph(name), to_deploy(yolov7c.graph(name), fuse=False)):
        cfg = yaml.safe_load(to_yaml(g))
        del cfg["yolov7c"]
        imported = from_cfg(cfg, name)
        assert [(n.op, n.inputs, dict(n.attrs)) for n in imported.nodes] == \
            [(n.op, n.inputs, dict(n.attrs)) for n in g.nodes]
        assert imported.form == g.form
        a, b = analyze(imported, 640), analyze(g, 640)
        assert (a.params, a.flops("official"), a.flops("paper")) == \
            (b.params, b.flops("official"), b.flops("paper"))


def test_deploy_cfg_imports_as_deploy_form() -> None:
    g = from_yaml(to_yaml(to_deploy(yolov7c.graph("yolov7"), fuse=False)))
    assert g.form == "deploy" and g.head.op == "Detect"
    assert analyze(g, 640).params == 37_620_125  # official deploy/yolov7 (unfused)


@pytest.mark.parametrize("edit,match", [
    ("  [[-1, 1, Conv, [16, 3, 2, None, 1, nn.LeakyReLU(0.1)]],",
     None),
    ("  [[-1, 1, Conv, [16, 3, 2, None, 1, \"__import__('os').system('touch PWNED')\"]],",
     r"backbone row 0 \(layer 0\): activation .* is not one of"),
    ("  [[-1, 1, Bogus, [16]],", r"backbone row 0 \(layer 0\): unknown module 'Bogus'"),
    ("  [[-1, 1, Conv],", r"backbone row 0 \(layer 0\): a row is \[from, number, module, args\]"),
    ("  [[-5, 1, Conv, [16, 3, 2]],", r"'from' -5 points to layer -5, out of range"),
    ("  [[-1, 3, Conv, [16, 3, 2]],", r"repeated layers are not supported"),
    ("  [[-1, 1, Conv, [0, 3, 2]],", r"output width 0 must be a positive integer"),
])
def test_bad_rows_name_file_and_row(tmp_path: Path, edit: str, match: str | None) -> None:
    lines = SMALL.splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith("[[-1, 1, Conv, [16"))
    lines[i] = edit
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        if match is None:
            from_yaml(path)
            return
        with pytest.raises(UserError, match=match) as e:
            from_yaml(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        assert not (tmp_path / "PWNED").exists()  # nothing from the file was executed
    finally:
        os.chdir(cwd)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("nc: 2\nbackbone: [[-1, 1, Conv, [16]]\nhead: []\n")
    with pytest.raises(UserError, match=r"broken.yaml line \d+: not valid YAML"):
        from_yaml(path)


def test_fused_graph_has_no_official_form() -> None:
    with pytest.raises(UserError, match="BN-folded conv has no official cfg form"):
        to_yaml(to_deploy(yolov7c.graph("yolov7-tiny")))


def test_cfg_export_leaves_pyyaml_global_dumper_alone():
    """Writing a cfg must not change how the rest of the process dumps lists."""
    import yaml

    from yolov7c.ir import yaml_io
    assert yaml_io._FlowList not in yaml.SafeDumper.yaml_representers
    assert "[1, 2]" in yaml.dump({"a": yaml_io._FlowList([1, 2])}, Dumper=yaml_io._CfgDumper)
