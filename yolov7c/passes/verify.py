"""Numerical verification helpers: head outputs, the error measure, example inputs.

Models without weights get theirs from ``backends.torch.init_weights.randomize_weights``
(the API does that); this module only measures.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def head_outputs(out: Any) -> list[torch.Tensor]:
    """The raw head outputs of a YOLO eval output ``(decoded, [raw...])``; for any other
    model, every tensor in the output, flattened in order."""
    if (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor)
            and isinstance(out[1], (tuple, list))):
        return list(out[1])
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in head_outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in head_outputs(o)]
    return []


def errors(ref: list[torch.Tensor], got: list[torch.Tensor]) -> tuple[float, float]:
    """(max |got − ref|, that / max |ref|) over all outputs; inf when the structure differs."""
    if len(ref) != len(got) or any(r.shape != o.shape for r, o in zip(ref, got)):
        return float("inf"), float("inf")
    if not ref:
        return 0.0, 0.0
    err = max(float((o.float() - r.float()).abs().max()) for r, o in zip(ref, got))
    scale = max(float(r.float().abs().max()) for r in ref)
    return err, err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))


def example_input(model: nn.Module, img: int | None = None, batch: int = 1,
                  seed: int = 0) -> torch.Tensor:
    """A uniform [0, 1) image batch sized for ``model`` (img defaults to 4 × its max stride)."""
    graph = ir_graph(model)
    channels = graph.in_channels if graph is not None else 3
    if img is None:
        img = 4 * graph.max_stride if graph is not None else 128
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, img, img, generator=g)


def ir_graph(model: nn.Module) -> Any:
    """The IR graph behind a model we built (YoloModel.graph, or a passes-produced module's
    source graph), else None."""
    meta = getattr(model, "meta", None)
    if isinstance(meta, dict) and "yolov7c" in meta:
        return meta["yolov7c"]["graph"]
    graph = getattr(model, "graph", None)
    return graph if graph is not None and hasattr(graph, "max_stride") else None
