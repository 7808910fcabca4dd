"""The one model resolver: any model source → an eval-mode ``nn.Module``, one rule for weights.

Sources: an ``nn.Module`` (returned as is), a ``Graph``, a zoo name, a DSL ``.py`` file (it
defines ``graph`` or ``build() -> Graph``; running the user's own file is the point), an
official ``.yaml`` cfg, our checkpoint (content carries our format marker) or an official
``.pt`` (no marker: the safe importer, nothing executed).

The weights rule: a source without weights (zoo name, DSL, YAML, Graph) gets deterministic
random weights from ``randomize_weights`` with ``seed`` — conv weights from a seeded torch
generator, BN statistics from a fixed seeded batch — so ``passes yolov7`` and ``export
yolov7`` see the same network, whatever image size the verb uses. A checkpoint keeps its
weights.
"""
from __future__ import annotations

import logging
import os
import runpy
import traceback
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import zoo
from ..backends.torch import checkpoint as ckpt_io
from ..backends.torch.init_weights import randomize_weights
from ..backends.torch.lower import lower
from ..errors import UserError, one_line
from ..ir.graph import Graph
from .args import check_img, check_memory, check_nc, check_seed, check_stride

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
YAML_SUFFIXES = (".yaml", ".yml")
_MARKER = ckpt_io.FORMAT.encode()


def resolve(source: Any, *, nc: int | None = None, seed: int = 0,
            img: int | None = None) -> nn.Module:
    """An eval-mode module for ``source`` (see the module docstring for the sources).

    ``nc`` sets the classes of a weightless source (default: the source's own, 80 for zoo
    names); for a source with weights it must agree with the stored head (fine-tuning to
    another nc is the trainer's job). ``img``, when given, is checked against the model's
    stride here, before any heavy work; it never changes the weights."""
    if nc is not None:
        check_nc(nc)
    check_seed(seed)
    if isinstance(source, nn.Module):
        model = source
    elif _is_weights_file(source):
        model = load_any_checkpoint(Path(os.fspath(source)))
        _check_nc_agrees(model, nc, Path(os.fspath(source)))
    else:
        graph = graph_of(source, nc=nc)
        if img is not None:  # before the weights are made: a bad size fails fast
            check_stride(img, graph.max_stride)
            check_memory(graph, img)
        model = random_model(graph, seed)
    if img is not None:
        check_img(model, img)
    return model.eval()


