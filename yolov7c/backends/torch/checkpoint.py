"""Checkpoints we write: the architecture spec beside the weights, safe to read.

File = ``torch.save`` of a dict holding only strings, ints, lists, dicts and tensors:
``format``, ``spec`` (the IR graph as a JSON string), ``pipeline`` (pass names applied, for
deploy modules), ``meta`` (JSON string), ``extra`` (training state: nested dicts/lists of
tensors and plain values) and ``state_dict``.

``read`` loads it with ``torch.load(weights_only=True)`` — nothing in the file is executed —
and validates everything before anything big is built: archive sizes (zip bomb), the format
marker, the spec, a flat str → tensor state_dict whose tensors are finite and backed by
their storage (no stride-0 view posing as a huge tensor), and the spec's parameter count
against the weights (a spec with no weights once asked for 129.6 GB). ``apply_weights``
loads a state_dict into the module rebuilt from the spec with key, shape and finiteness
checks naming the key. The public API composes read → lower → passes → apply_weights.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ...errors import UserError, one_line, show
from ...io_util import atomic_path
from ..common import all_finite, params_of
from ...ir.graph import Graph
from ...ir.serialize import graph_from_dict, graph_to_dict
from .lower import YoloModel
from .safe_pickle import check_member_count

FORMAT = "yolov7c.checkpoint/1"
MAX_ARCHIVE_BYTES = 16 << 30     # total uncompressed size of the zip entries
MAX_PICKLE_BYTES = 256 << 20     # the data.pkl entry (strings: spec, meta)
MAX_TENSOR_ELEMENTS = 2_000_000_000
MAX_PARAMS = 2_000_000_000       # a spec declaring more parameters is refused outright
MAX_DEPTH = 64                   # nesting of ``extra`` / JSON values
_SAFE_SCALARS = (str, int, float, bool, type(None))


def _spec_of(model: nn.Module) -> tuple[Any, list[str]]:
    if isinstance(model, YoloModel):
        return model.graph, []
    meta = getattr(model, "meta", None)
    if isinstance(meta, dict) and "yolov7c" in meta:
        return meta["yolov7c"]["graph"], list(meta["yolov7c"]["pipeline"])
    raise UserError(f"cannot save a {type(model).__name__}: only models built by yolov7c "
                    f"(build/load/deploy/run_passes) carry an architecture spec; for other "
                    f"modules save model.state_dict() with torch.save", arg="model")


def _safe_value(v: Any, where: str, depth: int = 0) -> Any:
    """``v`` with tensors detached to CPU, if it is weights-only loadable; else a UserError
    naming the key path (a training state must not need pickled classes to be read back)."""
    if depth > MAX_DEPTH:
        raise UserError(f"extra{where}: nested deeper than {MAX_DEPTH} levels", arg="extra")
    if isinstance(v, torch.Tensor):
        return v.detach().cpu()
    if isinstance(v, _SAFE_SCALARS):
        return v
    if isinstance(v, (list, tuple)):
        out = [_safe_value(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
        return tuple(out) if isinstance(v, tuple) else out
    if isinstance(v, Mapping):
        bad = next((k for k in v if not isinstance(k, (str, int))), None)
        if bad is not None:
            raise UserError(f"extra{where}: key {bad!r} is a {type(bad).__name__}; keys must "
                            f"be str or int", arg="extra")
        return {k: _safe_value(x, f"{where}[{k!r}]", depth + 1) for k, x in v.items()}
    raise UserError(f"extra{where}: a {type(v).__name__} cannot be stored weights-only; use "
                    f"dicts, lists, tensors, str, int, float, bool or None (e.g. "
                    f"optimizer.state_dict())", arg="extra")


def save(model: nn.Module, path: str | os.PathLike, *, extra: dict | None = None,
         **meta: Any) -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder + os.replace).

    ``extra``: training state (optimizer, EMA, epoch ...) as nested dicts/lists of tensors and
    plain values, read back by ``read(path)["extra"]``. ``meta``: JSON-able facts to keep
    (e.g. ``source="official yolov7.pt"``)."""
    graph, pipeline = _spec_of(model)
    if extra is not None and not isinstance(extra, Mapping):
        raise UserError(f"extra: a dict is needed, got {type(extra).__name__}", arg="extra")
    ckpt = {"format": FORMAT, "spec": json.dumps(graph_to_dict(graph)), "pipeline": pipeline,
            "meta": json.dumps(meta, default=str),
            "extra": _safe_value(dict(extra or {}), ""),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


# --------------------------------------------------------------------------- reading


def _check_archive(p: Path) -> None:
    """Refuse what is not a torch zip, or whose entries would inflate beyond the limits."""
    hint = "official .pt files go through import_official"
    try:
        size = p.stat().st_size
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror or e})", arg="path") from None
    if size == 0:
        raise UserError(f"{p}: empty file, not a yolov7c checkpoint", arg="path")
    try:
        check_member_count(p)
    except OSError:
        pass                               # unreadable or not a zip: said just below
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UserError(f"{p}: not a yolov7c checkpoint (not a torch zip archive: "
                        f"{one_line(e, 80)}; truncated or another format); {hint}",
                        arg="path") from None
    total = sum(i.file_size for i in infos)
    pkls = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if len(pkls) != 1:
        raise UserError(f"{p}: not a yolov7c checkpoint (expected one <name>/data.pkl in the "
                        f"archive, found {len(pkls)}); {hint}", arg="path")
    if total > MAX_ARCHIVE_BYTES:
        raise UserError(f"{p}: refused: the archive inflates to {total:,} bytes (limit "
                        f"{MAX_ARCHIVE_BYTES:,})", arg="path")
    if pkls[0].file_size > MAX_PICKLE_BYTES:
        raise UserError(f"{p}: refused: the pickle is {pkls[0].file_size:,} bytes (limit "
                        f"{MAX_PICKLE_BYTES:,})", arg="path")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED and i.file_size > 100 * max(i.compress_size, 1) \
                and i.file_size > 1 << 20:
            raise UserError(f"{p}: refused: entry {one_line(i.filename, 60)} inflates "
                            f"{i.compress_size:,} → {i.file_size:,} bytes (zip bomb?); torch "
                            f"writes uncompressed entries", arg="path")


