"""Safe import of official YOLOv7 ``.pt`` files (a pickled ``models.yolo.Model``, fp16).

Nothing from the file is executed. A restricted unpickler resolves every global the pickle
names through an allow-list: official module classes (``models.*``, ``torch.nn.modules.*``)
become inert ``Record``s that only keep their ``__dict__``; tensors are rebuilt by our own
functions from storages read straight out of the zip archive; ``OrderedDict`` and ``set`` are
the only callables. Any other global (``os.system``, ``builtins.eval`` ...) stops the load
with a message naming it. The model is then rebuilt from the recovered cfg (the Model's
``yaml`` attribute) with ``nc`` and anchors taken from the head's own buffers, and the
recovered state_dict (official key names = ours) is loaded in fp32.
"""
from __future__ import annotations

import collections
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError
from ...ir.yaml_io import from_cfg
from .lower import YoloModel, lower

RECORD_PREFIXES = ("models.", "torch.nn.modules.", "utils.")
INERT_GLOBALS = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                 ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                 ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray")}
STORAGE_DTYPES = {"HalfStorage": torch.float16, "FloatStorage": torch.float32,
                  "DoubleStorage": torch.float64, "BFloat16Storage": torch.bfloat16,
                  "LongStorage": torch.int64, "IntStorage": torch.int32,
                  "ShortStorage": torch.int16, "CharStorage": torch.int8,
                  "ByteStorage": torch.uint8, "BoolStorage": torch.bool}


class Record:
    """Inert stand-in for a pickled object: keeps constructor args and state, runs nothing."""

    qualname = "?"

    def __new__(cls, *args: Any) -> "Record":
        obj = object.__new__(cls)
        obj.args, obj.state = args, {}
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"__state__": state}

    def child(self, name: str) -> "Record | None":
        return (self.state.get("_modules") or {}).get(name)

    def __repr__(self) -> str:
        return f"Record({self.qualname})"


@dataclass(frozen=True)
class _Storage:
    dtype: torch.dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any,
                    *_: Any) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2, reimplemented: a strided view of a flat storage."""
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset)).clone()


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler over a torch zip archive that maps globals through the allow-list."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(archive.open(f"{prefix}data.pkl"))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.records: dict[str, type[Record]] = {}
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _Storage(STORAGE_DTYPES[name])
        if ((module.startswith(RECORD_PREFIXES) and name.isidentifier()
             and not name.startswith("_")) or (module, name) in INERT_GLOBALS):
            if qualname not in self.records:
                self.records[qualname] = type(name, (Record,), {"qualname": qualname})
            return self.records[qualname]
        raise UserError(f"{self.source}: refused: the pickle references {qualname!r}, which is "
                        f"not a tensor, container or model class (an official checkpoint "
                        f"never needs it; the file may be malicious). Nothing was executed.")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"
                and isinstance(pid[1], _Storage)):
            raise UserError(f"{self.source}: refused: unexpected persistent id {pid!r:.80}")
        key = str(pid[2])
        if key not in self.storages:
            try:
                raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            except KeyError:
                raise UserError(f"{self.source}: storage {key} missing from the archive") from None
            dtype = pid[1].dtype
            self.storages[key] = (torch.frombuffer(raw, dtype=dtype) if raw
                                  else torch.empty(0, dtype=dtype))
        return self.storages[key]


def unpickle(path: str | os.PathLike) -> Any:
    """The object stored in a torch zip file, with every class replaced by a ``Record``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    if not zipfile.is_zipfile(p):
        raise UserError(f"{p}: not a torch zip checkpoint (legacy pre-1.6 files are not "
                        f"supported; re-save it with a current torch)")
    with zipfile.ZipFile(p) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise UserError(f"{p}: expected one <name>/data.pkl in the archive, found {pkls}")
        prefix = pkls[0][: -len("data.pkl")]
        order = (zf.read(f"{prefix}byteorder").decode().strip()
                 if f"{prefix}byteorder" in zf.namelist() else "little")
        if order != "little":
            raise UserError(f"{p}: {order}-endian checkpoints are not supported")
        try:
            return RestrictedUnpickler(zf, prefix, str(p)).load()
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{p}: unreadable checkpoint pickle ({e!r:.160})") from None


def state_dict(record: Record, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict a module record would produce (persistent buffers only)."""
    st = record.state
    skip = set(st.get("_non_persistent_buffers_set") or ())
    out = {f"{prefix}{k}": v for k, v in (st.get("_parameters") or {}).items() if v is not None}
    out.update({f"{prefix}{k}": v for k, v in (st.get("_buffers") or {}).items()
                if v is not None and k not in skip})
    for name, child in (st.get("_modules") or {}).items():
        if isinstance(child, Record):
            out.update(state_dict(child, f"{prefix}{name}."))
    return out


def _head_facts(model: Record, source: str) -> dict[str, Any]:
    """nc and anchors (pixels) from the head's own attributes and buffers."""
    layers = model.child("model")
    mods = list((layers.state.get("_modules") or {}).values()) if layers else []
    if not mods or "anchor_grid" not in (mods[-1].state.get("_buffers") or {}):
        raise UserError(f"{source}: no detection head with anchors found in the model")
    head = mods[-1]
    grid = head.state["_buffers"]["anchor_grid"].float()
    nl = grid.shape[0]
    anchors = [[int(v) if float(v).is_integer() else float(v) for v in row]
               for row in grid.reshape(nl, -1).tolist()]
    return {"nc": int(head.state["nc"]), "anchors": anchors}


def import_official(path: str | os.PathLike) -> YoloModel:
    """Our ``YoloModel`` (fp32, eval) with the weights of an official training/deploy .pt."""
    src = str(path)
    ckpt = unpickle(path)
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
    if not isinstance(model, Record) or not model.qualname.endswith(".Model"):
        raise UserError(f"{src}: no official models.yolo.Model inside (found {model!r:.60})")
    cfg = model.state.get("yaml")
    if not isinstance(cfg, dict):
        raise UserError(f"{src}: the model carries no cfg ('yaml' attribute); cannot rebuild it")
    weights = state_dict(model)
    if any(".rbr_reparam." in k for k in weights) or any(
            k.endswith(".conv.bias") for k in weights):
        raise UserError(f"{src}: a fused (model.fuse()) checkpoint; import the unfused training "
                        f"or deploy .pt and run `yolov7c passes --pipeline deploy` instead")
    graph = from_cfg(dict(cfg, **_head_facts(model, src)), name=Path(src).stem, source=src)
    net = lower(graph)
    try:
        missing, unexpected = net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
            strict=False)
    except RuntimeError as e:
        raise UserError(f"{src}: weight shapes do not match the cfg ({str(e).splitlines()[1][:160]})") from None
    if missing or unexpected:
        raise UserError(f"{src}: weights do not match the cfg's architecture (missing "
                        f"{missing[:3]}, unexpected {unexpected[:3]})")
    return net.eval()
