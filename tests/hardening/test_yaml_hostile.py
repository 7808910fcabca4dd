"""The official-cfg importer against hostile and malformed YAML: alias bombs, deep nesting,
non-UTF-8 bytes and bad values are one-line errors naming file, row and layer, and no error
prints an expanded value whole (issue 12, items 4, 5, 6; each reproduced before the fix)."""
from __future__ import annotations

import time

import pytest
import yaml

from yolov7c.errors import UserError
from yolov7c.ir.yaml_io import from_cfg, from_yaml

# nine levels of nine aliases: 9**9 = 387 million values from about 400 bytes
BOMB = """
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
nc: 2
anchors: [[10, 13, 16, 30]]
"""


def _refused(text_or_path, match: str) -> str:
    t = time.perf_counter()
    with pytest.raises(UserError, match=match) as e:
        from_yaml(text_or_path)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 500, msg[:500]
    assert time.perf_counter() - t < 5
    return msg


@pytest.mark.parametrize("rows", [
    "backbone: [[-1, 1, Conv, *i]]\nhead: []\n",            # the row error printed it whole
    "backbone: *i\nhead: []\n",                              # rows themselves
    "backbone: [[-1, 1, Conv, [16]]]\nhead: [[-1, 1, IDetect, [nc, *i]]]\n",
])
def test_alias_bomb_is_refused_with_a_short_message(rows):
    assert len(BOMB + rows) < 600
    _refused(BOMB + rows, r"refused: the cfg expands to more than 200,000 values")


def test_recursive_alias_is_refused():
    _refused("backbone: &r [*r]\nhead: []\n", r"refused: (values nested deeper|the cfg expands)")


def test_deep_nesting_is_refused():
    _refused("backbone: " + "[" * 1000 + "]" * 1000 + "\nhead: []\n",
             r"refused: (YAML nested too deeply|values nested deeper than 32)")
    _refused("backbone: " + "[" * 40 + "]" * 40 + "\nhead: []\n",
             r"refused: values nested deeper than 32 levels")


def test_non_utf8_file(tmp_path):
    p = tmp_path / "latin.yaml"
    p.write_bytes(b"nc: 2\n# caf\xe9\nbackbone: []\nhead: []\n")
    _refused(p, r"latin.yaml line 2: not UTF-8 text \(byte 0xe9 at offset 11\)")


def test_control_characters_do_not_reach_the_message(tmp_path):
    msg = _refused("nc: 2\nbackbone: [[-1, 1, \"\\e[31mBogus\\e[0m\", [1]]]\nhead: []\n",
                   r"unknown module")
    assert "\x1b" not in msg


def test_yaml_syntax_error_is_one_line():
    _refused("nc: 2\nbackbone: [\x14]\n", r"<yaml> line 2: not valid YAML")


ROW = "[-1, 1, Conv, [16, 3, 2]]"


@pytest.mark.parametrize("top,row,match", [
    ("depth_multiple: abc", ROW, r"depth_multiple 'abc' must be a number in \(0, 16\]"),
    ("width_multiple: .inf", ROW, r"width_multiple inf must be a number"),
    ("width_multiple: 0", ROW, r"width_multiple 0 must be a number"),
    ('ch: ""', ROW, r"ch '' \(input channels\) must be an integer in \[1, 64\]"),
    ("ch: 0", ROW, r"ch 0 \(input channels\)"),
    ("ch: -3", ROW, r"ch -3 \(input channels\)"),
    ("", "[-1, 1, Conv, [16, 3, 0]]", r"backbone row 0 \(layer 0\): stride 0 must be an integer"),
    ("", "[-1, 1, Conv, [16, -3, 1]]", r"row 0 \(layer 0\): kernel -3 must be an integer"),
    ("", "[-1, 1, Conv, [16, 2.5, 1]]", r"row 0 \(layer 0\): kernel 2.5 must be an integer"),
    ("", "[-1, 1, Conv, [16, 100001, 1]]", r"kernel 100001 must be an integer in \[1, 63\]"),
    ("", "[-1, 1, Conv, [-16, 3, 1]]", r"output width -16 must be a positive integer"),
    ("", "[-1, 1, Conv, [16, 3, 1, None, 3]]", r"groups 3 must divide the output width 16"),
    ("", "[-1, 1, Conv, [16, 3, 1, [1]]]", r"padding \[1\] other than k//2"),
    ("", "[-1, 1, MP, [0]]", r"row 0 \(layer 0\): MP kernel 0 must be an integer"),
    ("", "[-1, 1, SP, [3, -1]]", r"SP stride -1 must be an integer"),
    ("", "[-1, 1, nn.Upsample, [None, x, nearest]]", r"upsample scale 'x' must be an integer"),
    ("", "[-1, 1, nn.Upsample, [None, 2, bilinear]]", r"only 'nearest' is supported"),
    ("", "[-1, 1, Concat, [0]]", r"Concat joins channels: args \[1\], got \[0\]"),
    ("", "[-1, 1, [Conv], [16]]", r"unknown module \['Conv'\]"),
    ("", "[-1, 1, Conv, 16]", r"args 16 must be a list"),
    ("", "[true, 1, Conv, [16]]", r"'from' entries must be integers, got True"),
    ("", "[-1, true, Conv, [16]]", r"number=True"),
    ("", "[-1, 1, DownC, [16, 1, 0]]", r"DownC kernel 0 must be an integer"),
    ("yolov7c: {nodes: {0: 5}}", ROW, r"malformed 'yolov7c' key"),
    ("yolov7c: {blocks: {b: {args: 1}}}", ROW, r"malformed 'yolov7c' key"),
])
def test_bad_values_name_file_row_layer(tmp_path, top, row, match):
    p = tmp_path / "bad.yaml"
    p.write_text(f"nc: 2\nanchors: [[10, 13, 16, 30]]\n{top}\nbackbone: [{row}]\n"
                 f"head: [[-1, 1, Conv, [16, 1, 1]], [-1, 1, IDetect, [nc, anchors]]]\n")
    msg = _refused(p, match)
    assert str(p) in msg


@pytest.mark.parametrize("anchors,match", [
    ("[[10, 13, 16]]", r"anchors \[10, 13, 16\]: each level needs the same even number"),
    ("[[10, -13]]", r"anchors \[10, -13\]"),
    ("[[10, 13], [1, 2, 3, 4]]", r"each level needs the same even number"),
    ("[]", r"anchors must be a list of per-level"),
    ("3", r"anchors must be a list of per-level"),
])
def test_bad_anchors(anchors, match):
    _refused(f"nc: 2\nanchors: {anchors}\nbackbone: [[-1, 1, Conv, [16, 3, 2]]]\n"
             f"head: [[-1, 1, IDetect, [nc, anchors]]]\n", match)


def test_from_cfg_on_a_pickled_cfg_with_shared_references():
    """An official checkpoint's cfg comes from a pickle, which can share lists the way YAML
    aliases do: the same size walk refuses it."""
    row = [-1, 1, "Conv", [16]]
    big: list = [row] * 10
    for _ in range(6):
        big = [big] * 10
    cfg = yaml.safe_load("nc: 2\nhead: []\n")
    cfg["backbone"] = big
    with pytest.raises(UserError, match="refused: the cfg expands to more than 200,000"):
        from_cfg(cfg, source="pickled")
