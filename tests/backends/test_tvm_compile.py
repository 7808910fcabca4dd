"""TVM compile: llvm libraries run here and equal PyTorch; cross/CUDA libraries are produced;
bad input gives one-line errors and leaves no artifact."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

tvm = pytest.importorskip("tvm")

from yolov7c.backends import common as bx  # noqa: E402
from yolov7c.backends import tvm as btvm  # noqa: E402
from yolov7c.errors import UserError  # noqa: E402


def _ref(model, x, raw=True):
    with torch.no_grad():
        return [t.numpy() for t in bx.Outputs(model, raw=raw)(x)]


@pytest.mark.parametrize("kind", ["p5", "p6"])
def test_llvm_matches_torch(tmp_path, kind, bk):
    model = bk.make_tiny(kind)
    out = tmp_path / f"{kind}.so"
    meta = btvm.compile_model(model, "llvm", 128, out, raw=True, verbose=False)
    assert out.is_file() and meta.input_shape == [1, 3, 128, 128]
    assert sorted(os.listdir(tmp_path)) == sorted([out.name, out.name + ".json"])
    x = bx.example_input(model, 128, seed=4)
    bk.assert_close(_ref(model, x), btvm.load(out)(x), f"tvm-llvm-{kind}")


def test_onnx_file_compiles_and_matches_torch(tmp_path, tiny_p5, bk):
    """A user with only an .onnx file: compile_onnx reads its shape (img fills dynamic
    dims, must agree with static ones) and the library equals PyTorch."""
    from yolov7c.backends.onnx import export_onnx
    onnx_path = export_onnx(tiny_p5, 128, tmp_path / "m.onnx")
    with pytest.raises(UserError, match="fixed at 128x128; leave img out") as e:
        btvm.compile_onnx(onnx_path, "llvm", tmp_path / "x.so", img=160)
    assert e.value.arg == "img"
    with pytest.raises(UserError, match="not a readable ONNX file"):
        btvm.compile_onnx(tmp_path / "m.onnx.bad" if (tmp_path / "m.onnx.bad").write_bytes(
            b"junk") else None, "llvm", tmp_path / "x.so")
    dyn = export_onnx(tiny_p5, 128, tmp_path / "d.onnx", dynamic_batch=True)
    with pytest.raises(UserError, match="dynamic dimensions .*export it with a static batch"):
        btvm.compile_onnx(dyn, "llvm", tmp_path / "x.so")
    assert sorted(os.listdir(tmp_path)) == ["d.onnx", "m.onnx", "m.onnx.bad"]
    out = tmp_path / "o.so"
    meta = btvm.compile_onnx(onnx_path, "llvm", out, verbose=False)
    assert meta.input_shape == [1, 3, 128, 128] and meta.outputs == ["output"]
    x = bx.example_input(tiny_p5, 128, seed=5)
    bk.assert_close(_ref(tiny_p5, x, raw=False), btvm.load(out)(x), "tvm-onnx-file")


def _file_kind(path) -> str:
    return subprocess.run(["file", "-b", str(path)], capture_output=True, text=True).stdout


@pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-g++"), reason="no aarch64 cross g++")
@pytest.mark.parametrize("target", ["aarch64", "mali"])
def test_cross_compiled_library(tmp_path, tiny_p5, target):
    out = tmp_path / f"{target}.so"
    btvm.compile_model(tiny_p5, target, 128, out, verbose=False)
    if shutil.which("file"):
        assert "aarch64" in _file_kind(out)
    with open(out, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    if target == "mali":
        assert b"__kernel" in out.read_bytes()  # OpenCL C kernels embedded
    with pytest.raises(UserError, match="copy it to the board"):
        btvm.load(out)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("nvcc"), reason="no nvcc")
def test_cuda_library_builds_without_gpu(tmp_path, tiny_p5):
    out = tmp_path / "cuda.so"
    meta = btvm.compile_model(tiny_p5, "cuda", 128, out, arch="sm_90", verbose=False)
    assert out.is_file() and b"__global__" in out.read_bytes()
    assert any("nvcc compiled the kernels for sm_90" in n for n in meta.notes), meta.notes


def test_unknown_target(tmp_path, tiny_p5):
    with pytest.raises(UserError, match="unknown target; use one of llvm, aarch64"):
        btvm.compile_model(tiny_p5, "tpu", 128, tmp_path / "x.so")
    assert os.listdir(tmp_path) == []


def test_missing_cross_compiler(tmp_path, tiny_p5, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="cross compiler aarch64-linux-gnu-g\\+\\+ not found"):
        btvm.compile_model(tiny_p5, "aarch64", 128, tmp_path / "x.so")
    assert os.listdir(tmp_path) == []


def test_bad_size_and_vulkan(tmp_path, tiny_p6):
    with pytest.raises(UserError, match="max stride 64; use 128 or 192"):
        btvm.compile_model(tiny_p6, "llvm", 160, tmp_path / "x.so")
    if shutil.which("aarch64-linux-gnu-g++"):
        with pytest.raises(UserError, match="no Vulkan"):
            btvm.compile_model(tiny_p6, "vulkan", 128, tmp_path / "v.so")
    assert os.listdir(tmp_path) == []


def test_build_failure_leaves_nothing(tmp_path, tiny_p5, monkeypatch):
    from yolov7c.backends.tvm import compile as C

    def boom(*a, **k):
        raise RuntimeError("codegen crashed")
    monkeypatch.setattr(C, "build", boom)
    with pytest.raises(RuntimeError):
        C.compile_model(tiny_p5, "llvm", 128, tmp_path / "x.so", verbose=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_llvm_zoo(tmp_path, zoo_name, bk):
    model = bk.deploy_model(zoo_name)
    img = 128  # small: P5 levels 16x16..4x4, P6 levels 16x16..2x2
    out = tmp_path / "z.so"
    btvm.compile_model(model, "llvm", img, out, raw=True, verbose=False)
    x = bx.example_input(model, img, seed=6)
    bk.assert_close(_ref(model, x), btvm.load(out)(x), f"tvm-llvm-{zoo_name}")
