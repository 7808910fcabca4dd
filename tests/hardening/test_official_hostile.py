"""The official .pt importer against crafted and malformed files: every declared size is
checked before anything is allocated, and every refusal is one line naming the numbers.
Each case here was reproduced on the importer before the hardening (issue 12, items 3, 5)."""
from __future__ import annotations

import pickle
import time
import zipfile
from pathlib import Path

import pytest
import torch

from yolov7c.backends.torch.official import import_official
from yolov7c.backends.torch.safe_pickle import unpickle
from yolov7c.errors import UserError


def _refused(path: Path, match: str) -> str:
    with pytest.raises(UserError, match=match) as e:
        import_official(path)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def _rezip(src: Path, dst: Path, edit) -> Path:
    """Copy a torch zip, letting ``edit(name, bytes) -> (bytes, compress_type)`` rewrite it."""
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for info in zi.infolist():
            data, kind = edit(info.filename, zi.read(info.filename))
            if data is not None:
                zo.writestr(info.filename, data, compress_type=kind)
    return dst


def test_positive_control_imports_exactly(tmp_path, official_tree, write_official, small_model):
    net = import_official(write_official(official_tree, tmp_path / "ok.pt"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        err = (net(x)[0] - small_model(x)[0]).abs().max().item()
    print(f"official-style import vs source module: max abs err {err:.2e}")
    assert err == 0


def test_stride0_tensor_is_refused_before_allocating(tmp_path):
    """611-byte file, stride-0 view of one element declaring 1.6e9 of them (3.2 GB once)."""
    p = tmp_path / "s0.pt"
    torch.save({"model": torch.zeros(1, dtype=torch.half).expand(40_000, 40_000)}, p)
    assert p.stat().st_size < 2000
    t = time.perf_counter()
    _refused(p, r"refused: a tensor of shape \(40000, 40000\) \(1,600,000,000 elements\) over "
                r"a storage of 1 elements")
    assert time.perf_counter() - t < 5


def test_offset_past_storage_is_refused(tmp_path):
    p = tmp_path / "off.pt"
    torch.save({"t": torch.zeros(10)[6:]}, p)      # offset 6, 4 elements: fine
    assert unpickle(p)["t"].shape == (4,)
    data = bytearray(zipfile.ZipFile(p).read("off/data.pkl"))
    i = data.index(b"K\x06")                        # BININT1 6: the storage offset
    data[i + 1] = 9                                 # offset 9 + 4 elements > 10
    bad = _rezip(p, tmp_path / "bad.pt", lambda n, b: (bytes(data) if n.endswith("data.pkl")
                                                          else b, zipfile.ZIP_STORED))
    with pytest.raises(UserError, match="reach past its storage of 10 elements"):
        unpickle(bad)


def test_zip_bomb_storage_is_refused_by_declared_size(tmp_path, official_tree, write_official):
    ok = write_official(official_tree, tmp_path / "ok.pt")
    big = b"\0" * (3 << 30 >> 4)  # 192 MB of zeros deflate to ~190 KB

    def edit(name, data):
        return (big, zipfile.ZIP_DEFLATED) if name.endswith("/data/0") else \
            (data, zipfile.ZIP_STORED)
    bomb = _rezip(ok, tmp_path / "bomb.pt", edit)
    assert bomb.stat().st_size < 2 << 20
    import yolov7c.backends.torch.safe_pickle as off
    old = off.MAX_STORAGE_BYTES
    off.MAX_STORAGE_BYTES = 64 << 20     # the real limit (2 GiB) is too big to build in a test
    try:
        _refused(bomb, r"refused: storage 0 inflates to 201,326,592 bytes")
    finally:
        off.MAX_STORAGE_BYTES = old


def test_huge_pickle_string_is_refused(tmp_path):
    """A 100 MB string deflates to ~100 KB; the pickle's declared size is checked first."""
    p = tmp_path / "s.pt"
    torch.save({"x": 1}, p)

    def edit(name, data):
        if name.endswith("data.pkl"):
            return pickle.dumps({"model": "a" * (100 << 20)}, protocol=2), zipfile.ZIP_DEFLATED
        return data, zipfile.ZIP_STORED
    bomb = _rezip(p, tmp_path / "str.pt", edit)
    assert bomb.stat().st_size < 1 << 20
    _refused(bomb, r"refused: the pickle inflates to 104,857,6\d\d bytes \(limit 67,108,864")


def test_deeply_nested_pickle_is_one_line(tmp_path):
    p = tmp_path / "d.pt"
    torch.save({"x": 1}, p)
    n = 100_000   # EMPTY_LIST ×n, APPEND ×(n-1): a list nested n deep, no recursion to build
    deep = b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."
    bad = _rezip(p, tmp_path / "deep.pt", lambda name, b: (
        deep if name.endswith("data.pkl") else b, zipfile.ZIP_STORED))
    _refused(bad, r"no official models.yolo.Model inside \(found \[\[\[")


def test_deep_module_nesting_is_refused(tmp_path, official_tree, write_official):
    node = official_tree["children"]["model"]["children"]["0"]
    for _ in range(300):
        node["children"] = {"m": {"module": "models.common", "name": "Conv",
                                  "state": {"_modules": {}, "_parameters": {}, "_buffers": {}},
                                  "children": {}}}
        node = node["children"]["m"]
    import sys
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)   # pickling the crafted file needs it; reading must not
    try:
        p = write_official(official_tree, tmp_path / "nest.pt")
    finally:
        sys.setrecursionlimit(old)
    _refused(p, r"refused: modules nested deeper than 200 levels")


def test_head_without_nc(tmp_path, official_tree, write_official):
    head = official_tree["children"]["model"]["children"]["11"]
    del head["state"]["nc"]
    _refused(write_official(official_tree, tmp_path / "nonc.pt"),
             r"the detection head's nc is None, expected a positive integer")


def test_anchor_grid_as_list(tmp_path, official_tree, write_official):
    head = official_tree["children"]["model"]["children"]["11"]
    head["state"]["_buffers"]["anchor_grid"] = [[1.0, 2.0]]
    _refused(write_official(official_tree, tmp_path / "ag.pt"),
             r"malformed module record: model.11.anchor_grid is a list, expected a tensor")


@pytest.mark.parametrize("value,match", [
    ({"w": 1}, r"_parameters is a dict with|model.0.conv.w is a int"),
    ("x", r"_parameters is a str, expected a dict"),
])
def test_malformed_parameters(tmp_path, official_tree, write_official, value, match):
    conv = official_tree["children"]["model"]["children"]["0"]["children"]["conv"]
    conv["state"]["_parameters"] = value
    _refused(write_official(official_tree, tmp_path / "p.pt"), match)


def test_fused_checkpoint_gets_the_fused_message(tmp_path, official_tree, write_official):
    """official model.fuse() pickles forward = fuseforward as getattr(obj, name); it was
    refused as 'may be malicious'."""
    official_tree["children"]["model"]["children"]["7"]["fused"] = True
    msg = _refused(write_official(official_tree, tmp_path / "fused.pt"),
                   r"a fused \(model.fuse\(\)\) checkpoint; import the unfused")
    assert "malicious" not in msg


def test_cfg_declaring_more_than_the_weights_is_refused_before_lowering(
        tmp_path, official_tree, write_official):
    cfg = official_tree["state"]["yaml"]
    cfg["width_multiple"] = 16.0      # 16x the widths: ~256x the parameters, no weights for them
    _refused(write_official(official_tree, tmp_path / "w.pt"),
             r"the cfg declares [\d,]+ parameters but the file holds [\d,]+ weight values")


def test_weight_shape_and_nan_name_the_key(tmp_path, official_tree, write_official):
    conv = official_tree["children"]["model"]["children"]["1"]["children"]["conv"]
    conv["state"]["_parameters"]["weight"] = torch.zeros(16, 32, 3, 3, dtype=torch.half)
    _refused(write_official(official_tree, tmp_path / "shape.pt"),
             r"weight model.1.conv.weight has shape \(16, 32, 3, 3\), the cfg needs "
             r"\(32, 16, 3, 3\)")
    conv["state"]["_parameters"]["weight"] = torch.full((32, 16, 3, 3), float("nan")).half()
    _refused(write_official(official_tree, tmp_path / "nan.pt"),
             r"weight model.1.conv.weight holds NaN")


def test_garbage_and_truncated_archives(tmp_path, official_tree, write_official):
    ok = write_official(official_tree, tmp_path / "ok.pt").read_bytes()
    for name, data in [("empty.pt", b""), ("half.pt", ok[: len(ok) // 2]),
                       ("junk.pt", b"PK\x03\x04" + b"\xff" * 200)]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as e:
            import_official(tmp_path / name)
        assert "\n" not in str(e.value)


def test_entry_lying_about_its_size_is_not_inflated(tmp_path, official_tree, write_official):
    """A deflated storage whose central-directory size says 8 bytes but inflates to 64 MB:
    reading stops at the declared size (the limits were checked against it)."""
    import struct
    import tracemalloc
    ok = write_official(official_tree, tmp_path / "ok.pt")

    def edit(name, data):
        return (bytes(64 << 20), zipfile.ZIP_DEFLATED) if name.endswith("/data/0") else \
            (data, zipfile.ZIP_STORED)
    bomb = bytearray(_rezip(ok, tmp_path / "lie.pt", edit).read_bytes())
    name = next(n for n in zipfile.ZipFile(tmp_path / "lie.pt").namelist()
                if n.endswith("/data/0")).encode()
    i = 0
    while True:                        # the central-directory record of that entry
        i = bomb.index(b"PK\x01\x02", i + 1)
        n = struct.unpack_from("<H", bomb, i + 28)[0]
        if bytes(bomb[i + 46:i + 46 + n]) == name:
            struct.pack_into("<I", bomb, i + 24, 8)   # uncompressed size := 8
            break
    lie = tmp_path / "lie.pt"
    lie.write_bytes(bytes(bomb))
    tracemalloc.start()
    try:
        _refused(lie, r"Bad CRC-32 for file '.*/data/0'|inflates to more than its declared 8")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"lying entry: peak traced memory {peak / 2**20:.1f} MB for a 64 MB payload")
    assert peak < 16 << 20
