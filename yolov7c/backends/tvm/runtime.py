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


def load(path: str | os.PathLike, device: str | None = None,
         threads: int | None = None) -> Runner:
    """Load ``path`` (from :func:`compile_model`) on this machine's ``device`` (default: the
    one the library was built for). Libraries for other CPUs/GPUs give a one-line error.
    ``threads``: CPU threads (default ``TVM_NUM_THREADS``, else the physical cores)."""
    import tvm

    p = Path(path)
    if not p.is_file():
        raise UserError(f"path {p}: no such library; build one with compile", arg="path")
    meta = read_meta(p)
    dev_type = device or {"cuda": "cuda", "mali": "opencl", "opencl": "opencl",
                          "vulkan": "vulkan"}.get(meta.get("target", "llvm"), "cpu")
    if meta.get("target") in ("aarch64", "mali", "opencl", "vulkan"):
        raise UserError(f"path {p}: built for {meta['target']} (aarch64 host); copy it to the "
                        "board and load it there (or tune with rpc)", arg="path")
    dev = tvm.device(dev_type, 0)
    if not dev.exist:
        raise UserError(f"path {p}: needs a {dev_type} device, which this machine does not "
                        "have", arg="path")
    if dev_type == "cpu":
        from .targets import cpu_threads
        cpu_threads(threads)
    try:
        lib = tvm.runtime.load_module(str(p))
    except Exception as e:  # noqa: BLE001 - TVM raises plain errors; make them one line
        raise UserError(f"path {p}: cannot load: {one_line(str(e).splitlines()[-1], 200)}",
                        arg="path") from None
    return Runner(lib, dev, meta)
