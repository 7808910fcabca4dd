"""The dataset loader's header checks, thread pool and label cache (issue 21 §7): a warm load
opens no image or label file and gives exactly what a cold load gives; any file change, a
corrupt or foreign cache, or a folder that cannot be written falls back to reading the files."""
from __future__ import annotations

import io
import json
import os
import shutil
import time

import numpy as np
import PIL.Image
import pytest
from PIL import Image

from yolov7c.data import dataset as D
from yolov7c.data import headers, label_cache, load_dataset, make_synthetic
from yolov7c.errors import UserError

pytestmark = pytest.mark.one_thread


@pytest.fixture
def ds_yaml(tmp_path, monkeypatch):
    """A fresh set; the racy-file margin off, so its first load is cached (the margin has its
    own test)."""
    monkeypatch.setattr(label_cache, "RACY_NS", 0)
    return make_synthetic(tmp_path / "ds", train=0, val=12, img=48, nc=3, seed=1)


def test_files_changed_just_before_a_load_are_not_cached(ds_yaml, monkeypatch, captured_logs):
    monkeypatch.setattr(label_cache, "RACY_NS", 10**12)   # every file is "just changed"
    with captured_logs() as logs:
        load_dataset(ds_yaml)
    assert not _cache(ds_yaml).exists()
    assert any("files changed in the last" in r.getMessage() for r in logs)
    monkeypatch.setattr(label_cache, "RACY_NS", 300_000_000)
    time.sleep(0.4)                                       # older than the margin: cached
    load_dataset(ds_yaml)
    assert _cache(ds_yaml).is_file()


def _cache(y):
    return y.parent / "labels" / "val.cache"


def _same(a, b):
    assert a.paths == b.paths and a.shapes == b.shapes and a.skipped == b.skipped
    assert a.names == b.names and a.image_ids == b.image_ids and a.cat_ids == b.cat_ids
    assert len(a.labels) == len(b.labels)
    for u, v in zip(a.labels, b.labels):
        assert u.dtype == v.dtype == np.float32 and u.shape == v.shape
        np.testing.assert_array_equal(u, v)


def _no_file_reads(monkeypatch):
    """Make opening an image or parsing a label fail loudly."""
    def boom(*a, **k):
        raise AssertionError(f"opened {a[:1]} on a warm load")
    monkeypatch.setattr(PIL.Image, "open", boom)
    monkeypatch.setattr(D, "parse_label_file", boom)


def test_cache_written_then_reused_without_opening_files(ds_yaml, monkeypatch):
    cold = load_dataset(ds_yaml)
    assert _cache(ds_yaml).is_file()
    with monkeypatch.context() as m:
        _no_file_reads(m)
        warm = load_dataset(ds_yaml)
    _same(cold, warm)
    _cache(ds_yaml).unlink()
    with monkeypatch.context() as m:   # the spy does catch a load that reads the files
        _no_file_reads(m)
        with pytest.raises(AssertionError, match="warm load"):
            load_dataset(ds_yaml)


