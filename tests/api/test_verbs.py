"""The verbs as functions: one benchmark format from bench to report, checks at the boundary,
no broken artifact written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import yolov7c
from yolov7c.api.backends import bench, export
from yolov7c.api.reports import report
from yolov7c.api.transforms import passes
from yolov7c.backends.bench import FORMAT, latencies, read_json
from yolov7c.errors import UserError

SMALL = ("from yolov7c.ir.dsl import Builder\n"
         "b = Builder('small')\n"
         "x = b.conv(b.conv(b.input, 8, 3, 2), 16, 3, 2)\n"
         "b.detect([b.conv(x, 16, 3, 2)], nc=2, anchors=[[10, 13, 16, 30]])\n"
         "graph = b.build()\n")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    f = tmp_path / "small.py"
    f.write_text(SMALL)
    return f


def test_bench_writes_the_format_report_reads(small: Path, tmp_path: Path) -> None:
    """`bench --out F` then `report --zoo --bench F` (they used to disagree); a second
    model merges into the same file."""
    out = tmp_path / "bench.json"
    res = bench(small, img=64, backends=["torch-train", "torch-deploy"], repeat=2, warmup=0,
                threads=1, out=out)
    data = read_json(out)
    assert data["format"] == FORMAT and res["out"] == str(out)
    rows = {r["backend"]: r for r in data["results"]}
    assert set(rows) == {"torch-train", "torch-deploy"}
    assert all(r["model"] == "small.py" and r["img"] == 64 and r["n"] == 2 for r in rows.values())
    assert rows["torch-deploy"]["max_rel_err"] <= 1e-4
    # a zoo model's row, as a bench run of it writes it, merged into the same file
    zoo_row = dict(rows["torch-deploy"], model="yolov7-tiny", median_ms=12.5)
    from yolov7c.backends.bench import write_json
    write_json(dict(data, results=[zoo_row]), out)
    merged = read_json(out)
    assert len(merged["results"]) == 3
    assert latencies(merged)["yolov7-tiny"] == 12.5
    zoo = json.loads(report(zoo=True, bench=out, fmt="json"))
    assert zoo["latency_ms"]["yolov7-tiny"] == 12.5


def test_bench_refuses_a_foreign_result_file_before_running(tmp_path: Path) -> None:
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(UserError, match="not a yolov7c.bench/1 benchmark result"):
        bench("yolov7-tiny", out=bad)
    with pytest.raises(UserError, match="not a yolov7c.bench/1"):
        report(zoo=True, bench=bad)
    with pytest.raises(UserError, match="repeat 0") as e:
        bench("yolov7-tiny", repeat=0)
    assert e.value.arg == "repeat"


def test_export_through_the_api_any_source(small: Path, tmp_path: Path) -> None:
    res = export(small, tmp_path / "s.onnx", img=64)
    assert res["img"] == 64 and Path(res["out"]).stat().st_size == res["bytes"]
    with pytest.raises(UserError, match="opset 99") as e:
        export(small, tmp_path / "x.onnx", opset=99)
    assert e.value.arg == "opset" and not (tmp_path / "x.onnx").exists()


def test_passes_refuses_to_write_non_finite_weights(small: Path, tmp_path: Path) -> None:
    """A checkpoint with NaN weights is refused on load and by `passes --out` (it used to
    write NaN weights with exit 0)."""
    model = yolov7c.resolve(small)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() == 4).fill_(float("nan"))
    with pytest.raises(UserError, match="non-finite|NaN"):
        passes(model, "deploy", out=tmp_path / "d.ckpt")
    assert not (tmp_path / "d.ckpt").exists()
    res = passes(small, "deploy", verify=True, out=tmp_path / "ok.ckpt")
    assert res.max_rel_err <= 1e-4 and (tmp_path / "ok.ckpt").is_file()
    with pytest.raises(UserError, match="rtol -1"):
        passes(small, rtol=-1)


def test_root_exports_are_lazy_and_callable() -> None:
    import subprocess
    import sys
    code = ("import sys, yolov7c; assert 'torch' not in sys.modules; "
            "import yolov7c.report.grouping, yolov7c.train; "
            "assert callable(yolov7c.report) and callable(yolov7c.train); "
            "assert yolov7c.report.grouping.__name__ == 'yolov7c.report.grouping'; "
            "import yolov7c.train.loss; assert callable(yolov7c.train); "
            "assert yolov7c.train.loss.__name__ == 'yolov7c.train.loss'; "
            "print(yolov7c.resolve.__module__, yolov7c.load.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["yolov7c.api.models", "load_checkpoint"]


@pytest.mark.slow
def test_compile_takes_an_onnx_file(small: Path, tmp_path: Path) -> None:
    """`compile model.onnx` (docs promised the ONNX route for users with only the file; the
    verb refused .onnx): the library computes what onnxruntime computes."""
    pytest.importorskip("tvm")
    import numpy as np

    from yolov7c.api.backends import compile as compile_
    from yolov7c.backends.onnx import run_onnx
    from yolov7c.backends.tvm import load
    onnx_file = Path(export(small, tmp_path / "s.onnx", img=64)["out"])
    res = compile_(onnx_file, tmp_path / "s.so", target="llvm")
    assert res["model"] == "s.onnx" and res["input_shape"] == [1, 3, 64, 64]
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    ref, got = run_onnx(onnx_file, x)[0], load(tmp_path / "s.so")(x)[0]
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    print(f"tvm (from .onnx) vs onnxruntime: max rel err {err:.2e}")
    assert err <= 1e-4
