"""yolov7c: a compiler-style model builder and graph transformer for the YOLOv7 family.

Public API (each call composes the components; heavy imports happen on first use):

- ``graph(name, nc=80)``            the zoo model's IR graph (training form)
- ``build(name_or_graph, nc=80)``   a trainable ``torch.nn.Module`` lowered from the IR
- ``analyze(graph, img)``           parameters / FLOPs / activations per node
"""
from __future__ import annotations

from typing import Any, Sequence

from . import zoo
from .errors import UserError
from .ir.analysis import analyze
from .ir.graph import Graph, Node

__version__ = "0.1.0"


def graph(name: str, nc: int = 80, anchors: Sequence[Sequence[float]] | None = None) -> Graph:
    """The IR graph of zoo model ``name`` (training form)."""
    return zoo.get(name, nc=nc, anchors=anchors)


def build(model: str | Graph, nc: int = 80,
          anchors: Sequence[Sequence[float]] | None = None) -> Any:
    """A trainable PyTorch module for a zoo name or an IR graph (``nc`` applies to names)."""
    from .backends.torch.lower import lower
    g = model if isinstance(model, Graph) else graph(model, nc=nc, anchors=anchors)
    return lower(g)


__all__ = ["Graph", "Node", "UserError", "analyze", "build", "graph", "zoo", "__version__"]
