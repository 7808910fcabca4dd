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
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ...errors import UserError, one_line
from ..common import INPUT_NAME, Outputs, example_input, prepare


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


def _load_onnx(path: str | os.PathLike):
    import onnx
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {p}: no such ONNX file", arg="model")
    try:
        return onnx.load(str(p))
    except Exception as e:  # noqa: BLE001 - protobuf/onnx raise assorted types
        raise UserError(f"model {p}: not a readable ONNX file ({one_line(e, 120)})",
                        arg="model") from None


def onnx_input_shape(path: str | os.PathLike, img: int | Sequence[int] | None = None
                     ) -> tuple[tuple[int, int, int, int], list[str], bool]:
    """(static NCHW input shape, output names, had dynamic dims) of an ONNX file; ``img``
    fills dynamic H/W (batch 1 where dynamic) and must agree with static ones."""
    proto = _load_onnx(path)
    if len(proto.graph.input) != 1:
        raise UserError(f"model {path}: {len(proto.graph.input)} graph inputs; a YOLO model "
                        "has one image input", arg="model")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise UserError(f"model {path}: input has rank {len(dims)}; expected (B,3,H,W)",
                        arg="model")
    shape = [int(d.dim_value) if d.HasField("dim_value") else None for d in dims]
    dynamic = None in shape
    hw = None
    if img is not None:
        hw = (int(img), int(img)) if isinstance(img, (int, float)) else \
            (int(img[0]), int(img[-1]))
        if min(hw) <= 0:
            raise UserError(f"img {img}: must be positive", arg="img")
    for k in (2, 3):
        want = hw[k - 2] if hw else None
        if shape[k] is None:
            if want is None:
                raise UserError(f"model {path}: input height/width are dynamic; give img",
                                arg="img")
            shape[k] = want
        elif want is not None and want != shape[k]:
            raise UserError(f"img {img}: the ONNX file is fixed at {shape[2]}x{shape[3]}; "
                            "leave img out or re-export at that size", arg="img")
    shape[0] = shape[0] or 1
    if shape[1] != 3:
        raise UserError(f"model {path}: input has {shape[1]} channels; expected 3",
                        arg="model")
    return ((shape[0], shape[1], shape[2], shape[3]), [o.name for o in proto.graph.output],
            dynamic)


def from_onnx_file(path: str | os.PathLike, shape: Sequence[int]):
    """Relax IRModule of an ONNX file at a static input shape."""
    from tvm.relax.frontend.onnx import from_onnx

    proto = _load_onnx(path)
    name = proto.graph.input[0].name
    return from_onnx(proto, shape_dict={name: list(shape)}, keep_params_in_input=False)


def to_relax(model: nn.Module, img: int | Sequence[int], *, raw: bool = False,
             frontend: str = "torch"):
    """Relax IRModule via ``frontend`` ('torch' = torch.export, 'onnx' = via an ONNX file)."""
    if frontend == "torch":
        return from_torch(model, img, raw=raw)
    if frontend == "onnx":
        from ..onnx import export_onnx  # backends may use each other; onnx is the lower one
        x = example_input(model, img)
        with tempfile.TemporaryDirectory() as d:
            p = export_onnx(model, img, os.path.join(d, "m.onnx"), raw_outputs=raw)
            return from_onnx_file(p, tuple(x.shape))
    raise UserError(f"frontend {frontend!r}: unknown; use torch or onnx", arg="frontend")


__all__ = ["INPUT_NAME", "from_onnx_file", "from_torch", "to_relax"]