def _torch_load(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=False)
    except Exception as e:  # the weights-only unpickler refuses code, or a corrupt archive
        msg = str(e)
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", msg)
        if "Weights only load failed" in msg and found:
            raise UserError(f"{p}: refused: the pickle references {found.group(1)!r}, which a "
                            f"yolov7c checkpoint never needs (nothing was executed); official "
                            f".pt files go through import_official", arg="path") from None
        raise UserError(f"{p}: not a readable yolov7c checkpoint ({type(e).__name__}: "
                        f"{one_line(msg, 160) or 'no detail'})", arg="path") from None


def _json(p: Path, ckpt: Mapping[str, Any], key: str) -> Any:
    text = ckpt.get(key)
    if not isinstance(text, str):
        raise UserError(f"{p}: malformed checkpoint: {key!r} is a {type(text).__name__}, "
                        f"expected a JSON string", arg="path")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UserError(f"{p}: malformed checkpoint: {key!r} is not valid JSON "
                        f"({one_line(e, 80)})", arg="path") from None


def _check_state_dict(p: Path, sd: Any) -> dict[str, torch.Tensor]:
    if not isinstance(sd, Mapping):
        raise UserError(f"{p}: malformed checkpoint: state_dict is a {type(sd).__name__}, "
                        f"expected a dict of tensors", arg="path")
    total = 0
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise UserError(f"{p}: malformed checkpoint: state_dict entry {show(k, 60)}"
                            f" is {type(v).__name__}, expected str → tensor", arg="path")
        n = v.numel()
        total += n
        if n > MAX_TENSOR_ELEMENTS or total > MAX_TENSOR_ELEMENTS:
            raise UserError(f"{p}: refused: {k} declares {n:,} elements ({total:,} so far; "
                            f"limit {MAX_TENSOR_ELEMENTS:,})", arg="path")
        if n and v.untyped_storage().nbytes() < n * v.element_size():
            raise UserError(f"{p}: malformed checkpoint: {k} of shape {tuple(v.shape)} is not "
                            f"backed by its storage ({v.untyped_storage().nbytes():,} bytes)",
                            arg="path")
        if not all_finite(v):
            raise UserError(f"{p}: corrupted weights: {k} holds NaN or infinite values",
                            arg="path")
    return dict(sd)


