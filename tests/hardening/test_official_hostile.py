"""The official .pt importer against crafted and malformed files: every declared size is
checked before anything is allocated, and every refusal is one line naming the numbers.
Each case here was reproduced on the importer before the hardening (issue 12, items 3, 5)."""
from __future__ import annotations

import codecs
import math
import pickle
import re
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
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
    _refused(bomb, r"refused: the pickle inflates to 104,857,6\d\d bytes \(limit 16,777,216")


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
    """A deflated storage whose central-directory size is the true one (what the pickle
    declares) but inflates to 64 MB: reading stops at the declared size (the limits were
    checked against it)."""
    import struct
    import tracemalloc
    ok = write_official(official_tree, tmp_path / "ok.pt")

    def edit(name, data):
        return (bytes(64 << 20), zipfile.ZIP_DEFLATED) if name.endswith("/data/0") else \
            (data, zipfile.ZIP_STORED)
    bomb = bytearray(_rezip(ok, tmp_path / "lie.pt", edit).read_bytes())
    name = next(n for n in zipfile.ZipFile(tmp_path / "lie.pt").namelist()
                if n.endswith("/data/0"))
    true = zipfile.ZipFile(ok).getinfo(name).file_size
    name = name.encode()
    i = 0
    while True:                        # the central-directory record of that entry
        i = bomb.index(b"PK\x01\x02", i + 1)
        n = struct.unpack_from("<H", bomb, i + 28)[0]
        if bytes(bomb[i + 46:i + 46 + n]) == name:
            struct.pack_into("<I", bomb, i + 24, true)   # uncompressed size := the true one
            break
    lie = tmp_path / "lie.pt"
    lie.write_bytes(bytes(bomb))
    tracemalloc.start()
    try:
        _refused(lie, rf"Bad CRC-32 for file '.*/data/0'|inflates to more than its declared "
                      rf"{true:,}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"lying entry: peak traced memory {peak / 2**20:.1f} MB for a 64 MB payload")
    assert peak < 16 << 20


# ----------------------------------------------- views, BUILD/set_ and deflated storages (issue 20 §2)

RSS_PROBE = """
import json, sys, time
from yolov7c.errors import UserError
from yolov7c.limits import peak_rss_mb
from yolov7c.backends.torch.official import import_official
t = time.perf_counter()
try:
    import_official(sys.argv[1])
    msg = None
except UserError as e:
    msg = str(e)
print(json.dumps({"msg": msg, "s": time.perf_counter() - t,
                  "rss_mb": peak_rss_mb()}))
"""


def _import_in_subprocess(path: Path) -> dict:
    """import_official in a fresh process: its message, seconds and peak RSS (MB). The
    address space is capped at 8 GB so a regression fails here instead of swapping."""
    import json
    import resource
    import subprocess
    import sys

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", RSS_PROBE, str(path)], capture_output=True,
                       text=True, timeout=300, cwd=repo, preexec_fn=cap)
    assert r.returncode == 0, r.stderr[-1500:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{path.name}: {out['rss_mb']:.0f} MB peak RSS, {out['s']:.1f} s: {out['msg']}")
    return out


def _bounded_refusal(path: Path, match: str) -> None:
    out = _import_in_subprocess(path)
    assert out["msg"] is not None and re.search(match, out["msg"]), out
    assert "\n" not in out["msg"] and out["rss_mb"] < 1024 and out["s"] < 30, out


class _SetView:
    """Pickles as a 1-element fp16 tensor followed by a BUILD whose legacy state
    (storage, offset, size, stride) re-views that storage: what ``Tensor.__setstate__`` turns
    into ``set_``. ``stride0``: a stride-0 view of ``size`` (a 6.4 KB file reached 6.7 GB)."""

    def __init__(self, size: tuple[int, ...], stride0: bool = True) -> None:
        self.size, self.stride0 = size, stride0

    def __reduce__(self):
        import collections
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = torch.zeros(math.prod(self.size) if not self.stride0 else 1,
                             dtype=torch.half).storage()
        stride = (0,) * len(self.size) if self.stride0 else torch.empty(self.size).stride()
        return (torch._utils._rebuild_tensor_v2,
                (st, 0, (1,), (1,), False, collections.OrderedDict()),
                (st, 0, self.size, stride))


def test_legacy_set_within_its_storage_still_loads(tmp_path):
    """The positive control of the BUILD check: a dense re-view inside its storage."""
    p = tmp_path / "set.pt"
    torch.save({"t": _SetView((2, 3), stride0=False)}, p)
    t = unpickle(p)["t"]
    assert t.shape == (2, 3) and t.dtype == torch.half


def test_stride0_anchor_grid_by_build_is_refused_in_bounded_memory(
        tmp_path, official_tree, write_official):
    head = official_tree["children"]["model"]["children"]["11"]
    head["state"]["_buffers"]["anchor_grid"] = _SetView((2, 1, 3, 8000, 8000, 2))
    p = write_official(official_tree, tmp_path / "ag0.pt")
    assert p.stat().st_size < 1 << 20
    _bounded_refusal(p, r"refused: a tensor of shape \(2, 1, 3, 8000, 8000, 2\) "
                        r"\(768,000,000 elements\) over a storage of 1 elements")


def test_stride0_extra_buffer_by_build_is_refused_in_bounded_memory(
        tmp_path, official_tree, write_official):
    conv = official_tree["children"]["model"]["children"]["0"]["children"]["conv"]
    conv["state"]["_buffers"]["junk"] = _SetView((25000, 25000))
    _bounded_refusal(write_official(official_tree, tmp_path / "buf0.pt"),
                     r"refused: a tensor of shape \(25000, 25000\)")


def _pk_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _pk_int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _pk_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _pk_storage(numel: int) -> bytes:
    """BINPERSID ('storage', HalfStorage, '0', 'cpu', numel), memoized as 0."""
    return (b"(" + _pk_str("storage") + _pk_global("torch", "HalfStorage") + _pk_str("0")
            + _pk_str("cpu") + _pk_int(numel) + b"tQq\x00")


def _pk_tensor(n: int) -> bytes:
    """_rebuild_tensor_v2(storage 0, 0, (n,), (1,), False, OrderedDict())."""
    return (_pk_global("torch._utils", "_rebuild_tensor_v2") + b"(h\x00" + _pk_int(0)
            + _pk_int(n) + b"\x85" + _pk_int(1) + b"\x85\x89"
            + _pk_global("collections", "OrderedDict") + b")RtR")


def _with_pickle(tmp_path: Path, stream: bytes, storage: bytes = bytes(2)) -> Path:
    """A torch zip named c.pt whose data.pkl is ``stream`` and storage 0 holds ``storage``."""
    p = tmp_path / "c.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("c/data.pkl", b"\x80\x02" + stream + b".")
        zf.writestr("c/byteorder", b"little")
        zf.writestr("c/data/0", storage)
    return p


def test_build_on_a_storage_is_refused(tmp_path):
    """BUILD on the storage itself once re-viewed it as 600 M elements, which then passed the
    'tensor no larger than its storage' check."""
    n = 600_000_000
    stream = (_pk_storage(1) + b"(h\x00" + _pk_int(0) + _pk_int(n) + b"\x85" + _pk_int(0)
              + b"\x85tb0" + b"}" + _pk_str("t") + _pk_tensor(n) + b"s")
    p = _with_pickle(tmp_path, stream)
    with pytest.raises(UserError, match=r"refused: the pickle sets the state of a _StorageRef"):
        unpickle(p)


def test_storage_size_must_match_what_the_pickle_declares(tmp_path):
    p = _with_pickle(tmp_path, b"}" + _pk_str("t") + _pk_storage(10) + b"0" + _pk_tensor(1)
                     + b"s")
    with pytest.raises(UserError, match=r"storage 0 holds 2 bytes, not the 10 torch.float16 "
                                        r"elements the pickle declares"):
        unpickle(p)


def test_deflated_storage_bomb_is_refused_before_inflating(tmp_path):
    """2.7 MB on disk, one storage declaring (and inflating to) 608 MB: the ratio is
    checked from the zip header, nothing is inflated (it once took 4.36 GB)."""
    n = 304 << 20                                    # fp16 elements: 608 MB
    p = tmp_path / "c.pt"
    stream = b"}" + _pk_str("t") + _pk_storage(n) + b"0" + _pk_tensor(1) + b"s"
    info = zipfile.ZipInfo("c/data/0")
    info.compress_type, info._compresslevel = zipfile.ZIP_DEFLATED, 1
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("c/data.pkl", b"\x80\x02" + stream + b".")
        zf.writestr("c/byteorder", b"little")
        with zf.open(info, "w", force_zip64=True) as f:
            chunk = bytes(16 << 20)
            for _ in range(n * 2 // len(chunk)):
                f.write(chunk)
    assert p.stat().st_size < 4 << 20
    _bounded_refusal(p, r"refused: entry 'c/data/0' inflates [\d,]+ → 637,534,208 bytes "
                        r"\(over 100x")


def test_many_views_of_one_storage_are_refused_in_bounded_memory(tmp_path):
    """300 views of one 4 MB storage, each rebuilt as a copy: 1.2 GB from a 4 MB file."""
    base = torch.zeros(1 << 20)
    p = tmp_path / "views.pt"
    torch.save({"model": [base.view(-1) for _ in range(300)]}, p)
    _bounded_refusal(p, r"refused: tensor \(1048576,\) brings the data built from the file "
                        r"to [\d,]+ bytes, more than twice what it stores")


def test_entry_count_is_checked_before_zipfile_reads_them(tmp_path, official_tree,
                                                          write_official, monkeypatch):
    import yolov7c.backends.torch.safe_pickle as sp
    p = write_official(official_tree, tmp_path / "ok.pt")
    n = len(zipfile.ZipFile(p).namelist())
    monkeypatch.setattr(sp, "MAX_MEMBERS", n - 1)
    _refused(p, rf"refused: the archive declares {n:,} entries \(limit {n - 1:,}")


# ------------------------------------------------ numpy data of the official trainer (issue 23 §0b)

def test_unstripped_official_trainer_layout_reads_as_data_and_imports_the_ema(
        tmp_path, official_tree, write_official, save_official_dict, small_model):
    """What the official train.py saves before strip_optimizer: model and ema (different
    weights), optimizer state, numpy best_fitness (``_codecs.encode`` bytes), a numpy scalar,
    training_results. Read as data; the import takes the EMA."""
    import copy
    ema = copy.deepcopy(official_tree)
    conv = ema["children"]["model"]["children"]["0"]["children"]["conv"]["state"]
    conv["_parameters"]["weight"] = conv["_parameters"]["weight"] * 0.5   # fp16-exact
    trained = copy.deepcopy(small_model)        # small_model is shared by the session
    opt = torch.optim.SGD(trained.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    for q in trained.parameters():
        q.grad = torch.ones_like(q)
    opt.step()
    opt_state = opt.state_dict()
    p = save_official_dict(tmp_path / "last.pt", {
        "epoch": 7, "best_fitness": np.array([0.25, 0.5]), "best_scalar": np.float64(0.125),
        "training_results": "   0/29  0.05  0.01\n", "model": official_tree, "ema": ema,
        "updates": 42, "optimizer": opt_state, "wandb_id": None})
    ck = unpickle(p)
    assert type(ck["best_fitness"]) is np.ndarray and ck["best_fitness"].tolist() == [0.25, 0.5]
    assert ck["best_scalar"] == 0.125 and ck["best_scalar"].dtype == np.float64
    assert ck["training_results"] == "   0/29  0.05  0.01\n" and ck["updates"] == 42
    assert ck["optimizer"]["param_groups"][0]["nesterov"] is True
    assert all(torch.equal(ck["optimizer"]["state"][i]["momentum_buffer"], s["momentum_buffer"])
               for i, s in opt_state["state"].items())
    got = import_official(p)
    want = import_official(write_official(ema, tmp_path / "ema.pt"))
    model = import_official(write_official(official_tree, tmp_path / "model.pt"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(got(x)[0], want(x)[0])
        assert not torch.equal(got(x)[0], model(x)[0])


class _Reduce:
    """Pickles as ``fn(*args)`` (with ``state``: followed by BUILD)."""

    def __init__(self, fn, args, state=None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _np_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:                         # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


@pytest.mark.parametrize("value,match", [
    (np.array([1, "a"], dtype=object), r"refused: numpy.dtype\('O8'"),
    (np.zeros(2, dtype=[("a", "f4")]), r"refused: numpy.dtype\('V4'"),
    (np.array(["ab"]), r"refused: numpy.dtype\('U2'"),
    (_Reduce(codecs.encode, ("\u0100", "latin1")), r"_codecs.encode of text that is not latin1"),
    (_Reduce(codecs.encode, ("x", "rot13")), r"_codecs.encode of a str with 'rot13'"),
    (_Reduce(codecs.encode, ("x", "zlib")), r"_codecs.encode of a str with 'zlib'"),
    (_Reduce(bytes, (10 ** 10,)), r"the pickle calls bytes\(10000000000,\)"),
    (_Reduce(np.ndarray, ((10 ** 6, 10 ** 6),)), r"the pickle calls numpy.ndarray itself"),
    (_Reduce("RECONSTRUCT", (np.ndarray, (0,), b"b"),
             (1, (10 ** 9,), np.dtype("f8"), False, b"\0" * 8)),
     r"a numpy array of shape \(1000000000,\) float64 needs 8,000,000,000 bytes"),
    (_Reduce("RECONSTRUCT", (np.ndarray, (4,), b"b"), None),
     r"numpy _reconstruct\(.*\(4,\)"),
    (_Reduce("RECONSTRUCT", (np.ndarray, (0,), b"b"), (1, (1,), np.dtype("f8"), False,
                                                           [1.0])),
     r"needs 8 bytes, the pickle gives a list"),
    (_Reduce(np.dtype, ("f8", False, True), (3, "<", None, ("a",), {"a": 1}, -1, -1, 0)),
     r"refused: numpy dtype state"),
    (_Reduce(np.dtype, ("f8", False, False)), r"refused: numpy.dtype\('f8', False, False\)"),
    (_Reduce("SCALAR", (np.dtype("f8"), b"\0" * 4), None), r"a numpy scalar of dtype"),
])
def test_hostile_numpy_and_codecs_data_is_refused(tmp_path, value, match):
    """Only numeric arrays, dtypes and scalars, and latin1 bytes, are data; each bend is
    refused in one line, nothing allocated from a declared size."""
    if isinstance(value, _Reduce) and value.fn == "RECONSTRUCT":
        value.fn = _np_reconstruct()
    if isinstance(value, _Reduce) and value.fn == "SCALAR":
        value.fn = np.float64(0).__reduce__()[0]
    p = tmp_path / "np.pt"
    torch.save({"best_fitness": value}, p)
    t = time.perf_counter()
    with pytest.raises(UserError, match=match) as e:
        unpickle(p)
    assert "\n" not in str(e.value) and time.perf_counter() - t < 5
