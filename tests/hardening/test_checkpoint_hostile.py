"""``checkpoint.read`` / ``apply_weights`` against malformed and crafted files of our own
format: each is a one-line UserError naming the place, checked before anything big is built.
Before the hardening, 17 of 29 such files tracebacked (an empty file with an IndexError inside
the error handler) and a spec without weights asked for 129.6 GB (issue 12, items 3, 5, 8)."""
from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest
import torch

from yolov7c.backends.torch import checkpoint as ck
from yolov7c.backends.torch.lower import lower
from yolov7c.errors import UserError


@pytest.fixture(scope="module")
def saved(tmp_path_factory, small_model):
    p = tmp_path_factory.mktemp("ck") / "small.ckpt"
    ck.save(small_model, p, extra={"epoch": 3}, source="test")
    return p, torch.load(p, weights_only=True)


def _variant(tmp_path: Path, raw: dict, **change) -> Path:
    d = dict(raw)
    for k, v in change.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    p = tmp_path / "v.ckpt"
    torch.save(d, p)
    return p


def _refused(path: Path, match: str) -> str:
    t = time.perf_counter()
    with pytest.raises(UserError, match=match) as e:
        ck.read(path)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400 and "\x1b" not in msg, msg
    assert time.perf_counter() - t < 10
    return msg


def test_read_round_trip(saved, small_model):
    p, _ = saved
    r = ck.read(p)
    assert r["extra"] == {"epoch": 3} and r["meta"] == {"source": "test"}
    assert r["pipeline"] == [] and r["graph"].nodes == small_model.graph.nodes
    net = ck.apply_weights(lower(r["graph"]), r["state_dict"], p).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x)[0], small_model(x)[0])


@pytest.mark.parametrize("data,match", [
    (b"", r"empty file, not a yolov7c checkpoint"),
    (b"hello", r"not a yolov7c checkpoint \(not a torch zip archive"),
    (b"PK\x03\x04" + b"\0" * 64, r"not a yolov7c checkpoint \(not a torch zip archive"),
])
def test_garbage_files(tmp_path, data, match):
    p = tmp_path / "g.ckpt"
    p.write_bytes(data)
    _refused(p, match)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_files(tmp_path, saved, keep):
    data = saved[0].read_bytes()
    p = tmp_path / "t.ckpt"
    p.write_bytes(data[: int(len(data) * keep)])
    _refused(p, r"not a (readable )?yolov7c checkpoint")


def test_spec_without_weights_is_refused_before_allocating(tmp_path, saved):
    """The reproduced case: every width 60000 (~1e12 parameters) and an empty state_dict."""
    _, raw = saved
    spec = json.loads(raw["spec"])
    for n in spec["nodes"]:
        if "c" in n["attrs"]:
            n["attrs"]["c"] = 60_000
    _refused(_variant(tmp_path, raw, spec=json.dumps(spec), state_dict={}),
             r"refused: the spec declares [\d,]+ parameters \(limit 2,000,000,000\)")
    _refused(_variant(tmp_path, raw, state_dict={}),
             r"the weights hold 0 values but the stored architecture needs at least [\d,]+")


def test_non_finite_weight_names_the_key(tmp_path, saved):
    _, raw = saved
    sd = dict(raw["state_dict"])
    sd["model.1.conv.weight"] = sd["model.1.conv.weight"].clone()
    sd["model.1.conv.weight"][0, 0, 0, 0] = float("inf")
    _refused(_variant(tmp_path, raw, state_dict=sd),
             r"corrupted weights: model.1.conv.weight holds NaN or infinite")


def test_stride0_view_posing_as_huge_tensor(tmp_path, saved):
    _, raw = saved
    sd = dict(raw["state_dict"], big=torch.zeros(1).expand(3000, 1000, 1000))
    _refused(_variant(tmp_path, raw, state_dict=sd), r"refused: big declares 3,000,000,000")
    sd = dict(raw["state_dict"], view=torch.zeros(1).expand(1000))
    _refused(_variant(tmp_path, raw, state_dict=sd),
             r"view of shape \(1000,\) is not backed by its storage")


def test_stride0_view_in_the_training_state(tmp_path, saved):
    """extra (optimizer momentum, gradients) is read by the trainer: a stride-0 view there
    is materialised by the first update (issue 20 §4), so read refuses it by its path."""
    _, raw = saved
    extra = {"optimizer": {"state": {0: {"momentum_buffer": torch.zeros(1).expand(4096, 4096)}}}}
    _refused(_variant(tmp_path, raw, extra=extra),
             r"extra\['optimizer'\]\['state'\]\[0\]\['momentum_buffer'\] of shape "
             r"\(4096, 4096\) is not backed by its storage \(4 bytes\)")
    extra = {"grads": [torch.zeros(1).expand(100_000, 10_000, 2)]}
    _refused(_variant(tmp_path, raw, extra=extra),
             r"refused: extra\['grads'\]\[0\] brings the training state to "
             r"2,000,000,000 elements|not backed")


