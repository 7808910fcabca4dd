"""A restricted unpickler for torch zip archives written by code we do not run.

Nothing from the file is executed. Every global the pickle names is resolved through an
allow-list: official module classes (``models.*``, ``torch.nn.modules.*``) become inert
``Record``s that only keep their ``__dict__``; tensors are rebuilt by our own functions from
storages read straight out of the archive; ``OrderedDict`` and ``set`` are the only callables,
and ``getattr`` (which official ``model.fuse()`` pickles) only becomes a ``MethodRef`` note.
The numpy data the official trainer leaves (``best_fitness``: an ndarray) is rebuilt the way
torch's weights-only unpickler allows it, as data only: ``_codecs.encode`` of latin-1 text
(protocol-2 bytes), numeric ``numpy.dtype``s, ``_reconstruct`` + a checked state, scalars.
Any other global (``os.system``, ``builtins.eval`` ...) stops the load with a message naming it.

The pickle runs on the pure-Python unpickler with our own BUILD: the C one hands BUILD to
``Tensor.__setstate__``, whose legacy ``set_`` made a stride-0 view of one element declare
gigabytes (6.7 GB RSS from a 6.4 KB file). Every size is checked before it is allocated: the
pickle's and each storage's declared size, the entry count, the compression ratio and the
element count the pickle declares (zip bombs), each tensor's shape, stride and offset against
its storage, and the bytes materialised from them in all (many views of one storage); malformed
opcode streams are one-line errors.
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

import numpy as np
import torch

from ...errors import UserError, one_line, show

RECORD_PREFIXES = ("models.", "torch.nn.modules.", "utils.")
MAX_PICKLE_BYTES = 16 << 20          # data.pkl of yolov7-e6e is ~1 MB (unstripped: ~2 MB)
MAX_STORAGE_BYTES = 2 << 30          # one tensor's storage entry
MAX_ARCHIVE_BYTES = 8 << 30          # all storages together (yolov7-e6e fp16: ~0.3 GB)
MAX_MEMBERS = 100_000                # zip entries (yolov7-e6e: ~1,000)
MAX_RATIO = 100                      # torch stores entries uncompressed; weights deflate ~1.1x
MAX_TENSOR_ELEMENTS = 1 << 30
MAX_DIMS = 8
SLACK_BYTES = 16 << 20               # materialised beyond 2x (storages + pickle)
STORAGE_DTYPES = {"HalfStorage": torch.float16, "FloatStorage": torch.float32,
                  "DoubleStorage": torch.float64, "BFloat16Storage": torch.bfloat16,
                  "LongStorage": torch.int64, "IntStorage": torch.int32,
                  "ShortStorage": torch.int16, "CharStorage": torch.int8,
                  "ByteStorage": torch.uint8, "BoolStorage": torch.bool}
# numpy types whose pickled form is plain bytes (no objects, no fields): what numpy.dtype may build
NUMPY_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4",
                          "f8", "c8", "c16"})
NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")


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


class _StorageRef:
    """A storage of the archive as the pickle sees it (a flat tensor over the entry's bytes).
    Not a tensor, so no BUILD can ``set_`` it into a view larger than its bytes."""

    __slots__ = ("data", "key")

    def __init__(self, data: torch.Tensor, key: str) -> None:
        self.data, self.key = data, key


class _NumpyArrayClass:
    """What the pickle's ``numpy.ndarray`` global becomes: a marker for ``_reconstruct``,
    never a constructor (``ndarray((10**10,))`` would allocate whatever it is told)."""

    __slots__ = ()

    def __call__(self, *_: Any) -> None:
        raise UserError("refused: the pickle calls numpy.ndarray itself (numpy's own pickles "
                        "only pass it to _reconstruct)")


NDARRAY = _NumpyArrayClass()


def _int_tuple(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or len(v) > MAX_DIMS or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 40 for x in v):
        raise UserError(f"refused: a {what} {show(v, 80)} is not a short tuple of "
                        f"non-negative integers")
    return tuple(v)


def _numeric(dtype: Any) -> bool:
    """A numpy dtype whose values are plain bytes: bool, int, float, complex; no objects."""
    return (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and dtype.fields is None
            and dtype.subdtype is None and not dtype.hasobject)


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


def _empty_bytes(*args: Any) -> bytes:
    """Protocol 2 pickles ``b""`` as ``bytes()``; anything else could size an allocation."""
    if args:
        raise UserError(f"refused: the pickle calls bytes{show(args, 60)} (only bytes() is "
                        f"data)")
    return b""


def _np_dtype(code: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype(code, False, True)`` for a numeric code; a fresh copy, so the state BUILD
    sets next never touches numpy's shared instances."""
    if not (isinstance(code, str) and code in NUMPY_DTYPES and align is False and copy is True):
        raise UserError(f"refused: numpy.dtype{show((code, align, copy), 60)} (only numeric "
                        f"dtypes are read as data: {', '.join(sorted(NUMPY_DTYPES))})")
    return np.dtype(code, align=False, copy=True)


def _np_reconstruct(cls: Any, shape: Any, code: Any) -> np.ndarray:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array that BUILD then fills
    from a checked state."""
    if cls is not NDARRAY or shape != (0,) or code != b"b":
        raise UserError(f"refused: numpy _reconstruct{show((cls, shape, code), 80)} (only "
                        f"plain ndarrays are read as data)")
    return np.empty(0, np.int8)


def _np_scalar(dtype: Any, data: Any) -> Any:
    """``numpy.core.multiarray.scalar(dtype, raw)``: one numeric value from its bytes."""
    if not _numeric(dtype) or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise UserError(f"refused: a numpy scalar of {show(dtype, 40)} from "
                        f"{type(data).__name__} (only numbers are read as data)")
    return np.frombuffer(data, dtype)[0].copy()


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytearray:
    """The entry's bytes in one buffer of its declared size (checked against the limits
    before): zipfile stops inflating there and reports a CRC mismatch for an entry whose
    header understates it; a short entry is refused here."""
    buf = bytearray(info.file_size)
    with archive.open(info) as f:
        n = f.readinto(buf)
        extra = f.read(1)
    if n != info.file_size or extra:
        raise UserError(f"refused: entry {show(info.filename, 60)} inflates to "
                        f"{'more' if extra else 'less'} than its declared {info.file_size:,} "
                        f"bytes (a damaged or crafted archive)")
    return buf


def _check_entry(info: zipfile.ZipInfo) -> None:
    """Refuse an entry that deflates far better than weights do (torch stores them
    uncompressed): a 2 MB file once inflated one storage to 4.36 GB."""
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > 1 << 20 \
            and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise UserError(f"refused: entry {show(info.filename, 60)} inflates "
                        f"{info.compress_size:,} → {info.file_size:,} bytes (over {MAX_RATIO}x; "
                        f"a zip bomb? torch writes its entries uncompressed)")


def _load_build(self: "RestrictedUnpickler") -> None:
    """BUILD: set an object's state, for the types that have a safe meaning only."""
    state = self.stack.pop()
    inst = self.stack[-1]
    if isinstance(inst, Record):
        inst.__setstate__(state)
    elif type(inst) is np.ndarray:
        self.build_array(inst, state)
    elif isinstance(inst, np.dtype):
        self.build_dtype(inst, state)
    elif type(inst) is torch.Tensor:
        self.build_tensor(inst, state)
    elif type(inst) is collections.OrderedDict and isinstance(state, dict) \
            and all(isinstance(k, str) for k in state):
        inst.__dict__.update(state)          # torch's state_dict ``_metadata``
    else:
        raise UserError(f"refused: the pickle sets the state of a {type(inst).__name__} to "
                        f"{show(state, 60)}, which no checkpoint needs")


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler over a torch zip archive that maps globals through the allow-list and
    charges every byte it materialises to one budget."""

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        data = _read_entry(archive, archive.getinfo(f"{prefix}data.pkl"))
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.records: dict[str, type[Record]] = {}
        self.storages: dict[str, _StorageRef] = {}
        self.total = 0                      # storage bytes read
        self.pickle_bytes = len(data)
        self.made = 0                       # bytes materialised from storages and the pickle
        self.allowed: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
            ("builtins", "getattr"): _getattr_ref, ("builtins", "bytes"): _empty_bytes,
            ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("_codecs", "encode"): self.codecs_encode,
            ("numpy", "ndarray"): NDARRAY, ("numpy", "dtype"): _np_dtype,
            **{(m, "_reconstruct"): _np_reconstruct for m in NUMPY_MULTIARRAY},
            **{(m, "scalar"): _np_scalar for m in NUMPY_MULTIARRAY}}

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` about to be allocated from the file's data; refuse past twice what
        the file holds (views of one storage repeated, one string encoded over and over)."""
        self.made += nbytes
        limit = 2 * (self.total + self.pickle_bytes) + SLACK_BYTES
        if self.made > limit:
            raise UserError(f"refused: {what} brings the data built from the file to "
                            f"{self.made:,} bytes, more than twice what it stores "
                            f"({self.total + self.pickle_bytes:,} bytes; views repeated)")

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":
            module = "builtins"
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _Storage(STORAGE_DTYPES[name])
        if module.startswith(RECORD_PREFIXES) and name.isidentifier() \
                and not name.startswith("_"):
            qualname = f"{module}.{name}"
            if qualname not in self.records:
                self.records[qualname] = type(name, (Record,), {"qualname": qualname})
            return self.records[qualname]
        raise UserError(f"{self.source}: refused: the pickle references "
                        f"{show(f'{module}.{name}', 120)}, which is not a tensor, container, "
                        f"numeric numpy value or model class (an official checkpoint never "
                        f"needs it; the file may be malicious). Nothing was executed.")

    # ------------------------------------------------------------- data the pickle builds
    def codecs_encode(self, text: Any, encoding: Any = "utf-8", errors: Any = "strict"
                      ) -> bytes:
        """``_codecs.encode(text, 'latin1')``: how protocol 2 writes bytes. Other codecs
        (zlib, rot13 ...) are not data."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") \
                or errors != "strict":
            raise UserError(f"refused: _codecs.encode of a {type(text).__name__} with "
                            f"{show(encoding, 30)} (only latin1 text, protocol 2's bytes, is "
                            f"data)")
        try:
            raw = text.encode("latin1")
        except UnicodeEncodeError:
            raise UserError("refused: _codecs.encode of text that is not latin1 (protocol 2's "
                            "bytes always are; a crafted pickle)") from None
        self.charge(len(raw), "encoded bytes")
        return raw

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any,
                       *_: Any) -> torch.Tensor:
        """torch._utils._rebuild_tensor_v2, reimplemented: a strided copy out of a flat
        storage. Checkpoint tensors are dense, so a tensor may not hold more elements than its
        storage, and its extent (offset + Σ (size-1)·stride) must lie inside it."""
        if not isinstance(storage, _StorageRef):
            raise UserError(f"refused: a tensor is built from {type(storage).__name__}, not a "
                            f"storage of the archive")
        size, stride = _int_tuple(size, "tensor shape"), _int_tuple(stride, "tensor stride")
        if len(size) != len(stride) or not isinstance(offset, int) or isinstance(offset, bool) \
                or offset < 0:
            raise UserError(f"refused: tensor shape {size} / stride {stride} / offset "
                            f"{show(offset, 20)} do not describe a tensor")
        numel = math.prod(size)
        data = storage.data
        have = data.numel()
        if numel > MAX_TENSOR_ELEMENTS or numel > have:
            raise UserError(f"refused: a tensor of shape {size} ({numel:,} elements) over a "
                            f"storage of {have:,} elements (limit {MAX_TENSOR_ELEMENTS:,})")
        if numel and offset + sum((n - 1) * st for n, st in zip(size, stride)) >= have:
            raise UserError(f"refused: tensor shape {size}, stride {stride}, offset {offset} "
                            f"reach past its storage of {have:,} elements")
        self.charge(numel * data.element_size(), f"tensor {size}")
        return torch.as_strided(data, size, stride, offset).clone()

    def build_tensor(self, inst: torch.Tensor, state: Any) -> None:
        """The legacy BUILD of a tensor, ``set_(storage, offset, size, stride)``, checked like
        ``rebuild_tensor`` (torch.save never writes it)."""
        if not (isinstance(state, tuple) and len(state) == 4):
            raise UserError(f"refused: the pickle sets a tensor's state to {show(state, 60)} "
                            f"(only the legacy (storage, offset, size, stride) is data)")
        new = self.rebuild_tensor(*state)
        if new.dtype != inst.dtype:
            raise UserError(f"refused: the pickle sets a {inst.dtype} tensor to a {new.dtype} "
                            f"storage")
        with torch.no_grad():
            inst.set_(new)

    def build_dtype(self, inst: np.dtype, state: Any) -> None:
        """A numpy dtype's state: numpy's own for that code, only the byte order may differ."""
        want = inst.__reduce__()[2]
        if not (isinstance(state, tuple) and len(state) == len(want) and state[0] == want[0]
                and state[1] in ("<", ">", "|", "=") and state[2:] == want[2:]):
            raise UserError(f"refused: numpy dtype state {show(state, 80)} (fields, subarrays "
                            f"or metadata: only plain numeric dtypes are read)")
        inst.__setstate__((want[0], state[1], *want[2:]))

    def build_array(self, inst: np.ndarray, state: Any) -> None:
        """A numpy array's state ``(1, shape, dtype, fortran, raw)``: numbers as bytes of
        exactly the declared size; object arrays (whose elements are pickles) are refused."""
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise UserError(f"refused: numpy array state {show(state, 60)} is not (1, shape, "
                            f"dtype, fortran, bytes)")
        _, shape, dtype, fortran, raw = state
        shape = _int_tuple(shape, "numpy array shape")
        if not _numeric(dtype):
            raise UserError(f"refused: a numpy array of dtype {show(dtype, 40)} (only bool, "
                            f"int, float and complex arrays are read as data)")
        need = math.prod(shape) * dtype.itemsize
        if not isinstance(fortran, bool) or not isinstance(raw, bytes) or len(raw) != need:
            got = f"{len(raw):,} bytes" if isinstance(raw, bytes) else \
                f"a {one_line(type(raw).__name__, 30)}"
            raise UserError(f"refused: a numpy array of shape {shape} {dtype} needs {need:,} "
                            f"bytes, the pickle gives {got}")
        self.charge(need, f"numpy array {shape}")
        inst.__setstate__((1, shape, dtype, fortran, raw))

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"
                and isinstance(pid[1], _Storage)):
            raise UserError(f"{self.source}: refused: unexpected persistent id {show(pid, 80)}")
        key = str(pid[2])
        if key not in self.storages:
            self.storages[key] = self._read_storage(key, pid[1].dtype,
                                                    pid[4] if len(pid) > 4 else None)
        ref = self.storages[key]
        if ref.data.dtype != pid[1].dtype:
            raise UserError(f"{self.source}: refused: storage {one_line(key, 40)} is read as "
                            f"{ref.data.dtype} and {pid[1].dtype}")
        return ref

    def _read_storage(self, key: str, dtype: torch.dtype, numel: Any) -> _StorageRef:
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
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if info.file_size % itemsize or (numel is not None and (
                isinstance(numel, bool) or not isinstance(numel, int)
                or numel * itemsize != info.file_size)):
            raise UserError(f"{self.source}: refused: storage {one_line(key, 40)} holds "
                            f"{info.file_size:,} bytes, not the {show(numel, 20)} {dtype} "
                            f"elements the pickle declares")
        _check_entry(info)
        raw = _read_entry(self.archive, info)
        data = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return _StorageRef(data, key)


def unpickle(path: str | os.PathLike) -> Any:
    """The object stored in a torch zip file, with every class replaced by a ``Record``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    if not zipfile.is_zipfile(p):
        raise UserError(f"{p}: not a torch zip checkpoint (legacy pre-1.6 files are not "
                        f"supported; re-save it with a current torch)")
    check_member_count(p)
    try:
        with zipfile.ZipFile(p) as zf:
            return _unpickle_archive(zf, p)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        raise UserError(f"{p}: damaged zip archive ({one_line(e, 120)})") from None


def check_member_count(p: Path) -> None:
    """The entry count from the end-of-archive record, before zipfile builds an object per
    entry (2 million entries take over 1 GB)."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:
        return
    with open(p, "rb") as f:
        rec = end_record(f)
    n = rec[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)] if rec else 0
    if isinstance(n, int) and n > MAX_MEMBERS:
        raise UserError(f"{p}: refused: the archive declares {n:,} entries (limit "
                        f"{MAX_MEMBERS:,}; an official checkpoint has about 1,000)")


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
