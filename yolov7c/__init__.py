"""yolov7c: a compiler-style model builder and graph transformer for the YOLOv7 family.

Public API (each call composes the components; heavy imports happen on first use):

- ``graph(name, nc=80)``            the zoo model's IR graph (training form)
- ``build(name_or_graph, nc=80)``   a trainable ``torch.nn.Module`` lowered from the IR
- ``analyze(graph, img)``           parameters / FLOPs / activations per node
- ``to_deploy(graph)``              the deploy-form graph (architecture only)
- ``deploy(model)``                 the verified deploy-pipeline module (passes)
- ``run_passes(model, pipeline)``   any pass pipeline, verified after each pass
- ``save(model, path)`` / ``load(path)``   checkpoints (weights-only, architecture inside)
- ``scale(graph, depth, width)``    concat-aware compound scaling (numbers or sympy symbols)
"""
from __future__ import annotations

from typing import Any, Sequence

from . import zoo
from .errors import UserError
from .ir.analysis import analyze
from .ir.deploy import to_deploy
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


def deploy(model: Any, **kw: Any) -> Any:
    """Run the ``deploy`` pipeline (prune aux, fold implicit, fuse RepConv, fold BN, DCE)."""
    from .passes import deploy as _deploy
    return _deploy(model, **kw)


def run_passes(model: Any, pipeline: Any = "deploy", **kw: Any) -> Any:
    """Run a named pipeline or a list of pass names; returns the pipeline result."""
    from .passes import run_passes as _run
    return _run(model, pipeline, **kw)


def save(model: Any, path: str, **kw: Any) -> None:
    """Write a checkpoint: architecture spec + state_dict, loadable with weights_only=True."""
    from .backends.torch.checkpoint import save as _save
    _save(model, path, **kw)


def load(path: str, **kw: Any) -> Any:
    """Rebuild the ``nn.Module`` stored in a checkpoint we wrote (executes nothing from it)."""
    from .backends.torch.checkpoint import load as _load
    return _load(path, **kw)


def scale(graph_or_name: Any, depth: Any = 1, width: Any = 1, rule: str = "compound",
          **kw: Any) -> Graph:
    """Concat-aware compound scaling of a graph (numbers or sympy symbols)."""
    from .ir.scaling import scale as _scale
    g = graph_or_name if isinstance(graph_or_name, Graph) else graph(graph_or_name)
    return _scale(g, depth=depth, width=width, rule=rule, **kw)


__all__ = ["deploy", "load", "run_passes", "save", "scale", "to_deploy", "Graph", "Node", "UserError", "analyze", "build", "graph", "zoo", "__version__"]
