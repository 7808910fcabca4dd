"""Load a compiled library and run it (locally, or on a board through an RPC tracker)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError


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
            raise UserError(f"input shape {tuple(arr.shape)}: this library was compiled for "
                            f"{self.input_shape}; resize the image or recompile with --img")
        out = self._main(tvm.runtime.tensor(arr, self.dev))
        if hasattr(out, "numpy"):
            return [out.numpy()]
        return [o.numpy() for o in out]


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    side = Path(str(path) + ".json")
    return json.loads(side.read_text()) if side.exists() else {}


def load(path: str | os.PathLike, device: str | None = None) -> Runner:
    """Load ``path`` (from :func:`compile_model`) on this machine's ``device`` (default: the
    one the library was built for). Libraries for other CPUs/GPUs give a one-line error."""
    import tvm

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such library; build one with `yolov7c compile`")
    meta = read_meta(p)
    dev_type = device or {"cuda": "cuda", "mali": "opencl", "opencl": "opencl",
                          "vulkan": "vulkan"}.get(meta.get("target", "llvm"), "cpu")
    if meta.get("target") in ("aarch64", "mali", "opencl", "vulkan"):
        raise UserError(f"{p}: built for {meta['target']} (aarch64 host); copy it to the board "
                        "and load it there (or use `yolov7c tune --rpc`)")
    dev = tvm.device(dev_type, 0)
    if not dev.exist:
        raise UserError(f"{p}: needs a {dev_type} device, which this machine does not have")
    try:
        lib = tvm.runtime.load_module(str(p))
    except Exception as e:  # noqa: BLE001 - TVM raises plain errors; make them one line
        raise UserError(f"{p}: cannot load: {str(e).splitlines()[-1][:200]}") from e
    return Runner(lib, dev, meta)
