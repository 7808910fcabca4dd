"""Fuzzing the three importers of untrusted files with hypothesis: mutated official YAML
cfgs, mutated checkpoints of ours and mutated official pickles. Whatever the mutation, only
the project's own ``UserError`` may come out, in one line of bounded length (issue 12,
item 5: 24 code sites in the YAML importer alone tracebacked before the hardening).

Derandomized, so CI runs the same cases every time; each test prints its tally (cases run,
refused with a UserError, accepted; a foreign exception fails the test, shrunk)."""
from __future__ import annotations

import copy
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolov7c.backends.torch import checkpoint as ck
from yolov7c.backends.torch.lower import lower
from yolov7c.backends.torch.official import import_official
from yolov7c.errors import UserError
from yolov7c.ir.yaml_io import from_cfg, from_yaml

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

JUNK = st.one_of(
    st.integers(-3, 3), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
    st.sampled_from(["", "abc", "None", "nc", "anchors", "Conv", "nn.SiLU()", "MP",
                     "IDetect", "x" * 300, "\x1b[31mred"]),
    st.none(), st.booleans(),
    st.lists(st.integers(-5, 70), max_size=4),
    st.dictionaries(st.sampled_from(["a", "kind", "name", "args"]), st.integers(), max_size=2),
    st.recursive(st.integers(0, 3), lambda s: st.lists(s, max_size=3), max_leaves=6),
)


def _paths(v: Any, p: tuple = ()) -> list[tuple]:
    out = [p]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, p + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, p + (i,))
    return out


def _mutate(data, value: Any, draws: int = 3, junk: Any = JUNK) -> Any:
    """Replace, delete or duplicate up to ``draws`` entries of the nested ``value``."""
    value = copy.deepcopy(value)
    for _ in range(data.draw(st.integers(1, draws))):
        paths = _paths(value)[1:]
        if not paths:
            break
        p = data.draw(st.sampled_from(paths))
        parent = value
        for k in p[:-1]:
            parent = parent[k]
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "dup"]))
        if action == "replace":
            parent[p[-1]] = data.draw(junk)
        elif action == "delete":
            del parent[p[-1]]
        elif isinstance(parent, list):
            parent.insert(p[-1], copy.deepcopy(parent[p[-1]]))
    return value


def _report(what: str, tally: Counter) -> None:
    run = tally["accepted"] + tally["refused"]
    print(f"{what} fuzz: {run} cases, {tally['refused']} refused with a UserError, "
          f"{tally['accepted']} accepted, 0 foreign exceptions")
    assert tally["refused"] > run // 2   # the mutations do reach the checks


def _check(err: UserError) -> None:
    msg = str(err)
    assert "\n" not in msg and "\x1b" not in msg and len(msg) < 600, msg[:600]


def _tally(tally: Counter, load: Callable[[], Any]) -> None:
    """Run one fuzz case: accepted, or refused with a one-line UserError; any other
    exception propagates and fails the test."""
    try:
        load()
        tally["accepted"] += 1
    except UserError as e:
        _check(e)
        tally["refused"] += 1


def test_fuzz_yaml_cfgs(small_cfg, tmp_path):
    tally = Counter()
    base_text = yaml.safe_dump(small_cfg)

    @settings(max_examples=1500, **SETTINGS)
    @given(st.data())
    def run(data):
        if data.draw(st.integers(0, 3)) == 0:   # byte-level: through the YAML parser
            b = bytearray(base_text.encode())
            for _ in range(data.draw(st.integers(1, 4))):
                i = data.draw(st.integers(0, len(b) - 1))
                b[i:i + 1] = data.draw(st.sampled_from(
                    [b"", bytes([data.draw(st.integers(0, 255))]), b"&a ", b"*a", b"[",
                     b"]", b"{", b"- ", b": ", b"\n", b"'", b"!!python/object "]))
            p = tmp_path / "m.yaml"
            p.write_bytes(bytes(b))
            _tally(tally, lambda: from_yaml(p))
        else:
            _tally(tally, lambda: from_cfg(_mutate(data, small_cfg), "m", "<cfg>"))
    run()
    _report("yaml", tally)


@pytest.fixture(scope="module")
def saved_raw(tmp_path_factory, small_model):
    p = tmp_path_factory.mktemp("fz") / "s.ckpt"
    ck.save(small_model, p, extra={"epoch": 1})
    return torch.load(p, weights_only=True), p.read_bytes()