def _is_weights_file(source: Any) -> bool:
    """A file that holds weights (ours or official), as opposed to a cfg or DSL file."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    if is_zoo_name(source):
        return False
    p = Path(os.fspath(source))
    _refuse_image(p)
    return p.suffix.lower() not in (*YAML_SUFFIXES, ".py", ".onnx") and p.is_file()


IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".gif")


def _refuse_image(p: Path) -> None:
    """An image given where a model belongs: say how to run a model on it."""
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"{p}: an image, not a model; to find objects in it give a model and "
                        f"the image as the source: yolov7c detect yolov7-tiny --source {p}")


def is_zoo_name(source: Any) -> bool:
    """``source`` is a zoo name as typed (a ``str``, no folder): the zoo model wins over a
    file of that name in the current folder, which ``./name`` still reaches."""
    return isinstance(source, str) and (source in zoo.names()
                                        or source in zoo.ablation_names())


def deploy(source: Any, *, nc: int | None = None, seed: int = 0, img: int | None = None,
           verify: bool = True, rtol: float | None = None,
           example: torch.Tensor | None = None) -> nn.Module:
    """``resolve`` + the verified deploy pipeline (a module already in deploy form is
    returned as is). ``img`` / ``example``: the verification input (default: a seeded image
    of 4 × the largest stride)."""
    from ..passes import DEFAULT_RTOL, run_passes
    from .args import positive_float
    model = resolve(source, nc=nc, seed=seed, img=img)
    if is_deployed(model):
        return model
    rtol = DEFAULT_RTOL if rtol is None else positive_float(rtol, "rtol")
    return run_passes(model, "deploy", verify=verify, img=img, example=example, seed=seed,
                      rtol=rtol).module.eval()


def is_deployed(model: nn.Module) -> bool:
    """True for a module the deploy pipeline produced (or a checkpoint of one)."""
    meta = getattr(model, "meta", None)
    if isinstance(meta, dict) and "yolov7c" in meta:
        return set(_deploy_steps()) <= set(meta["yolov7c"].get("pipeline", []))
    return False


def _deploy_steps() -> list[str]:
    from ..passes import PIPELINES
    return list(PIPELINES["deploy"])


def with_nc(graph: Graph, nc: int | None) -> Graph:
    """``graph`` with ``nc`` classes in its head (the graph itself when nc is None or equal)."""
    if nc is None or nc == graph.nc:
        return graph
    check_nc(nc)
    head = graph.head
    return graph.replace_nodes([replace(n, attrs={**n.attrs, "nc": nc}) if n is head else n
                                for n in graph.nodes])


def random_model(graph: Graph, seed: int = 0) -> nn.Module:
    """The weightless rule: ``graph`` lowered with seeded conv weights, then BN statistics,
    γ, β and implicit vectors from ``randomize_weights`` on a fixed seeded batch (2 images
    of 4 × the largest stride), so the weights depend on the graph and the seed only.
    A graph too large for the memory cap is refused before anything is allocated."""
    check_memory(graph)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = lower(graph)
    s = graph.max_stride
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(2, graph.in_channels, 4 * s, 4 * s, generator=g)
    return randomize_weights(model, x, seed).eval()



def _check_nc_agrees(model: nn.Module, nc: int | None, path: Path) -> None:
    have = getattr(model, "nc", None)
    if have is None:
        from ..passes.verify import ir_graph
        g = ir_graph(model)
        have = g.nc if g is not None else None
    if nc is not None and have is not None and nc != have:
        raise UserError(f"nc {nc}: {path} holds a model with {have} classes; drop nc to use it "
                        f"as is, or fine-tune it with train (it re-initialises the head)",
                        arg="nc")


def graph_from_dsl(path: str | os.PathLike) -> Graph:
    """Run a DSL file (the user's own code) and take its ``graph`` or ``build()``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such DSL file")
    try:
        ns = runpy.run_path(str(p), run_name="yolov7c_dsl")
        obj = ns.get("graph")
        if obj is None and callable(ns.get("build")):
            obj = ns["build"]()
    except UserError as e:
        raise UserError(f"{p}: {e}") from None
    except Exception as e:  # the user's code failed: say where, in one line
        raise UserError(one_line(f"{p}:{_user_line(e, p)}: {type(e).__name__}: {e}")) from None
    if not isinstance(obj, Graph):
        raise UserError(f"{p}: defines no `graph` (a yolov7c Graph) and no `build()` returning "
                        f"one; end the file with e.g. `graph = b.build()`")
    return obj


def _user_line(e: BaseException, p: Path) -> int | str:
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if Path(f.filename).resolve() == p.resolve()]
    return frames[-1].lineno if frames else "?"


