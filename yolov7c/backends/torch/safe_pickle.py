"""A restricted unpickler for torch zip archives written by code we do not run.

Nothing from the file is executed. Every global the pickle names is resolved through an
allow-list: official module classes (``models.*``, ``torch.nn.modules.*``) become inert
``Record``s that only keep their ``__dict__``; tensors are rebuilt by our own functions from
storages read straight out of the archive; ``OrderedDict`` and ``set`` are the only callables,
and ``getattr`` (which official ``model.fuse()`` pickles) only becomes a ``MethodRef`` note.
Any other global (``os.system``, ``builtins.eval`` ...) stops the load with a message naming
it. Every size is checked before it is allocated: the pickle's and each storage's declared
size (zip bombs), each tensor's shape, stride and offset against its storage (a stride-0
view of one element once declared 3.2 GB), and malformed opcode streams are one-line errors.
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError, one_line, show

RECORD_PREFIXES = ("models.", "torch.nn.modules.", "utils.")
MAX_PICKLE_BYTES = 64 << 20          # data.pkl of yolov7-e6e is ~1 MB
MAX_STORAGE_BYTES = 2 << 30          # one tensor's storage entry
MAX_ARCHIVE_BYTES = 8 << 30          # all storages together (yolov7-e6e fp16: ~0.3 GB)
MAX_TENSOR_ELEMENTS = 1 << 30
MAX_DIMS = 8
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
        mods = self.state.get("_modules")
        return mods.get(name) if isinstance(mods, dict) else None

    def __repr__(self) -> str:
        return f"Record({self.qualname})"


@dataclass(frozen=True)
class _Storage:
    dtype: torch.dtype


def _int_tuple(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or len(v) > MAX_DIMS or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 40 for x in v):
        raise UserError(f"refused: a tensor {what} {show(v, 80)} is not a short tuple of "
                        f"non-negative integers")
    return tuple(v)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any,
                    *_: Any) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2, reimplemented: a strided copy out of a flat storage.

    Every declared number is checked against the storage before anything is allocated: a
    611-byte file declaring a stride-0 view asked for 3.2 GB once. Checkpoint tensors are
    dense, so a tensor may not hold more elements than its storage."""
    if not isinstance(storage, torch.Tensor):
        raise UserError(f"refused: a tensor is built from {type(storage).__name__}, not a "
                        f"storage of the archive")
    size, stride = _int_tuple(size, "shape"), _int_tuple(stride, "stride")
    if len(size) != len(stride) or not isinstance(offset, int) or isinstance(offset, bool) \
            or offset < 0:
        raise UserError(f"refused: tensor shape {size} / stride {stride} / offset "
                        f"{show(offset, 20)} do not describe a tensor")
    numel = math.prod(size)
    have = storage.numel()
    if numel > MAX_TENSOR_ELEMENTS or numel > have:
        raise UserError(f"refused: a tensor of shape {size} ({numel:,} elements) over a storage "
                        f"of {have:,} elements (limit {MAX_TENSOR_ELEMENTS:,})")
    if numel and offset + sum((n - 1) * st for n, st in zip(size, stride)) >= have:
        raise UserError(f"refused: tensor shape {size}, stride {stride}, offset {offset} reach "
                        f"past its storage of {have:,} elements")
    return torch.as_strided(storage, size, stride, offset).clone()


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UserError(f"refused: a parameter built from {type(data).__name__}, not a tensor")
    return data


@dataclass(frozen=True)
class MethodRef:
    """What ``getattr(obj, name)`` in a pickle becomes: a note, never a lookup. Official
    ``model.fuse()`` pickles ``m.forward = m.fuseforward`` this way."""
    name: str


def _getattr_ref(obj: Any, name: Any, *_: Any) -> MethodRef:
    return MethodRef(str(name)[:80])


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("builtins", "getattr"): _getattr_ref, ("__builtin__", "getattr"): _getattr_ref,
}


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes, at most its declared size (checked against the limits before):
    zipfile stops inflating there and reports a CRC mismatch for an entry whose header
    understates it; a short entry is refused here."""
    with archive.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise UserError(f"refused: entry {show(info.filename, 60)} inflates to more than its "
                        f"declared {info.file_size:,} bytes (a damaged or crafted archive)")
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler over a torch zip archive that maps globals through the allow-list."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(io.BytesIO(_read_entry(archive, archive.getinfo(f"{prefix}data.pkl"))))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.records: dict[str, type[Record]] = {}
        self.storages: dict[str, torch.Tensor] = {}
        self.total = 0

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
        raise UserError(f"{self.source}: refused: the pickle references {show(qualname, 120)}, "
                        f"which is not a tensor, container or model class (an official checkpoint "
                        f"never needs it; the file may be malicious). Nothing was executed.")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"
                and isinstance(pid[1], _Storage)):
            raise UserError(f"{self.source}: refused: unexpected persistent id {show(pid, 80)}")
        key = str(pid[2])
        if key not in self.storages:
            name = f"{self.prefix}data/{key}"
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                raise UserError(f"{self.source}: storage {one_line(key, 40)} missing from the "
                                f"archive") from None
            self.total += info.file_size
            if info.file_size > MAX_STORAGE_BYTES or self.total > MAX_ARCHIVE_BYTES:
                raise UserError(f"{self.source}: refused: storage {one_line(key, 40)} inflates to "
                                f"{info.file_size:,} bytes ({self.total:,} in all; limits "
                                f"{MAX_STORAGE_BYTES:,} per tensor, {MAX_ARCHIVE_BYTES:,} total)")
            dtype = pid[1].dtype
            raw = bytearray(_read_entry(self.archive, info))
            itemsize = torch.empty(0, dtype=dtype).element_size()
            raw = raw[: len(raw) // itemsize * itemsize]
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
    try:
        with zipfile.ZipFile(p) as zf:
            return _unpickle_archive(zf, p)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        raise UserError(f"{p}: damaged zip archive ({one_line(e, 120)})") from None


def _unpickle_archive(zf: zipfile.ZipFile, p: Path) -> Any:
    pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise UserError(f"{p}: expected one <name>/data.pkl in the archive, found "
                        f"{show(pkls, 120)}")
    info = zf.getinfo(pkls[0])
    if info.file_size > MAX_PICKLE_BYTES:
        raise UserError(f"{p}: refused: the pickle inflates to {info.file_size:,} bytes (limit "
                        f"{MAX_PICKLE_BYTES:,}; an official checkpoint's is about 1 MB)")
    prefix = pkls[0][: -len("data.pkl")]
    order = "little"
    if f"{prefix}byteorder" in zf.namelist():
        bo = zf.getinfo(f"{prefix}byteorder")
        order = (_read_entry(zf, bo).decode("ascii", "replace").strip() if bo.file_size <= 16
                 else "unknown")
    if order != "little":
        raise UserError(f"{p}: {one_line(order, 16)}-endian checkpoints are not supported")
    try:
        return RestrictedUnpickler(zf, prefix, str(p)).load()
    except UserError as e:
        msg = str(e)
        raise UserError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
    except Exception as e:  # any malformed opcode stream: the file's fault, one line
        raise UserError(f"{p}: unreadable checkpoint pickle ({one_line(repr(e), 160)})") from None
