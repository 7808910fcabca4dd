"""An imported official checkpoint through val and detect; the CLI verbs (`detect`, `val`,
`data synth`) with --json and their one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from yolov7c.cli import main

pytestmark = pytest.mark.one_thread





def _coco80_yaml(tmp_path: Path, synth: Path) -> Path:
    """The synthetic images/labels under an 80-class data YAML (labels 0..2 are valid)."""
    y = tmp_path / "coco80.yaml"
    y.write_text(f"path: {synth.parent}\nval: images/val\nnc: 80\n"
                 f"names: {[f'c{i}' for i in range(80)]}\n")
    return y


def test_official_checkpoint_val_and_detect(synth_small, tmp_path, shared):
    ckpt = shared("fixtures", "yolov7-tiny-official.pt")
    from yolov7c.api.evaluate import detect, val
    res = val(str(ckpt), _coco80_yaml(tmp_path, synth_small), img=128, out=None,
              progress=False)
    print({k: res[k] for k in ("map50", "map", "detections")})
    assert res["images"] == 8 and len(res["stats"]) == 12 and res["backend"] == "torch"
    d = detect(str(ckpt), str(synth_small.parent / "images" / "val" / "*.png"), img=128,
               conf=0.001, out=tmp_path / "det", progress=False)
    assert d["images"] == 8 and len(d["names"]) == 80
    assert len(list((tmp_path / "det" / "exp").glob("*.png"))) == 8


def _run(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_synth_val_detect_json(tmp_path, capsys):
    rc, out, err = _run(capsys, "data", "synth", "--out", str(tmp_path / "ds"), "--train", "1",
                        "--val", "3", "--img", "64", "--json")
    assert rc == 0, err
    info = json.loads(out)
    data = info["data"]
    rc, out, err = _run(capsys, "val", "yolov7-tiny", "--data", data, "--img", "50", "--json",
                        "--project", str(tmp_path / "runs"))
    assert rc == 0, err
    res = json.loads(out)          # stdout holds exactly one JSON object
    assert res["img"] == 64 and res["images"] == 3 and "records" not in res
    assert "img 50 is not a multiple" in err and "using 64" in err
    rc, out, err = _run(capsys, "detect", "yolov7-tiny", "--source",
                        str(tmp_path / "ds" / "images" / "val"), "--img", "64", "--conf",
                        "0.01", "--json", "--save-json", "--project", str(tmp_path / "det"))
    assert rc == 0, err
    det = json.loads(out)
    assert det["images"] == 3 and Path(det["predictions"]).is_file()


@pytest.mark.parametrize("argv,pattern", [
    (["val", "yolov7-tiny", "--data", "/nonexistent/data.yaml"], "--data /nonexistent"),
    (["val", "yolov7-tiny", "--data", "{ds}/data.yaml", "--conf", "2"], "--conf 2: expected a number in 0..1"),
    (["detect", "yolov7-tiny", "--source", "/nonexistent/dir"], "/nonexistent/dir: no such"),
    (["data", "synth", "--out", "{ds}", "--val", "1"], "--out .*not empty"),
])
def test_cli_errors_are_one_line(argv, pattern, synth_small, capsys):
    import re
    argv = [a.replace("{ds}", str(synth_small.parent)) for a in argv]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(pattern, lines[0]), err
    assert "Traceback" not in err


def test_tvm_library_for_another_size_is_letterboxed(tmp_path, captured_logs):
    """A fixed-shape backend (as a TVM library is) evaluates at its own size, with a note."""
    import torch

    from yolov7c.eval.evaluator import resolve_img

    class Fixed:
        name, fixed_shape, max_batch, stride = "tvm", (96, 96), 1, 32

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 1, 8)
    with captured_logs() as records:
        assert resolve_img(128, Fixed()) == 96
    assert any("built for 96x96 input" in r.getMessage() for r in records)


def test_onnx_file_val_and_nms_export_refused(synth_small, tmp_path, capsys):
    from yolov7c.api.models import resolve
    from yolov7c.backends.onnx import export_onnx
    model = resolve("yolov7-tiny", nc=3, seed=0)
    plain = export_onnx(model, 64, tmp_path / "m.onnx", dynamic_batch=True)
    rc, out, err = _run(capsys, "val", str(plain), "--data", str(synth_small), "--img", "128",
                        "--json", "--no-save")
    assert rc == 0, err
    res = json.loads(out)
    assert res["backend"] == "onnxruntime" and res["img"] == 64 and res["images"] == 8
    assert "built for 64x64 input" in err
    with_nms = export_onnx(model, 64, tmp_path / "n.onnx", nms=True)
    rc, out, err = _run(capsys, "val", str(with_nms), "--data", str(synth_small), "--no-save")
    assert rc == 2 and "exported with NMS inside" in err and len(err.strip().splitlines()) == 1
