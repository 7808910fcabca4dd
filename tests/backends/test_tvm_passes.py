"""The TVM backend's seams: the package's functions carry the real signatures without
importing TVM; a pipeline's rewrites are named module passes, run as one ``Sequential``
under a ``PassContext`` whose instruments see each of them, in order; ``compile.build``
returns what the database brought; ``runtime.load`` takes the device from the sidecar."""
from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolov7c.errors import UserError

IMG = 64
# the yolov7c passes of the default CPU pipeline, in the order they must run: SPP pools
# first (NCHW), then the NHWC conversion and its steps, then Winograd on the NHWC convs
WINOGRAD_PASSES = ["yolov7c.pipeline.nhwc-winograd", "yolov7c.ChainSamePools", "yolov7c.ToNHWC",
                   "yolov7c.PadConvChannels", "yolov7c.LeakyAsMax", "yolov7c.HeadFromNHWC",
                   "yolov7c.NearestAsBroadcast", "yolov7c.WinogradConv2D"]


def test_package_functions_have_the_real_signatures_and_import_no_tvm() -> None:
    code = ("import sys, yolov7c.backends.tvm as b; "
            "print(sorted(m for m in ('torch', 'tvm') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stdout
    import yolov7c.backends.tvm as btvm
    from yolov7c.backends.tvm import compile as C
    from yolov7c.backends.tvm import runtime, tuning
    for name, impl in (("compile_model", C.compile_model), ("compile_onnx", C.compile_onnx),
                       ("tune", tuning.tune), ("load", runtime.load)):
        assert inspect.signature(getattr(btvm, name)) == inspect.signature(impl), name
    assert {"trials", "db_dir", "pipeline", "max_seconds"} <= set(
        inspect.signature(btvm.tune).parameters)


class _Names:
    """A pass instrument's record: every pass name, as it runs."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def instrument(self):
        import tvm
        names = self.names

        @tvm.ir.instrument.pass_instrument
        class Record:
            def run_before_pass(self, mod, info):
                names.append(info.name)

        return Record()

    def ours(self) -> list[str]:
        return [n for n in self.names if n.startswith("yolov7c.")]


def test_instruments_see_each_pass_in_order_and_the_build_equals_torch(bk) -> None:
    tvm = pytest.importorskip("tvm")
    from tvm import relax

    from yolov7c.backends import common as bx
    from yolov7c.backends.tvm import compile as C
    from yolov7c.backends.tvm import pipeline as pl
    from yolov7c.backends.tvm import targets as T
    from yolov7c.backends.tvm.frontend import to_relax
    net = bk.make_tiny("p5")
    mod = to_relax(net, IMG)
    spec = T.resolve("llvm")
    tgt = spec.tvm_target()

    tuning = _Names()
    pl.tuning_module(mod, tgt, "nhwc-winograd", instruments=[tuning.instrument()])
    assert tuning.ours() == WINOGRAD_PASSES, tuning.ours()
    # TVM's own passes run in the same Sequential, between and after ours
    at = tuning.names.index
    assert at("yolov7c.LeakyAsMax") < at("ConvertLayout") < at("yolov7c.HeadFromNHWC")
    assert at("yolov7c.WinogradConv2D") < at("FuseOps") < at("FuseTIR")
    zero = _Names()
    pl.tuning_module(mod, tgt, "zero", instruments=[zero.instrument()])
    assert zero.ours() == ["yolov7c.pipeline.zero"] and "FuseOps" in zero.names

    building = _Names()
    ex, cov = C.build(mod, spec, instruments=[building.instrument()])
    assert building.ours() == WINOGRAD_PASSES, building.ours()   # what tuning saw, no more
    assert cov.pipeline == pl.CPU_DEFAULT == "nhwc-winograd" and cov.seeded > 0
    assert (cov.tasks, cov.tuned, cov.records, cov.cpu_note) == (0, 0, 0, None)  # no db
    with pytest.raises(dataclasses.FrozenInstanceError):
        cov.seeded = 0      # a return value, not an out-parameter
    x = bx.example_input(net, IMG, seed=6)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
    got = [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
    with torch.no_grad():
        ref = [t.numpy() for t in bx.Outputs(net)(x)]
    bk.assert_close(ref, got, "tvm-passes", rel=1e-5)


def test_target_specs_name_their_device() -> None:
    pytest.importorskip("tvm")
    from yolov7c.backends.tvm import targets as T
    assert {n: T.resolve(n).device for n in ("llvm", "aarch64", "cuda", "mali", "opencl",
                                             "vulkan")} == {
        "llvm": "cpu", "aarch64": "cpu", "cuda": "cuda", "mali": "opencl", "opencl": "opencl",
        "vulkan": "vulkan"}
    assert T.device_of('{"kind": "cuda", "arch": "sm_90"}') == "cuda"
    assert T.device_of("not json") == "cpu" and T.device_of({"kind": 3}) == "cpu"


def test_library_device_comes_from_the_sidecar() -> None:
    from yolov7c.backends.tvm.runtime import library_device
    assert library_device({"device": "cuda"}) == "cuda"
    # a sidecar written before compile recorded the device: its target's kind
    assert library_device({"target_json": json.dumps({"kind": "opencl"})}) == "opencl"
    assert library_device({"device": "bogus", "target_json": '{"kind": "vulkan"}'}) == "vulkan"
    assert library_device({"target": "llvm"}) == "cpu"


def _fake_library(tmp_path: Path, **meta) -> Path:
    lib = tmp_path / "m.so"
    lib.write_bytes(b"not a library")
    (tmp_path / "m.so.json").write_text(json.dumps({"input_shape": [1, 3, 64, 64],
                                                    "target": "llvm", **meta}))
    return lib


def test_an_explicit_device_of_another_type_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    from yolov7c.backends.tvm import load
    lib = _fake_library(tmp_path, device="cpu")
    for device, msg in (("cuda", r"device 'cuda': m\.so was built for cpu; leave device out"),
                        ("bogus", r"device 'bogus': not a TVM device")):
        with pytest.raises(UserError, match=msg) as e:
            load(lib, device=device)
        assert "\n" not in str(e.value)
    # the matching type is taken as given: the load goes on (to the file, not a library)
    with pytest.raises(UserError, match="cannot load"):
        load(lib, device="cpu")


def test_tensor_intrinsics_import_restores_inspect_and_answers_as_the_scan_does():
    """The fast path answers None for a ``<frozen ...>`` frame, as the full scan does, and
    inspect.getmodule is the original again afterwards (even when the import fails)."""
    import inspect
    import sys

    from yolov7c.backends.tvm import intrinsics
    original = inspect.getmodule
    frame = sys._getframe()
    with intrinsics._frozen_frames_skip_module_scan():
        assert inspect.getmodule is not original
        assert inspect.getmodule(frame, "<frozen importlib._bootstrap>") is None
        assert inspect.getmodule(frame) is original(frame)        # other files: unchanged
    assert original(frame, "<frozen importlib._bootstrap>") is None
    assert inspect.getmodule is original
    with pytest.raises(ZeroDivisionError), intrinsics._frozen_frames_skip_module_scan():
        1 / 0
    assert inspect.getmodule is original
    intrinsics.import_tensor_intrinsics()
    assert intrinsics.MODULE in sys.modules and inspect.getmodule is original
