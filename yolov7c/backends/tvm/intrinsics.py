"""Import TVM's tensor intrinsics in seconds instead of minutes.

``TuneContext.__init__`` imports ``tvm.s_tir.tensor_intrin``: about 500 TVMScript
``@prim_func`` definitions, each of which calls ``inspect.stack()``. For every frame of
the import machinery (``<frozen importlib._bootstrap>``: the file does not exist)
``inspect.getmodule`` scans all of ``sys.modules`` before it returns None; with torch
loaded that is ~2,300 modules times ~50,000 frames. Measured on the 2-core Zen 3 machine:
37 s from a plain script, 85 s at a call depth of 60, 190 s under pytest (its deep stacks);
a tuning run pays it before its first round.

:func:`import_tensor_intrinsics` runs that import once with ``inspect.getmodule`` answering
None at once for ``<frozen ...>`` file names, which is the answer the scan reaches (frozen
modules are not found by file name): 6 s and 8.5 s for the first two cases. Nothing else
changes; the original function is restored when the import ends.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import threading
from typing import Any, Iterator

_LOCK = threading.Lock()
MODULE = "tvm.s_tir.tensor_intrin"


@contextlib.contextmanager
def _frozen_frames_skip_module_scan() -> Iterator[None]:
    original = inspect.getmodule

    def getmodule(obj: Any, _filename: str | None = None) -> Any:
        if _filename is not None and _filename.startswith("<frozen "):
            return None
        return original(obj, _filename)

    inspect.getmodule = getmodule
    try:
        yield
    finally:
        inspect.getmodule = original


def import_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (what a ``TuneContext`` needs) the fast way; a
    no-op once imported."""
    import sys
    if MODULE in sys.modules:
        return
    with _LOCK, _frozen_frames_skip_module_scan():
        importlib.import_module(MODULE)
