"""Load a compiled library and run it (locally, or on a board through an RPC tracker)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError, one_line


class Runner:
    """A loaded library: ``runner(x) -> [numpy outputs]`` on its device."""

    def __init__(self, lib, dev, meta: dict[str, Any]) -> None:
        from tvm import relax
        self.meta = meta
        self.dev = dev
        self.vm = relax.VirtualMachine(lib, dev)
        self._main = self.vm["main"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta.get("input_shape") or ())

    def __call__(self, x) -> list[np.ndarray]:
        import tvm
        arr = np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)
        if self.input_shape and tuple(arr.shape) != self.input_shape:
            raise UserError(f"x shape {tuple(arr.shape)}: this library was compiled for "
                            f"{self.input_shape}; resize the image or recompile at that img",
                            arg="x")
        out = self._main(tvm.runtime.tensor(arr, self.dev))
        if hasattr(out, "numpy"):
            return [out.numpy()]
        return [o.numpy() for o in out]


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar ``<path>.json`` that :func:`compile_model` writes (target, input shape);
    a library without one cannot be run safely (unknown device and input shape)."""
    side = Path(str(path) + ".json")
    if not side.is_file():
        raise UserError(f"path {path}: no sidecar {side.name} beside the library (compile "
                        "writes it: target and input shape); copy it along or recompile",
                        arg="path")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        meta = None
    shape = meta.get("input_shape") if isinstance(meta, dict) else None
    if not (isinstance(shape, list) and len(shape) == 4 and
            all(isinstance(v, int) and v > 0 for v in shape)):
        raise UserError(f"path {side}: not a sidecar written by compile (needs target and "
                        "input_shape); recompile the library", arg="path")
    return meta


def library_device(meta: dict[str, Any]) -> str:
    """The TVM device type a library runs on, from its sidecar: the one compile recorded
    (its ``TargetSpec.device``), else (sidecars written before) its target's kind's."""
    from .targets import DEVICE_OF_KIND, device_of
    dev = meta.get("device")
    if isinstance(dev, str) and dev in DEVICE_OF_KIND.values():
        return dev
    tj = meta.get("target_json")
    return device_of(tj) if isinstance(tj, str) else "cpu"


def _check_device(path: Path, device: str, built: str) -> str:
    """An explicit ``device`` for a library built for ``built``: a TVM device of that
    type (``device`` as given), else a one-line error."""
    import tvm
    try:
        asked = tvm.device(device, 0)
    except (ValueError, TypeError):
        raise UserError(f"device {device!r}: not a TVM device; leave it out (the library "
                        f"runs on {built})", arg="device") from None
    if asked.dlpack_device_type() != tvm.device(built, 0).dlpack_device_type():
        raise UserError(f"device {device!r}: {path.name} was built for {built}; leave device "
                        f"out or pass device={built!r} (or recompile for that device)",
                        arg="device")
    return device


def load(path: str | os.PathLike, device: str | None = None,
         threads: int | None = None) -> Runner:
    """Load ``path`` (from :func:`compile_model`) on the device its sidecar names
    (:func:`library_device`); an explicit ``device`` is used as given and must be of that
    type. Libraries for other CPUs/GPUs give a one-line error. ``threads``: CPU threads
    (default ``TVM_NUM_THREADS``, else the physical cores)."""
    import tvm

    p = Path(path)
    if not p.is_file():
        raise UserError(f"path {p}: no such library; build one with compile", arg="path")
    meta = read_meta(p)
    if meta.get("target") in ("aarch64", "mali", "opencl", "vulkan"):
        raise UserError(f"path {p}: built for {meta['target']} (aarch64 host); copy it to the "
                        "board and load it there (or tune with rpc)", arg="path")
    built = library_device(meta)
    dev_type = built if device is None else _check_device(p, device, built)
    dev = tvm.device(dev_type, 0)
    if not dev.exist:
        raise UserError(f"path {p}: needs a {dev_type} device, which this machine does not "
                        "have", arg="path")
    if built == "cpu":
        from .targets import cpu_threads
        cpu_threads(threads)
    try:
        lib = tvm.runtime.load_module(str(p))
    except Exception as e:  # noqa: BLE001 - TVM raises plain errors; make them one line
        raise UserError(f"path {p}: cannot load: {one_line(str(e).splitlines()[-1], 200)}",
                        arg="path") from None
    return Runner(lib, dev, meta)