def test_cached_equals_uncached_with_a_skipped_image(ds_yaml, captured_logs):
    (ds_yaml.parent / "images" / "val" / "zz.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with captured_logs() as cold_logs:
        cold = load_dataset(ds_yaml)
    with captured_logs() as warm_logs:
        warm = load_dataset(ds_yaml)
    _same(cold, warm)
    assert len(cold) == 12 and cold.skipped == [str(ds_yaml.parent / "images/val/zz.jpg")]
    for logs in (cold_logs, warm_logs):   # the warning is said on every load
        assert any("zz.jpg: image does not decode" in r.getMessage() for r in logs)


def test_label_change_invalidates_even_with_the_same_size_and_mtime(ds_yaml):
    load_dataset(ds_yaml)
    lab = ds_yaml.parent / "labels" / "val" / "000003.txt"
    st = os.stat(lab)
    text = lab.read_text()
    new = "2" + text[1:] if text[0] != "2" else "1" + text[1:]
    lab.write_text(new)
    os.utime(lab, ns=(st.st_atime_ns, st.st_mtime_ns))   # as `touch -r` or rsync -t would
    assert os.stat(lab).st_size == st.st_size and os.stat(lab).st_mtime_ns == st.st_mtime_ns
    ds = load_dataset(ds_yaml)
    assert ds.labels[3][0, 0] == float(new[0])
    lab.write_text(text + "0 0.5 0.5 0.1 0.1\n")          # another size
    assert len(load_dataset(ds_yaml).labels[3]) == len(text.splitlines()) + 1


def test_a_cache_never_lets_a_bad_label_through(ds_yaml):
    load_dataset(ds_yaml)
    lab = ds_yaml.parent / "labels" / "val" / "000005.txt"
    lab.write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(UserError, match=r"000005.txt:1: class 7 out of range"):
        load_dataset(ds_yaml)
    lab.write_text("2 0.5 0.5 0.2 0.2\n")
    load_dataset(ds_yaml)                                  # cached with nc=3
    y = ds_yaml.read_text().replace("nc: 3", "nc: 2").replace("- triangle\n", "")
    ds_yaml.write_text(y)                                  # fewer classes: checked again
    with pytest.raises(UserError, match=r"val/0000..\.txt:1: class 2 out of range; .*nc=2"):
        load_dataset(ds_yaml)


@pytest.mark.parametrize("corrupt", [
    b"", b"\x00\xff garbage", b"{\"version\": 1", b"[1, 2]", b"{}",
    "version", "key", "labels", "counts", "shapes", "negative counts", "zero sizes", "warnings"])
def test_corrupt_or_foreign_cache_is_rebuilt(ds_yaml, corrupt):
    cold = load_dataset(ds_yaml)
    c = _cache(ds_yaml)
    if isinstance(corrupt, bytes):
        c.write_bytes(corrupt)
    else:
        d = json.loads(c.read_text())
        if corrupt == "negative counts":     # right size, bad values
            d["counts"] = label_cache._b64(np.full(12, -1), "<i8")
        elif corrupt == "zero sizes":
            d["shapes"] = label_cache._b64(np.zeros((12, 2)), "<i4")
        else:
            d[corrupt] = {"version": 99, "key": "0" * 64, "warnings": 7}.get(corrupt, "AAAA")
        c.write_text(json.dumps(d))
    _same(cold, load_dataset(ds_yaml))
    d = json.loads(c.read_text())                          # rewritten, current again
    assert d["version"] == label_cache.VERSION and len(d["key"]) == 64


def test_unwritable_cache_place_still_loads(ds_yaml, monkeypatch, captured_logs):
    c = _cache(ds_yaml)
    c.mkdir()                                              # a folder where the file would go
    with captured_logs() as logs:
        a = load_dataset(ds_yaml)
    assert c.is_dir() and any("label cache not written" in r.getMessage() and
                              r.levelname == "DEBUG" for r in logs)
    c.rmdir()
    target = ds_yaml.parent / "elsewhere.txt"
    target.write_text("keep me")
    c.symlink_to(target)                                   # never written through a link
    _same(a, load_dataset(ds_yaml))
    assert target.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_dataset_folder(ds_yaml):
    labels = ds_yaml.parent / "labels"
    os.chmod(labels, 0o555)
    try:
        a, b = load_dataset(ds_yaml), load_dataset(ds_yaml)
        assert not _cache(ds_yaml).exists()
        _same(a, b)
    finally:
        os.chmod(labels, 0o755)


def test_write_failure_is_silent(ds_yaml, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(label_cache, "write_json_atomic", denied)
    assert len(load_dataset(ds_yaml)) == 12 and not _cache(ds_yaml).exists()


def test_coco_cache_beside_the_json(ds_yaml, monkeypatch):
    j = ds_yaml.parent / "annotations" / "instances_val.json"
    imgs = ds_yaml.parent / "images" / "val"
    cold = load_dataset(j, images=imgs)
    assert j.with_suffix(".cache").is_file()
    with monkeypatch.context() as m:
        m.setattr(PIL.Image, "open", lambda *a, **k: 1 / 0)
        warm = load_dataset(j, images=imgs)
    _same(cold, warm)
    assert warm.gt_json() == cold.gt_json()
    shutil.copy(imgs / "000000.png", imgs / "000001.png")   # same size: 48x48; ctime changes
    assert load_dataset(j, images=imgs).shapes == cold.shapes


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    b = io.BytesIO()
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(b, fmt)
    return b.getvalue()


def _full_decode_ok(path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP"])
@pytest.mark.parametrize("damage", ["none", "truncated", "bit flip", "trailing bytes", "tiny"])
def test_header_check_agrees_with_a_full_decode(tmp_path, fmt, damage):
    d = _encoded(fmt)
    mid = len(d) // 2
    d = {"none": d, "truncated": d[:mid], "bit flip": d[:mid] + bytes([d[mid] ^ 0xFF]) + d[mid + 1:],
         "trailing bytes": d + b"\x00junk", "tiny": d[:1]}[damage]
    p = tmp_path / f"x.{fmt.lower()}"
    p.write_bytes(d)
    hw, warning = headers.image_size(str(p), os.stat(p))
    ok = _full_decode_ok(p)
    assert (hw is not None) == ok, (hw, warning)
    assert hw in (None, (40, 56)) and (warning is None) == ok


def test_fifo_image_is_skipped_not_waited_on(ds_yaml):
    os.mkfifo(ds_yaml.parent / "images" / "val" / "zz.png")
    ds = load_dataset(ds_yaml)
    assert len(ds) == 12 and ds.skipped[0].endswith("zz.png")


def test_first_error_in_order_is_raised(monkeypatch):
    monkeypatch.setattr(headers, "WORKERS", 4)

    def f(i):
        if i in (30, 70):
            raise ValueError(i)
        return i * 2
    assert headers.map_ordered(f, list(range(30))) == [i * 2 for i in range(30)]
    with pytest.raises(ValueError, match="^30$"):
        headers.map_ordered(f, list(range(100)))


def test_first_bad_label_in_image_order_is_named(ds_yaml, monkeypatch):
    monkeypatch.setattr(headers, "WORKERS", 4)
    for name in ("000010.txt", "000002.txt"):
        (ds_yaml.parent / "labels" / "val" / name).write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(UserError, match=r"000002.txt:1: 4 columns"):
        load_dataset(ds_yaml)
    assert not _cache(ds_yaml).exists()
