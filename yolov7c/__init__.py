"""yolov7c: a compiler-style model builder and graph transformer for the YOLOv7 family.

Public API (names resolve on first use, so ``import yolov7c`` stays light):

- ``resolve(source, nc=None, seed=0)``  any model source → eval-mode module: zoo name, DSL
  ``.py``, official ``.yaml``, our checkpoint, official ``.pt``, ``Graph`` (weightless
  sources get seeded random weights; checkpoints keep theirs)
- ``load(path)`` / ``save(model, path)``  our checkpoints (weights-only, architecture inside)
- ``deploy(source)``                    the verified deploy-pipeline module
- ``export`` / ``compile`` / ``tune`` / ``bench`` / ``report``  the backend and report verbs
- ``graph(name, nc=80)``, ``build(name_or_graph)``, ``analyze(graph, img)``,
  ``to_deploy(graph)``, ``scale(graph, depth, width)``, ``run_passes(model, pipeline)``,
  ``plan_reparam(graph, policy)`` (RepConv / RepConvN placement, paper §4.1):
  the IR and pass building blocks
- ``nms``, ``val``, ``detect``, ``criterion``, ``train``: detection, evaluation, training
"""
from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any, Sequence

from . import zoo
from .errors import UserError
from .ir.analysis import analyze
from .ir.deploy import to_deploy
from .ir.graph import Graph, Node

__version__ = "0.1.0"

# public name → (module, attribute), imported on first access
_LAZY = {
    "resolve": ("yolov7c.api.models", "resolve"),
    "load": ("yolov7c.api.models", "load_checkpoint"),
    "save": ("yolov7c.api.models", "save"),
    "deploy": ("yolov7c.api.models", "deploy"),
    "export": ("yolov7c.api.backends", "export"),
    "compile": ("yolov7c.api.backends", "compile"),
    "tune": ("yolov7c.api.backends", "tune"),
    "bench": ("yolov7c.api.backends", "bench"),
    "report": ("yolov7c.api.reports", "report"),
    "run_passes": ("yolov7c.passes", "run_passes"),
    "plan_reparam": ("yolov7c.ir.plan_reparam", "plan_reparam"),
    "nms": ("yolov7c.eval.nms", "nms"),
    "val": ("yolov7c.api.evaluate", "val"),
    "detect": ("yolov7c.api.evaluate", "detect"),
    "criterion": ("yolov7c.train.loss", "criterion"),
    "train": ("yolov7c.api.training", "train"),
}


# API names that are also subpackages (yolov7c.report, yolov7c.train): the import system
# rebinds such a name to the subpackage when it is first imported, so the root keeps a
# callable that is the API function when called and the subpackage for attribute access
# (``yolov7c.train.loss``, ``import yolov7c.report.plots as P`` keep working).
#
# Why this and not something plainer (issue 21 item 8 asked): the names are fixed on both
# sides. ``yolov7c.train(...)`` / ``yolov7c.report(...)`` are the documented API, one
# function per CLI verb of the same name; ``train/`` and ``report/`` are the subpackages of
# the design card (../shared/design.md). Renaming either breaks users' code or the layout.
# Binding the function at import time fails too: the first ``import yolov7c.train.loss``
# (the trainer does it) would silently replace it with the module, and ``yolov7c.train(...)``
# would then raise "module is not callable" depending on import order. The module-class
# swap below is the one place that ordering is made harmless; tests/api/test_verbs.py
# imports the subpackages (yolov7c.train.loss included) and then checks both uses.
_SHADOWED = {"report", "train"}


class _Entry:
    """``yolov7c.<name>``: calls the API function; attributes come from the subpackage."""

    def __init__(self, name: str) -> None:
        self.__name__ = f"{__name__}.{name}"
        self._target = _LAZY[name]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self._target[0]), self._target[1])(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)

    def _function(self) -> Any:
        return getattr(importlib.import_module(self._target[0]), self._target[1])

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._function().__doc__

    @property
    def __signature__(self) -> inspect.Signature:
        """``inspect.signature(yolov7c.train)`` and ``help`` show the API function's."""
        return inspect.signature(self._function())

    def __repr__(self) -> str:
        return f"<yolov7c API function {self._target[1]} / subpackage {self.__name__}>"


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the subpackage stays in sys.modules and behind the _Entry
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'yolov7c' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    """The public names once each (not the helpers this module imports for itself)."""
    return sorted(set(__all__))


def graph(name: str, nc: int = 80, anchors: Sequence[Sequence[float]] | None = None) -> Graph:
    """The IR graph of zoo model ``name`` (training form)."""
    return zoo.get(name, nc=nc, anchors=anchors)


def build(model: str | Graph, nc: int = 80,
          anchors: Sequence[Sequence[float]] | None = None) -> Any:
    """A trainable PyTorch module (fresh default initialisation) for a zoo name or an IR
    graph (``nc`` applies to names); ``resolve`` gives seeded, non-trivial weights."""
    from .backends.torch.lower import lower
    g = model if isinstance(model, Graph) else graph(model, nc=nc, anchors=anchors)
    return lower(g)


def scale(graph_or_name: Any, depth: Any = 1, width: Any = 1, rule: str = "compound",
          **kw: Any) -> Graph:
    """Concat-aware compound scaling of a graph (numbers or sympy symbols)."""
    from .ir.scaling import scale as _scale
    g = graph_or_name if isinstance(graph_or_name, Graph) else graph(graph_or_name)
    return _scale(g, depth=depth, width=width, rule=rule, **kw)


sys.modules[__name__].__class__ = _Package
for _name in _SHADOWED:
    globals()[_name] = _Entry(_name)

__all__ = ["Graph", "Node", "UserError", "__version__", "analyze", "build", "graph", "scale",
           "to_deploy", "zoo", *_LAZY]
