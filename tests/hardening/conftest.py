"""Hostile-input tests: helpers that write official-style ``.pt`` files — a pickled
``models.yolo.Model`` tree of plain stand-in classes, registered under the official module
names only while pickling — built from one of our modules, so tests can craft and mutate
"official" checkpoints without the official code."""
from __future__ import annotations

import copy
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import yaml
from torch import nn

HEADS = ("Detect", "IDetect", "IAuxDetect")


class Stand:
    """An object pickled as ``<module>.<name>`` with a given ``__dict__``."""

    def fuseforward(self) -> None:  # target of the fused-file getattr reference
        pass


@contextmanager
def official_modules() -> Iterator[dict[str, types.ModuleType]]:
    """Register ``models``, ``models.yolo``, ``models.common`` in sys.modules for pickling."""
    names = ("models", "models.yolo", "models.common")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    sys.modules.update(mods)
    try:
        yield mods
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def stand(mods: dict[str, types.ModuleType], module: str, name: str, state: dict) -> Stand:
    m = mods[module]
    cls = getattr(m, name, None)
    if cls is None:
        cls = type(name, (Stand,), {"__module__": module, "__qualname__": name})
        setattr(m, name, cls)
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def module_state(m: nn.Module) -> dict[str, Any]:
    """The parts of an nn.Module's __dict__ the importer reads, as plain containers."""
    return {"training": False,
            "_parameters": OrderedDict((k, None if v is None else v.detach().clone().half())
                                       for k, v in m._parameters.items()),
            "_buffers": OrderedDict((k, None if v is None else v.detach().clone())
                                    for k, v in m._buffers.items()),
            "_non_persistent_buffers_set": set(m._non_persistent_buffers_set),
            "_modules": OrderedDict()}


def tree(model: nn.Module, cfg: dict, nc: int) -> dict[str, Any]:
    """A nested description {qualname, state, children} of ``model`` in official form."""
    def walk(m: nn.Module) -> dict[str, Any]:
        name = type(m).__name__
        module = "models.yolo" if name in HEADS else "models.common"
        st = module_state(m)
        if name in HEADS:
            st["nc"] = nc
        return {"module": module, "name": name, "state": st,
                "children": OrderedDict((k, walk(c)) for k, c in m._modules.items())}
    layers = walk(model.model)
    layers["name"] = "Sequential"
    top = {"module": "models.yolo", "name": "Model",
           "state": {**module_state(nn.Module()), "yaml": copy.deepcopy(cfg), "nc": nc},
           "children": OrderedDict(model=layers)}
    return top


def build(desc: Any, mods: dict[str, types.ModuleType]) -> Any:
    """Stand-in objects for a tree description (other values pass through)."""
    if isinstance(desc, dict) and {"module", "name", "state", "children"} <= set(desc):
        st = dict(desc["state"])
        if isinstance(st.get("_modules"), dict):
            st["_modules"] = OrderedDict((k, build(c, mods)) for k, c in desc["children"].items())
        obj = stand(mods, desc["module"], desc["name"], st)
        if desc.get("fused"):
            obj.forward = obj.fuseforward  # what official model.fuse() leaves behind
        return obj
    return desc


def write(desc: dict[str, Any], path: Path, wrap: bool = True) -> Path:
    """Save ``desc`` as an official-style checkpoint ({'model': Model, 'epoch': -1})."""
    with official_modules() as mods:
        obj = build(desc, mods)
        torch.save({"model": obj, "epoch": -1} if wrap else obj, path)
    return path


# ----------------------------------------------------------------- fixtures

SMALL_CFG = (Path(__file__).resolve().parents[1] / "small_cfg.yaml").read_text()


@pytest.fixture(scope="session")
def small_cfg() -> dict:
    """A small official-format cfg (two levels, IDetect), parsed."""
    return yaml.safe_load(SMALL_CFG)


@pytest.fixture(scope="session")
def small_model(small_cfg):
    """Our module for ``small_cfg`` with non-trivial fp16-exact weights, eval mode."""
    import yolov7c
    from yolov7c.ir.yaml_io import from_cfg
    torch.manual_seed(0)
    m = yolov7c.build(from_cfg(small_cfg, "small")).eval()
    with torch.no_grad():
        for v in m.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    return m


@pytest.fixture
def official_tree(small_model, small_cfg):
    """A fresh official-style description of ``small_model`` (mutate it, then ``write``)."""
    return tree(small_model, small_cfg, 2)


@pytest.fixture
def write_official():
    """``write_official(desc, path, wrap=True)``: save a description as an official .pt."""
    return write


def save_official(path: Path, objects: dict[str, Any]) -> Path:
    """Save a dict whose tree-description values become official-style models (an unstripped
    official checkpoint holds two: ``model`` and ``ema``); other values are saved as given."""
    with official_modules() as mods:
        torch.save({k: build(v, mods) for k, v in objects.items()}, path)
    return path


@pytest.fixture
def save_official_dict():
    """``save_official_dict(path, {"model": desc, "ema": desc, "epoch": 3, ...})``."""
    return save_official
