"""Safe import of official YOLOv7 ``.pt`` files (a pickled ``models.yolo.Model``, fp16).

The file is read by ``safe_pickle.unpickle`` (nothing executed; every size checked). The model
is then rebuilt from the recovered cfg (the Model's ``yaml`` attribute, validated by the YAML
importer) with ``nc`` and anchors taken from the head's own buffers; the cfg's parameter
count is checked against the weights before anything is lowered, and the recovered
state_dict (official key names = ours) is loaded in fp32 after a key, shape and finiteness
check. A fused file (``model.fuse()``) gets its own message.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError, one_line, show
from ...ir.yaml_io import from_cfg
from ..common import all_finite, params_of
from .lower import YoloModel, lower
from .safe_pickle import MethodRef, Record, unpickle

__all__ = ["FUSED", "import_official", "state_dict", "unpickle"]

MAX_DEPTH = 200                      # module nesting (official models: 4 levels)


def _mapping(st: Any, key: str, where: str) -> dict[str, Any]:
    v = st.get(key)
    v = {} if v is None else v   # no truthiness: the value may be anything, a tensor too
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise UserError(f"malformed module record at {where or 'model'}: {key} is a "
                        f"{type(v).__name__}, expected a dict with string keys")
    return v


def state_dict(record: Record, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """The state_dict a module record would produce (persistent buffers only)."""
    if depth > MAX_DEPTH:
        raise UserError(f"refused: modules nested deeper than {MAX_DEPTH} levels at "
                        f"{one_line(prefix, 80)}")
    st = record.state
    where = prefix.rstrip(".")
    skip = st.get("_non_persistent_buffers_set")
    skip = {k for k in skip if isinstance(k, str)} \
        if isinstance(skip, (set, frozenset, list, tuple)) else set()
    out: dict[str, torch.Tensor] = {}
    for kind in ("_parameters", "_buffers"):
        for k, v in _mapping(st, kind, where).items():
            if v is None or (kind == "_buffers" and k in skip):
                continue
            if not isinstance(v, torch.Tensor):
                raise UserError(f"malformed module record: {prefix}{k} is a "
                                f"{type(v).__name__}, expected a tensor")
            out[f"{prefix}{k}"] = v
    for name, child in _mapping(st, "_modules", where).items():
        if isinstance(child, Record):
            out.update(state_dict(child, f"{prefix}{name}.", depth + 1))
    return out


def _head_facts(model: Record) -> dict[str, Any]:
    """nc and anchors (pixels) from the head's own attributes and buffers."""
    layers = model.child("model")
    mods = list(_mapping(layers.state, "_modules", "model").values()) \
        if isinstance(layers, Record) else []
    head = mods[-1] if mods else None
    grid = _mapping(head.state, "_buffers", "head").get("anchor_grid") \
        if isinstance(head, Record) else None
    if grid is None:
        raise UserError("no detection head with anchors found in the model")
    if not isinstance(grid, torch.Tensor) or grid.dim() < 2 or grid.numel() == 0 \
            or grid.numel() % (2 * grid.shape[0]):
        raise UserError(f"the head's anchor_grid is a {type(grid).__name__}"
                        f"{tuple(grid.shape) if isinstance(grid, torch.Tensor) else ''}, "
                        f"expected a (levels, 1, anchors, 1, 1, 2) tensor")
    grid = grid.float()
    if not bool(torch.isfinite(grid).all()) or bool((grid <= 0).any()):
        raise UserError("the head's anchor_grid holds non-positive or non-finite anchors")
    nc = head.state.get("nc")
    if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= 1_000_000:
        raise UserError(f"the detection head's nc is {show(nc, 40)}, expected a "
                        f"positive integer")
    nl = grid.shape[0]
    anchors = [[int(v) if float(v).is_integer() else float(v) for v in row]
               for row in grid.reshape(nl, -1).tolist()]
    return {"nc": nc, "anchors": anchors}


FUSED = ("a fused (model.fuse()) checkpoint; import the unfused training or deploy .pt "
         "instead and run the 'deploy' pass pipeline on it (yolov7c.deploy)")


def _is_fused(model: Record, weights: dict[str, torch.Tensor]) -> bool:
    """Official fuse() replaces RepConv by ``rbr_reparam``, folds BN into a conv bias and
    pickles ``forward = fuseforward`` as a getattr reference."""
    if any(".rbr_reparam." in k for k in weights) or any(k.endswith(".conv.bias")
                                                         for k in weights):
        return True
    stack, seen = [model], 0
    while stack and seen < 100_000:
        r = stack.pop()
        seen += 1
        if isinstance(r.state.get("forward"), MethodRef):
            return True
        mods = r.state.get("_modules")
        if isinstance(mods, dict):
            stack += [m for m in mods.values() if isinstance(m, Record)]
    return False


def import_official(path: str | os.PathLike) -> YoloModel:
    """Our ``YoloModel`` (fp32, eval) with the weights of an official training/deploy .pt."""
    src = str(path)
    ckpt = unpickle(path)
    model = ckpt
    if isinstance(ckpt, dict):
        model = ckpt.get("ema") if isinstance(ckpt.get("ema"), Record) else ckpt.get("model")
    if not isinstance(model, Record) or not model.qualname.endswith(".Model"):
        raise UserError(f"{src}: no official models.yolo.Model inside (found "
                        f"{show(model, 60)})")
    cfg = model.state.get("yaml")
    if not isinstance(cfg, dict):
        raise UserError(f"{src}: the model carries no cfg ('yaml' attribute); cannot rebuild it")
    try:
        weights = state_dict(model)
        if _is_fused(model, weights):
            raise UserError(FUSED)
        facts = _head_facts(model)
    except UserError as e:
        raise UserError(f"{src}: {e}") from None
    graph = from_cfg(dict(cfg, **facts), name=Path(src).stem, source=src)
    declared, have = params_of(graph), sum(v.numel() for v in weights.values())
    if declared > have:  # checked before lowering allocates the declared layers
        raise UserError(f"{src}: the cfg declares {declared:,} parameters but the file holds "
                        f"{have:,} weight values; the cfg does not belong to these weights")
    net = lower(graph)
    want = net.state_dict()
    missing = [k for k in want if k not in weights]
    unexpected = [k for k in weights if k not in want]
    if missing or unexpected:
        raise UserError(f"{src}: weights do not match the cfg's architecture (missing "
                        f"{missing[:3]}, unexpected {unexpected[:3]})")
    for k, ref in want.items():
        if tuple(weights[k].shape) != tuple(ref.shape):
            raise UserError(f"{src}: weight {k} has shape {tuple(weights[k].shape)}, the cfg "
                            f"needs {tuple(ref.shape)}")
        if not all_finite(weights[k]):
            raise UserError(f"{src}: weight {k} holds NaN or infinite values")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in weights.items()}, strict=True)
    return net.eval()
