"""Checkpoints we write: the architecture spec beside the weights, safe to load.

File = ``torch.save`` of a dict holding only strings, ints and tensors: ``format``, ``spec``
(the IR graph as a JSON string), ``pipeline`` (pass names applied, for deploy modules) and
``state_dict``. ``load`` reads it with ``torch.load(weights_only=True)`` — nothing in the
file is executed — lowers the graph, replays the pipeline on that architecture (so a deploy
module gets exactly the structure its weights belong to) and loads the weights.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import UserError
from ...io_util import atomic_path
from ...ir.serialize import graph_from_dict, graph_to_dict
from .lower import YoloModel, lower

FORMAT = "yolov7c.checkpoint/1"


def _spec_of(model: nn.Module) -> tuple[Any, list[str]]:
    if isinstance(model, YoloModel):
        return model.graph, []
    meta = getattr(model, "meta", None)
    if isinstance(meta, dict) and "yolov7c" in meta:
        return meta["yolov7c"]["graph"], list(meta["yolov7c"]["pipeline"])
    raise UserError(f"cannot save a {type(model).__name__}: only models built by yolov7c "
                    f"(build/load/deploy/run_passes) carry an architecture spec; for other "
                    f"modules save model.state_dict() with torch.save")


def save(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder + os.replace).

    ``meta``: extra JSON-able facts to keep (e.g. ``source="official yolov7.pt"``)."""
    graph, pipeline = _spec_of(model)
    ckpt = {"format": FORMAT, "spec": json.dumps(graph_to_dict(graph)), "pipeline": pipeline,
            "meta": json.dumps(meta, default=str),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict, read with weights_only=True; a clear error for anything else."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such checkpoint file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler refuses code, or not a torch file
        raise UserError(f"{p}: not a yolov7c checkpoint ({str(e).splitlines()[0][:160]}); "
                        f"official .pt files go through `yolov7c import-official`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{p}: not a yolov7c checkpoint (no {FORMAT!r} marker); official .pt "
                        f"files go through `yolov7c import-official`")
    return ckpt


def load(path: str | os.PathLike, train: bool = False) -> nn.Module:
    """Rebuild the module saved at ``path`` (a YoloModel, or the deploy GraphModule)."""
    from ...passes import run_passes  # the public API composes backends and passes
    ckpt = read(path)
    graph = graph_from_dict(json.loads(ckpt["spec"]), source=str(path))
    model: nn.Module = lower(graph)
    if ckpt["pipeline"]:
        model = run_passes(model, list(ckpt["pipeline"]), verify=False).module
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match the stored architecture (missing "
                        f"{missing[:3]}, unexpected {unexpected[:3]})")
    return model.train(train)