def graph_of(source: Any, *, nc: int | None = None) -> Graph:
    """The IR graph of any model source, without building weights where none are needed (a
    checkpoint's stored spec is read, not lowered); a deploy checkpoint gives the deploy form."""
    if nc is not None:
        check_nc(nc)
    if isinstance(source, Graph):
        return with_nc(source, nc)
    if isinstance(source, nn.Module):
        from ..passes.verify import ir_graph
        g = ir_graph(source)
        if g is None:
            raise UserError(f"{type(source).__name__}: not a model built by yolov7c (no IR "
                            f"graph); resolve a zoo name, cfg, DSL file or checkpoint instead")
        return g if not is_deployed(source) else _deploy_form(g)
    if not isinstance(source, (str, os.PathLike)):
        raise UserError(f"source {source!r:.80}: expected a zoo name, a file path, a Graph or "
                        f"an nn.Module")
    text = os.fspath(source)
    p = Path(text)
    suffix = p.suffix.lower()
    _refuse_image(p)
    if suffix == ".onnx":
        raise UserError(f"{p}: an ONNX file holds no architecture we can rebuild; compile takes "
                        f"it, other verbs need the model (zoo name, cfg, DSL file, checkpoint)")
    if suffix in YAML_SUFFIXES:
        from ..ir.yaml_io import from_yaml
        return with_nc(from_yaml(p), nc)
    if suffix == ".py":
        return with_nc(graph_from_dsl(p), nc)
    if is_zoo_name(source):
        if os.path.lexists(p):
            log.warning("%s: the zoo model, not the file of that name here (write ./%s for "
                        "the file)", text, text)
        return zoo.get(text, nc=80 if nc is None else nc)
    if p.is_file():
        if is_our_checkpoint(p) or not zipfile.is_zipfile(p):
            ck = ckpt_io.read(p)
            g = ck["graph"]
            g = _deploy_form(g) if set(_deploy_steps()) <= set(ck["pipeline"]) else g
        else:
            from ..backends.torch.official import import_official
            g = import_official(p).graph
        if nc is not None and nc != g.nc:
            raise UserError(f"nc {nc}: {p} holds a model with {g.nc} classes; drop nc",
                            arg="nc")
        return g
    if suffix in CHECKPOINT_SUFFIXES or os.sep in text:
        raise UserError(f"{text}: no such file")
    if text in zoo.names() or text in zoo.ablation_names():
        return zoo.get(text, nc=80 if nc is None else nc)
    raise UserError(f"unknown model {text!r}: not a file and not in the zoo "
                    f"({', '.join(zoo.names())}); "
                    f"give a zoo name, a DSL .py, a cfg .yaml, a .ckpt or an official .pt")


def _deploy_form(graph: Graph) -> Graph:
    from ..ir.deploy import to_deploy
    return graph if graph.form != "training" else to_deploy(graph)


def is_our_checkpoint(path: str | os.PathLike) -> bool:
    """Sniff the content (not the name): a torch zip whose pickle carries our format marker.
    Reads only the pickle bytes; nothing is unpickled here."""
    try:
        with zipfile.ZipFile(path) as zf:
            pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkls) != 1 or zf.getinfo(pkls[0]).file_size > 64 << 20:
                return False
            return _MARKER in zf.read(pkls[0])
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def load_any_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Our checkpoint (by content) → ``load_checkpoint``; any other zip → the official
    importer; anything else → our reader's one-line error."""
    p = Path(path)
    if is_our_checkpoint(p) or not zipfile.is_zipfile(p):
        return load_checkpoint(p)
    from ..backends.torch.official import import_official
    return import_official(p)


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Rebuild the module in one of our checkpoints: read (validated, weights_only) → graph →
    lower → replay the stored pass pipeline (so a deploy module gets exactly the structure
    its weights belong to) → weights (key, shape and finiteness checked). Eval mode.

    Training checkpoints are the same format (their ``state_dict`` holds the EMA weights;
    the training state in ``extra`` is the trainer's business)."""
    from ..backends.torch.checkpoint import apply_weights
    ck = ckpt_io.read(path)
    check_memory(ck["graph"])
    model: nn.Module = lower(ck["graph"])
    if ck["pipeline"]:
        from ..passes import run_passes
        model = run_passes(model, list(ck["pipeline"]), verify=False).module
    apply_weights(model, ck["state_dict"], path)
    return model.eval()


def save(model: nn.Module, path: str | os.PathLike, **kw: Any) -> Path:
    """Write ``model`` as our checkpoint (architecture spec + weights, weights_only-safe)."""
    return ckpt_io.save(model, path, **kw)


def model_name(source: Any) -> str:
    """A short display name for a source (zoo name, file name, graph or class name)."""
    if isinstance(source, (str, os.PathLike)):
        return Path(os.fspath(source)).name
    if isinstance(source, Graph):
        return source.name
    g = getattr(source, "graph", None)
    return g.name if isinstance(g, Graph) else type(source).__name__


__all__ = ["deploy", "graph_from_dsl", "graph_of", "is_deployed", "is_our_checkpoint", "is_zoo_name",
           "load_checkpoint",
           "load_any_checkpoint", "model_name", "random_model", "resolve", "save", "with_nc"]
