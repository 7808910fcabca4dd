"""The training state of ``weights/last.ckpt``, checked before ``train --resume`` trusts it.

A run folder is user data. Crafted or damaged ``last.ckpt`` files gave 16 different
tracebacks (settings as a string, epoch "abc", a short RNG state, an empty optimizer state,
batch 0 ...) or allocations (img 100000: 112 GiB), and accepted batch 1e5 or time_limit -1
silently. ``check_resume`` validates every part the trainer restores, with the rules a new
run's arguments meet: the settings' types (``Settings``' own annotations) and the ranges of
the CLI's flags (``limits.FLAG_RANGES``, the table ``cli/bounds.py`` applies), the counters and
the history, the weights and gradients against the model, the optimizer state against the
optimizer this model gets, and the RNG state's length. Dense tensors (no stride-0 view posing
as a large one) are checked by ``checkpoint.read`` for the whole file. Each failure is one
line that names the checkpoint, the field and what to do.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..backends.common import all_finite
from ..errors import UserError, show
from ..limits import FLAG_RANGES, number_problem
from .hyp import load_hyp
from .optim import build_optimizer
from .runs import COLUMNS, LRS
from .trainer import Settings

# The ranges of the flags that set these fields on a new run: the CLI's own table.
RANGES = FLAG_RANGES
SCHEDULE_KEYS = ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum",
                 "warmup_bias_lr")
SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval",
               "_growth_tracker"}
MAX_UPDATES = 10**12
# what plots, results.csv and the run's clock read back (the learning rates are not)
HISTORY_KEYS = tuple(c for c in COLUMNS if c not in LRS)


class _Check:
    """Raises the one-line error for checkpoint ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> typing.NoReturn:
        raise UserError(f"resume {self.path}: {field} {problem}; the file is damaged or was "
                        f"not written by yolov7c train (start a new run, or fine-tune "
                        f"weights/best.ckpt)", arg="resume")

    def number(self, v: Any, field: str, kind: type = float, lo: float = -math.inf,
               hi: float = math.inf) -> Any:
        problem = number_problem(v, kind, lo, hi)
        if problem:
            self.fail(field, problem)
        return v

    def mapping(self, v: Any, field: str, keys: type | tuple[type, ...] = str) -> dict:
        if not isinstance(v, dict) or not all(isinstance(k, keys) for k in v):
            self.fail(field, f"is {show(v, 40)}, expected a dict")
        return v

    def tensor(self, v: Any, field: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if not isinstance(v, torch.Tensor):
            self.fail(field, f"is a {type(v).__name__}, expected a tensor")
        if shape is not None and tuple(v.shape) != shape:
            self.fail(field, f"has shape {tuple(v.shape)}, the model needs {shape}")
        if not all_finite(v):
            self.fail(field, "holds NaN or infinite values")
        return v


def _kinds(annotation: Any) -> tuple[set[type], bool]:
    """(plain types, None allowed) of a Settings annotation such as ``int | None``."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else (annotation,)
    kinds = {typing.get_origin(a) or a for a in args if a is not type(None)}
    return kinds, type(None) in args


def check_settings(c: _Check, raw: Any) -> Settings:
    """``Settings`` from the stored dict: every field of the right type and, for numbers,
    inside the range of its flag; the hyp is a complete dict of numbers."""
    c.mapping(raw, "settings")
    hints = typing.get_type_hints(Settings)
    required = [f.name for f in dataclasses.fields(Settings)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in raw]
    if missing:
        c.fail("settings", f"lack {', '.join(missing)}")
    for k, v in raw.items():
        if k not in hints:
            continue
        kinds, optional = _kinds(hints[k])
        where = f"settings {k}"
        if v is None:
            if not optional:
                c.fail(where, "is None")
            continue
        if kinds & {int, float}:
            kind = int if float not in kinds else float
            c.number(v, where, kind, *RANGES.get(k, (-math.inf, math.inf)))
        elif bool in kinds:
            if not isinstance(v, bool):
                c.fail(where, f"is {show(v, 40)}, expected true or false")
        elif str in kinds:
            if not isinstance(v, str) or not v and k == "data":
                c.fail(where, f"is {show(v, 40)}, expected a non-empty text")
        elif dict in kinds:
            c.mapping(v, where)
    _check_hyp(c, raw["hyp"])
    return Settings.from_extra(raw)


def _check_hyp(c: _Check, hyp: Any) -> None:
    c.mapping(hyp, "settings hyp")
    for k, v in hyp.items():
        c.number(v, f"settings hyp {show(k, 30)}")
    missing = [k for k in SCHEDULE_KEYS if k not in hyp]
    if missing:
        c.fail("settings hyp", f"lacks {', '.join(missing)}")
    try:
        load_hyp(hyp)
    except UserError as e:
        c.fail("settings", str(e))


def check_weights(c: _Check, sd: Any, want: Mapping[str, torch.Tensor], field: str) -> None:
    """Same keys and shapes as the model's state_dict, finite values."""
    c.mapping(sd, field)
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    if missing or extra:
        c.fail(field, f"do not match the model ({len(sd)} tensors for {len(want)}; missing "
                      f"{show(missing[:3], 80)}, unexpected {show(extra[:3], 80)})")
    for k, ref in want.items():
        c.tensor(sd[k], f"{field} {k}", tuple(ref.shape))


def check_optimizer(c: _Check, sd: Any, ref: torch.optim.Optimizer) -> None:
    """The stored SGD state against the optimizer this model and these settings build: the
    same groups over the same parameters, numeric group settings, momentum buffers shaped
    like their parameters."""
    c.mapping(sd, "optimizer")
    groups, state = sd.get("param_groups"), sd.get("state")
    want = ref.state_dict()["param_groups"]
    if not isinstance(groups, list) or not isinstance(state, dict):
        c.fail("optimizer", "lacks its param_groups list or state dict")
    if len(groups) != len(want):
        c.fail("optimizer param_groups", f"has {len(groups)} groups, the model's optimizer "
                                         f"{len(want)}")
    shapes: dict[int, tuple[int, ...]] = {}
    for i, (g, w) in enumerate(zip(groups, want)):
        c.mapping(g, f"optimizer param_groups[{i}]")
        if g.get("params") != w["params"]:
            c.fail(f"optimizer param_groups[{i}] params", f"lists {show(g.get('params'), 40)}, "
                                                          f"the model's group has "
                                                          f"{len(w['params'])} parameters")
        for k in ("lr", "momentum", "weight_decay", "dampening", "initial_lr"):
            if k in w:
                c.number(g.get(k), f"optimizer param_groups[{i}] {k}")
        if not isinstance(g.get("nesterov"), bool):
            c.fail(f"optimizer param_groups[{i}] nesterov", "is not true or false")
        params = ref.param_groups[i]["params"]
        shapes.update({pid: tuple(p.shape) for pid, p in zip(w["params"], params)})
    c.mapping(state, "optimizer state", int)
    for pid, st in state.items():
        if pid not in shapes:
            c.fail("optimizer state", f"has an entry for parameter {show(pid, 20)}, which the "
                                      f"model does not have")
        c.mapping(st, f"optimizer state[{pid}]")
        buf = st.get("momentum_buffer")
        if buf is not None:
            c.tensor(buf, f"optimizer state[{pid}] momentum_buffer", shapes[pid])


def check_resume(path: str | os.PathLike, ckpt: Mapping[str, Any], model: nn.Module
                 ) -> Settings:
    """The validated ``Settings`` of the training checkpoint ``ckpt`` (as ``checkpoint.read``
    returns it) for ``model`` (lowered from its spec); any bad part is a one-line
    ``UserError`` naming ``path`` and the field."""
    c = _Check(Path(path))
    extra = ckpt.get("extra")
    if not isinstance(extra, dict) or "settings" not in extra:
        raise UserError(f"resume {path}: a checkpoint without training state (not written by "
                        f"train); fine-tune it as a source instead", arg="resume")
    s = check_settings(c, extra["settings"])
    epoch = c.number(extra.get("epoch"), "epoch", int, -1, s.epochs - 1)
    c.number(extra.get("best"), "best")
    c.number(extra.get("best_epoch"), "best_epoch", int, -1, epoch)
    c.number(extra.get("ema_updates"), "ema_updates", int, 0, MAX_UPDATES)
    history = extra.get("history")
    if not isinstance(history, list) or len(history) != epoch + 1:
        c.fail("history", f"is {show(history, 40)}, expected a list of {epoch + 1} epoch rows")
    for i, row in enumerate(history):
        c.mapping(row, f"history[{i}]")
        for k in HISTORY_KEYS:    # what plots, results.csv and the run's clock read back
            v = row.get(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isinf(v):
                c.fail(f"history[{i}] {k}", f"is {show(v, 40)}, expected a number (NaN: "
                                            f"not measured)")
        bad = next((k for k, v in row.items() if not isinstance(v, (str, int, float))
                    or isinstance(v, str) and len(v) > 1000), None)
        if bad is not None:
            c.fail(f"history[{i}] {show(bad, 30)}", f"is {show(row[bad], 40)}, expected a "
                                                    f"number or a short text")
    want = model.state_dict()
    check_weights(c, extra.get("model"), want, "model weights")
    check_weights(c, ckpt.get("state_dict"), want, "EMA weights")
    params = list(model.parameters())
    grads = extra.get("grads")
    if not isinstance(grads, list) or len(grads) != len(params):
        c.fail("grads", f"is {show(grads, 40)}, expected a list of {len(params)} tensors")
    for i, (g, p) in enumerate(zip(grads, params)):
        c.tensor(g, f"grads[{i}]", None if isinstance(g, torch.Tensor) and g.numel() == 0
                 else tuple(p.shape))
    try:
        ref = build_optimizer(model, s.hyp, s.batch, s.nominal_batch)
    except (KeyError, TypeError, ValueError) as e:
        c.fail("settings hyp", f"does not build the optimizer ({show(e, 60)})")
    check_optimizer(c, extra.get("optimizer"), ref)
    scaler = extra.get("scaler", {})
    c.mapping(scaler, "scaler")
    for k, v in scaler.items():
        if k not in SCALER_KEYS:
            c.fail("scaler", f"has an unknown entry {show(k, 30)}")
        c.number(v, f"scaler {k}")
    rng = c.tensor(extra.get("torch_rng"), "torch_rng")
    n = torch.get_rng_state().numel()
    if rng.dtype != torch.uint8 or rng.dim() != 1 or rng.numel() != n:
        c.fail("torch_rng", f"is a {rng.dtype} tensor of shape {tuple(rng.shape)}, expected "
                            f"{n} bytes (torch.get_rng_state())")
    return s