def test_entry_count_is_checked_first(tmp_path, saved, monkeypatch):
    import yolov7c.backends.torch.safe_pickle as sp
    n = len(zipfile.ZipFile(saved[0]).namelist())
    monkeypatch.setattr(sp, "MAX_MEMBERS", n - 1)
    _refused(saved[0], rf"refused: the archive declares {n:,} entries")


@pytest.mark.parametrize("change,match", [
    ({"format": "other/1"}, r"no 'yolov7c.checkpoint/1' marker"),
    ({"spec": "{"}, r"'spec' is not valid JSON"),
    ({"spec": "[" * 100_000 + "]" * 100_000}, r"'spec' is not valid JSON|malformed graph spec"),
    ({"spec": 5}, r"'spec' is a int, expected a JSON string"),
    ({"spec": json.dumps({"format": "yolov7c.graph/1", "nodes": 3})},
     r"malformed graph spec \('nodes' and 'blocks' must be lists\)"),
    ({"spec": json.dumps({"format": "yolov7c.graph/1", "nodes": [{"index": "x"}]})},
     r"malformed graph spec"),
    ({"meta": "[1]"}, r"'extra' and 'meta' must be dicts"),
    ({"pipeline": "deploy"}, r"pipeline must be a list of pass names"),
    ({"state_dict": [1, 2]}, r"state_dict is a list, expected a dict of tensors"),
    ({"state_dict": {"a": 1}}, r"state_dict entry 'a' is int, expected str → tensor"),
    ({"state_dict": None}, r"state_dict is a NoneType"),
])
def test_malformed_fields(tmp_path, saved, change, match):
    _refused(_variant(tmp_path, saved[1], **change), match)


class _RunsCode:
    def __reduce__(self):
        import os
        return os.system, ("echo PWNED",)


def test_pickle_global_is_named(tmp_path):
    p = tmp_path / "evil.ckpt"
    torch.save({"format": ck.FORMAT, "x": _RunsCode()}, p)
    _refused(p, r"refused: the pickle references 'posix.system'")


def test_zip_bomb_entry(tmp_path, saved):
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(saved[0]) as zi, zipfile.ZipFile(bomb, "w") as zo:
        for i in zi.infolist():
            zo.writestr(i.filename, zi.read(i.filename))
        zo.writestr("small/data/999", b"\0" * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
    _refused(bomb, r"refused: entry small/data/999 inflates [\d,]+ → 67,108,864 bytes")


def test_apply_weights_names_the_key(small_model):
    net = lower(small_model.graph)
    sd = {k: v.clone() for k, v in small_model.state_dict().items()}
    with pytest.raises(UserError, match=r"missing \['model.0.conv.weight'\]"):
        ck.apply_weights(net, {k: v for k, v in sd.items() if k != "model.0.conv.weight"})
    with pytest.raises(UserError, match=r"unexpected \['extra.w'\]"):
        ck.apply_weights(net, dict(sd, **{"extra.w": torch.zeros(1)}))
    bad = dict(sd, **{"model.0.conv.weight": sd["model.0.conv.weight"].flatten()})
    with pytest.raises(UserError, match=r"weight model.0.conv.weight has shape \(432,\), the "
                                        r"architecture needs \(16, 3, 3, 3\)"):
        ck.apply_weights(net, bad)
    sd["model.0.bn.running_var"][0] = float("nan")
    with pytest.raises(UserError, match=r"weight model.0.bn.running_var holds NaN"):
        ck.apply_weights(net, sd)


def test_save_refuses_unsafe_extra(tmp_path, small_model):
    with pytest.raises(UserError, match=r"extra\['opt'\]\[0\]: a object cannot be stored"):
        ck.save(small_model, tmp_path / "x.ckpt", extra={"opt": [object()]})
    with pytest.raises(UserError, match=r"extra\['k'\]: key \(1, 2\) is a tuple"):
        ck.save(small_model, tmp_path / "x.ckpt", extra={"k": {(1, 2): 3}})
    assert list(tmp_path.iterdir()) == []
    ck.save(small_model, tmp_path / "ok.ckpt",
            extra={"opt": {"state": {0: {"step": torch.tensor(3.0)}},
                           "param_groups": [{"betas": (0.9, 0.999), "params": [0]}]}})
    got = ck.read(tmp_path / "ok.ckpt")["extra"]
    assert got["opt"]["state"][0]["step"].item() == 3.0
    assert got["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