TENSORS = st.sampled_from([torch.zeros(0), torch.zeros(3), torch.full((2, 2), float("nan")),
                           torch.zeros(1).expand(10, 10), torch.zeros(2, dtype=torch.int64),
                           torch.zeros(16, 3, 3, 3), torch.ones(32, 16, 3, 3).half()])


def _load(p: Path) -> None:
    """What loading a training checkpoint does below the passes: read → lower → weights."""
    r = ck.read(p)
    if not r["pipeline"]:
        ck.apply_weights(lower(r["graph"]), r["state_dict"], p)


def test_fuzz_checkpoints(saved_raw, tmp_path):
    raw, blob = saved_raw
    spec = json.loads(raw["spec"])
    keys = sorted(raw["state_dict"])
    tally = Counter()

    @settings(max_examples=700, **SETTINGS)
    @given(st.data())
    def run(data):
        p = tmp_path / "m.ckpt"
        kind = data.draw(st.sampled_from(["spec", "spec", "fields", "weights", "bytes"]))
        if kind == "bytes":
            b = bytearray(blob)
            for _ in range(data.draw(st.integers(1, 8))):
                i = data.draw(st.integers(0, len(b) - 1))
                b[i] = data.draw(st.integers(0, 255))
            if data.draw(st.booleans()):
                b = b[: data.draw(st.integers(0, len(b)))]
            p.write_bytes(bytes(b))
        else:
            d = dict(raw)
            if kind == "spec":
                d["spec"] = json.dumps(_mutate(data, spec, 2))
            elif kind == "fields":
                field = data.draw(st.sampled_from(["format", "spec", "meta", "pipeline",
                                                   "extra", "state_dict"]))
                if data.draw(st.booleans()):
                    d.pop(field)
                else:
                    d[field] = data.draw(st.one_of(JUNK, TENSORS))
            else:
                sd = dict(raw["state_dict"])
                k = data.draw(st.sampled_from(keys))
                if data.draw(st.booleans()):
                    del sd[k]
                else:
                    sd[k if data.draw(st.booleans()) else "x." + k] = data.draw(TENSORS)
                d["state_dict"] = sd
            torch.save(d, p)
        _tally(tally, lambda: _load(p))
    run()
    _report("checkpoint", tally)


def test_fuzz_official_pickles(official_tree, write_official, tmp_path):
    tally = Counter()
    ok = write_official(official_tree, tmp_path / "ok.pt")
    with zipfile.ZipFile(ok) as zf:
        entries = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))

    def records(desc: dict, out: list) -> list:
        out.append(desc)
        for c in desc["children"].values():
            records(c, out)
        return out

    @settings(max_examples=400, **SETTINGS)
    @given(st.data())
    def run(data):
        p = tmp_path / "m.pt"
        kind = data.draw(st.sampled_from(["state", "tensor", "cfg", "pickle bytes"]))
        if kind == "pickle bytes":
            b = bytearray(entries[pkl])
            for _ in range(data.draw(st.integers(1, 6))):
                i = data.draw(st.integers(0, len(b) - 1))
                b[i] = data.draw(st.integers(0, 255))
            with zipfile.ZipFile(p, "w") as zo:
                for name, v in entries.items():
                    zo.writestr(name, bytes(b) if name == pkl else v)
        else:
            desc = copy.deepcopy(official_tree)
            if kind == "cfg":
                desc["state"]["yaml"] = _mutate(data, desc["state"]["yaml"], 2,
                                                st.one_of(JUNK, TENSORS))
            else:
                rec = data.draw(st.sampled_from(records(desc, [])))
                st_ = rec["state"]
                if kind == "tensor" and (st_["_parameters"] or st_["_buffers"]):
                    group = st_["_parameters"] if st_["_parameters"] else st_["_buffers"]
                    group[data.draw(st.sampled_from(sorted(group)))] = data.draw(
                        st.one_of(TENSORS, JUNK))
                else:
                    key = data.draw(st.sampled_from(
                        ["nc", "_parameters", "_buffers", "_modules", "yaml",
                         "_non_persistent_buffers_set"]))
                    st_[key] = data.draw(st.one_of(JUNK, TENSORS))
            write_official(desc, p)
        _tally(tally, lambda: import_official(p))
    run()
    _report("official", tally)