def _check_extra(p: Path, extra: dict) -> None:
    """Every tensor of the training state backed by its storage: a stride-0 view of one
    element can declare any shape, which the first arithmetic on it (a momentum update, a
    clone) materialises; and all of them together under the element limit."""
    stack: list[tuple[str, Any, int]] = [("", extra, 0)]
    total = 0
    while stack:
        where, v, depth = stack.pop()
        if isinstance(v, torch.Tensor):
            n = v.numel()
            total += n
            if total > MAX_TENSOR_ELEMENTS:
                raise UserError(f"{p}: refused: extra{one_line(where, 80)} brings the training "
                                f"state to {total:,} elements (limit {MAX_TENSOR_ELEMENTS:,})",
                                arg="path")
            if n and v.untyped_storage().nbytes() < n * v.element_size():
                raise UserError(f"{p}: malformed checkpoint: extra{one_line(where, 80)} of shape "
                                f"{tuple(v.shape)} is not backed by its storage "
                                f"({v.untyped_storage().nbytes():,} bytes)", arg="path")
        elif depth < MAX_DEPTH and isinstance(v, dict):
            stack += [(f"{where}[{k!r}]", x, depth + 1) for k, x in v.items()]
        elif depth < MAX_DEPTH and isinstance(v, (list, tuple)):
            stack += [(f"{where}[{i}]", x, depth + 1) for i, x in enumerate(v)]


def _check_sizes(p: Path, graph: Graph, pipeline: list[str], sd: dict[str, torch.Tensor]) -> None:
    """Compare the parameters the spec declares with the weights present, before lowering
    allocates them: the deploy form is the smallest any pipeline makes, so a state_dict
    with fewer elements than it cannot belong to the spec."""
    from ...ir.deploy import to_deploy
    try:
        declared = params_of(graph)
        smallest = params_of(to_deploy(graph)) if pipeline else declared
    except UserError as e:
        raise UserError(f"{p}: the stored spec does not analyse ({one_line(e, 160)})",
                        arg="path") from None
    have = sum(v.numel() for v in sd.values())
    if declared > MAX_PARAMS:
        raise UserError(f"{p}: refused: the spec declares {declared:,} parameters (limit "
                        f"{MAX_PARAMS:,})", arg="path")
    if have < smallest:
        raise UserError(f"{p}: the weights hold {have:,} values but the stored architecture "
                        f"needs at least {smallest:,} parameters; the file is incomplete or "
                        f"was not written by yolov7c.save", arg="path")


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The validated checkpoint: ``spec`` (dict for ``graph_from_dict``), ``graph`` (the
    Graph rebuilt from it), ``pipeline`` (list of pass names), ``meta`` (dict), ``extra``
    (dict) and ``state_dict`` (str → finite tensor). Any bad file is a one-line UserError."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such checkpoint file", arg="path")
    _check_archive(p)
    ckpt = _torch_load(p)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{p}: not a yolov7c checkpoint (no {FORMAT!r} marker); official .pt "
                        f"files go through import_official", arg="path")
    spec = _json(p, ckpt, "spec")
    meta = _json(p, ckpt, "meta") if "meta" in ckpt else {}
    pipeline = ckpt.get("pipeline", [])
    if not isinstance(pipeline, list) or not all(isinstance(s, str) for s in pipeline):
        raise UserError(f"{p}: malformed checkpoint: pipeline must be a list of pass names",
                        arg="path")
    extra = ckpt.get("extra", {})
    if not isinstance(extra, dict) or not isinstance(meta, dict):
        raise UserError(f"{p}: malformed checkpoint: 'extra' and 'meta' must be dicts",
                        arg="path")
    sd = _check_state_dict(p, ckpt.get("state_dict"))
    _check_extra(p, extra)
    graph = graph_from_dict(spec, source=str(p))
    _check_sizes(p, graph, pipeline, sd)
    return {"format": FORMAT, "spec": spec, "graph": graph, "pipeline": pipeline,
            "meta": meta, "extra": extra, "state_dict": sd}


def apply_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                  path: str | os.PathLike = "<state_dict>") -> nn.Module:
    """Load ``state_dict`` into ``model`` after checking it key by key: same keys (count),
    same shapes, finite values; the message names the first offending key."""
    want = model.state_dict()
    missing = [k for k in want if k not in state_dict]
    unexpected = [k for k in state_dict if k not in want]
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match the architecture ({len(state_dict)} "
                        f"tensors for {len(want)}; missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]})", arg="path")
    for k, ref in want.items():
        v = state_dict[k]
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(ref.shape):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise UserError(f"{path}: weight {k} has shape {got}, the architecture needs "
                            f"{tuple(ref.shape)}", arg="path")
        if not all_finite(v):
            raise UserError(f"{path}: weight {k} holds NaN or infinite values; the file is "
                            f"corrupted", arg="path")
    model.load_state_dict(dict(state_dict), strict=True)
    return model
