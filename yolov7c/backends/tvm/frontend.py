"""PyTorch model → Relax IRModule.

Default path: ``torch.export`` → ``relax.frontend.torch.from_exported_program``. Why not
the ONNX file: it goes straight from the module we verify against (no second exporter and
its deprecated TorchScript tracer in between), needs no temp file, and on this TVM both paths
give the same ops and the same numerics (measured in the probe notes). The ONNX path is
kept (``frontend="onnx"``) for users who only have an ``.onnx`` file.
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import torch
from torch import nn

from ..onnx import INPUT_NAME, Outputs, example_input, prepare


def from_torch(model: nn.Module, img: int | Sequence[int], *, raw: bool = False,
               batch: int = 1):
    """Relax IRModule of ``model`` at a static (batch, 3, H, W); weights become constants.

    ``main`` returns a tuple: ``decoded`` then, with ``raw``, the per-level raw heads.
    """
    from tvm.relax.frontend.torch import from_exported_program

    model = prepare(model)
    x = example_input(model, img, batch=batch)
    with torch.no_grad():
        ep = torch.export.export(Outputs(model, raw=raw).eval(), (x,))
    return from_exported_program(ep, keep_params_as_input=False)


def from_onnx_file(path: str | os.PathLike, shape: Sequence[int]):
    """Relax IRModule of an ONNX file at a static input shape."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    proto = onnx.load(str(path))
    name = proto.graph.input[0].name
    return from_onnx(proto, shape_dict={name: list(shape)}, keep_params_in_input=False)


def to_relax(model: nn.Module, img: int | Sequence[int], *, raw: bool = False,
             frontend: str = "torch"):
    """Relax IRModule via ``frontend`` ('torch' = torch.export, 'onnx' = via an ONNX file)."""
    if frontend == "torch":
        return from_torch(model, img, raw=raw)
    if frontend == "onnx":
        from ..onnx import export_onnx
        x = example_input(model, img)
        with tempfile.TemporaryDirectory() as d:
            p = export_onnx(model, img, os.path.join(d, "m.onnx"), raw_outputs=raw)
            return from_onnx_file(p, tuple(x.shape))
    from ...errors import UserError
    raise UserError(f"--frontend {frontend}: unknown; use torch or onnx")


__all__ = ["INPUT_NAME", "from_onnx_file", "from_torch", "to_relax"]
