"""The foundation verbs through the real entry point: JSON contract, exit codes, no
tracebacks for user errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import yolov7c
from yolov7c.ir.yaml_io import from_yaml

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-m", "yolov7c", *args], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=600, env=env)


def test_list_json_matches_the_zoo() -> None:
    r = cli("list", "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)   # one object, as for every verb (issue 23)
    rows = obj["models"]
    assert obj["gflops_convention"] == "official"
    assert [row["model"] for row in rows] == yolov7c.zoo.list()
    v7 = next(row for row in rows if row["model"] == "yolov7")
    assert v7 == {"model": "yolov7", "params": 37_622_682, "gflops": 106.4722, "img": 640}


def test_convert_yaml_zoo_to_cfg_and_back(tmp_path: Path) -> None:
    out = tmp_path / "e6e.yaml"
    r = cli("convert-yaml", "yolov7-e6e", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert from_yaml(out).nodes == yolov7c.graph("yolov7-e6e").nodes
    r = cli("convert-yaml", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["params"] == 166_408_884 and report["layers"] == 266


USER_ERRORS = [
    (["convert-yaml", "nope.yaml"], r"nope.yaml: cannot read cfg"),
    (["convert-yaml", "yolov9"], r"unknown model 'yolov9'"),
    (["convert-yaml", "yolov7", "--out", "/etc/passwd/x.yaml"], r"is a file, not a folder"),
    (["convert-yaml", "yolov7", "--out", "/proc/version/x.yaml"], r"is in /proc"),
    (["e2e", "yolov9"], r"unknown model 'yolov9'"),
]


@pytest.mark.parametrize("args,match", [USER_ERRORS[0], USER_ERRORS[-1]])
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], match: str) -> None:
    """A real process (exit status and stderr of ``python -m yolov7c``), for two verbs; every
    case in-process below (an interpreter start costs seconds on CI)."""
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(match, lines[0]), r.stderr


@pytest.mark.parametrize("args,match", USER_ERRORS)
def test_user_errors_exit_2_with_one_line_in_process(tmp_path: Path, monkeypatch, capsys,
                                                     args: list[str], match: str) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = _main(args, capsys)
    assert rc == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(match, lines[0]), err


def test_bad_yaml_row_is_a_one_line_cli_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nc: 1\nanchors: [[1,2]]\nbackbone: [[-1, 1, Conv, [8, 3, 2]], [-3, 1, Conv, [8]]]\n"
                   "head: [[[1], 1, Detect, [nc, anchors]]]\n")
    r = cli("convert-yaml", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.yaml: backbone row 1 (layer 1): 'from' -3 points to layer -2" in r.stderr


@pytest.mark.one_thread  # in-process torch: see tests/conftest.py
def test_readme_python_examples_run() -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


@pytest.mark.slow
def test_e2e_main_job(tmp_path: Path) -> None:
    """The main job on a zoo model (random weights, trained briefly from scratch), through
    the real entry point: the deploy parameter count, ONNX within its bound of PyTorch, the
    same mAP on every backend built, detect on every backend, no warning on stderr.

    Not repeated here: TVM (``--no-tvm``) — the default job (the shipped checkpoint,
    tests/api/test_e2e_stages.py) compiles and checks it, and tests/backends compile zoo
    yolov7-tiny; 64 px, the smallest size yolov7-tiny takes, since no mAP bound is checked."""
    pytest.importorskip("onnxruntime")
    # one torch thread, as tests/conftest.py's one_thread: small ops on the shared CI cores
    r = cli_env({"OMP_NUM_THREADS": "1"}, "e2e", "yolov7-tiny", "--img", "64", "--epochs", "1",
                "--train-images", "4", "--val-images", "4", "--no-tvm",
                "--out", str(tmp_path), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    steps = summary["steps"]
    assert summary["img"] == 64 and steps["tvm"] == {"skipped": True}
    assert Path(steps["train"]["best"]).is_file() and steps["train"]["epochs"] == 1
    # official fused deploy yolov7-tiny (nc 80) is 6,219,709; the synthetic set has 3 classes,
    # so each detect conv (inputs 128, 256, 512) has 3·8 outputs instead of 3·85:
    # 6,219,709 − (129 + 257 + 513)·(255 − 24) = 6,012,040
    assert steps["deploy"]["params"] == 6_012_040
    assert steps["onnx"]["max_rel_err"] <= 1e-4
    built = {"torch", "deploy", "onnxruntime"}
    assert set(steps["val"]["backends"]) == built and steps["val"]["map_spread"] <= 1e-3
    assert set(steps["detect"]["backends"]) == built
    for d in steps["detect"]["backends"].values():
        assert len(list(Path(d["out_dir"]).glob("*.png"))) == 4
    assert (tmp_path / "summary.json").exists() and (tmp_path / "yolov7-tiny.onnx").exists()
    assert "Fast mode segfaults" not in r.stderr and "Warning" not in r.stderr


# ---------------------------------------------------------------- issue 12: the CLI boundary

BAD_VALUES = [
    (["bench", "yolov7-tiny", "--repeat", "0"], r"--repeat 0: expected an integer in 1\.\.100000"),
    (["passes", "yolov7-tiny", "--img", "0"], r"--img 0: expected an integer in 1\.\.8192"),
    (["passes", "yolov7-tiny", "--img", "300"], r"--img 300: .* use 288 or 320"),
    (["passes", "yolov7-tiny", "--img", "-320"], r"--img -320: expected an integer in 1\.\.8192"),
    (["export", "yolov7-tiny", "--out", "m.onnx", "--img", "-5"], r"--img -5: expected an integer in 1\.\.8192"),
    (["export", "yolov7-tiny", "--out", "m.onnx", "--opset", "99"], r"--opset 99: expected an integer in 17\.\.30"),
    (["export", "yolov7-tiny", "--out", "m.onnx", "--nms", "--iou", "2"], r"--iou 2: expected a number in 0\.\.1"),
    (["export", "yolov7-tiny", "--out", "m.onnx", "--nms", "--score", "-1"], r"--score -1: expected a number in 0\.\.1"),
    (["export", "yolov7-tiny", "--out", "m.onnx", "--nms", "--max-det", "-1"], r"--max-det -1"),
    (["tune", "yolov7-tiny", "--db", "db", "--per-round", "0"], r"--per-round 0: "),
    (["tune", "yolov7-tiny", "--db", "db", "--pack", "db.zip"], r"--pack db.zip: name the "
     r"packed database \*\.tar\.gz"),
    (["passes", "yolov7-tiny", "--rtol", "-1", "--out", "d.ckpt"], r"--rtol -1: expected a number in 1e-12\.\.1"),
    (["e2e", "--out", "FILE"], r"--out FILE: is a file; give a folder"),
    (["report", "no-such.ckpt"], r"no-such.ckpt: no such file"),
    (["passes", "yolov7-tiny", "--out", "FILE/d.ckpt"], r"--out FILE/d.ckpt: FILE is a file"),
    (["bench", "yolov7-tiny", "--out", "FILE/b.json"], r"--out FILE/b.json: FILE is a file"),
    (["import-official", "x.pt", "--out", "FILE/x.ckpt"], r"--out FILE/x.ckpt: FILE is a "),
    (["tune", "yolov7-tiny", "--db", "FILE"], r"--db FILE: is a file; give a folder"),
    (["export", "yolov7-tiny", "--out", "."], r"--out \.: is a folder"),
]


@pytest.mark.parametrize("argv,match", BAD_VALUES, ids=[" ".join(a[:1] + a[2:]) for a, _ in
                                                       BAD_VALUES])
def test_bad_values_exit_2_one_line_no_artifact(tmp_path: Path, monkeypatch, capsys,
                                                argv: list[str], match: str) -> None:
    """Each value the issue found accepted (or crashing) is refused at the boundary: exit 2,
    one line naming the flag, no traceback, nothing left behind."""
    from yolov7c.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("x")
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(match, lines[0]), err
    assert "Traceback" not in err and "\x1b" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]


def test_report_takes_a_saved_checkpoint(tmp_path: Path, capsys) -> None:
    """`yolov7c report my.ckpt` for a file written by yolov7c.save (was "unknown model")."""
    from yolov7c.cli import main
    g = yolov7c.graph("yolov7-tiny", nc=3)
    yolov7c.save(yolov7c.build(g), tmp_path / "my.ckpt")
    assert main(["report", str(tmp_path / "my.ckpt"), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["model"] == "yolov7-tiny" and obj["nc"] == 3 and obj["form"] == "training"


def test_library_errors_name_arguments_the_cli_maps_flags() -> None:
    from yolov7c.cli import build_parser, flag_map, user_message
    from yolov7c.errors import UserError
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    flags = flag_map(sub.choices["export"])
    assert user_message(UserError("max_det -1: must be >= 1", arg="max_det"), flags) == \
        "--max-det -1: must be >= 1"
    assert user_message(UserError("iou_thr 2: bad", arg="iou_thr"), flags) == "--iou 2: bad"
    assert user_message(UserError("\x1b[31mred\x1b[0m\nline"), flags) == "red line"
    assert user_message(UserError("model 'x': unknown"), flags) == "model 'x': unknown"
    assert user_message(UserError("--out x: is a folder", arg="out"), flags) == \
        "--out x: is a folder"
    assert user_message(UserError("db_dir d: bad", arg="db_dir"),
                        flag_map(sub.choices["tune"])) == "--db d: bad"


def test_json_stdout_is_one_object_and_third_party_logs_stay_off(tmp_path: Path) -> None:
    """A real process: stdout holds the JSON alone; torch/onnx warnings and C-level prints go
    to the log file, not the terminal (route: YOLOV7C_LOG)."""
    log = tmp_path / "third-party.log"
    env_log = {"YOLOV7C_LOG": str(log)}
    dsl = tmp_path / "small.py"  # a small model from the DSL keeps the process short
    dsl.write_text("from yolov7c.ir.dsl import Builder\nb = Builder('small')\n"
                   "x = b.conv(b.conv(b.input, 8, 3, 2), 16, 3, 2)\n"
                   "b.detect([b.conv(x, 16, 3, 2)], nc=2, anchors=[[10, 13, 16, 30]])\n"
                   "graph = b.build()\n")
    r = cli_env(env_log, "export", str(dsl), "--img", "64", "--out",
                str(tmp_path / "t.onnx"), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    obj = json.loads(r.stdout)  # raises if anything else is on stdout
    assert obj["img"] == 64 and obj["opset"] == 17 and (tmp_path / "t.onnx").is_file()
    assert "Warning" not in r.stderr and "Traceback" not in r.stderr
    assert log.exists()


def cli_env(extra: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        **extra)
    return subprocess.run([sys.executable, "-m", "yolov7c", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600, env=env)


def test_routing_keeps_c_level_writes_off_stdout(tmp_path: Path) -> None:
    """What TVM does from C++ (writes to fd 1/2) and a third-party Python warning go to the
    log file; stdout carries the JSON alone, stderr our progress alone."""
    code = ("import logging, os, warnings\n"
            "from yolov7c.cli import emit_json, routed_output\n"
            "with routed_output('x', True, False):\n"
            "    os.write(1, b'C-level stdout noise\\n'); os.write(2, b'C-level stderr noise\\n')\n"
            "    print('a stray print'); warnings.warn('third-party FutureWarning')\n"
            "    logging.getLogger('tvm').warning('tvm says hi')\n"
            "    logging.getLogger('yolov7c.x').info('[1/1] our progress')\n"
            "    emit_json({'a': 1})\n")
    log = tmp_path / "x.log"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, YOLOV7C_LOG=str(log)))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"a": 1}
    assert r.stderr.splitlines() == ["a stray print", "[1/1] our progress"]
    text = log.read_text()
    for noise in ("C-level stdout noise", "C-level stderr noise", "FutureWarning", "tvm says"):
        assert noise in text


def test_verbose_shows_third_party_output_on_stderr_only(tmp_path: Path) -> None:
    code = ("import logging, os\n"
            "from yolov7c.cli import emit_json, routed_output\n"
            "with routed_output('x', True, True):\n"
            "    os.write(1, b'C-level stdout noise\\n')\n"
            "    logging.getLogger('tvm').warning('tvm says hi')\n"
            "    emit_json({'a': 1})\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, YOLOV7C_LOG=str(tmp_path / "x.log")))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"a": 1}
    assert "C-level stdout noise" in r.stderr and "tvm says hi" in r.stderr
    assert not (tmp_path / "x.log").exists()


# ---------------------------------------------------------------- issue 23 §4 / issue 20 §5

def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    from yolov7c.cli import main
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_2(rc: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], err


def _png(path: Path) -> Path:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (90, 120, 30)).save(path)
    return path


def test_detect_source_that_is_no_image_exits_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _one_line_2(*_main(["detect", "yolov7-tiny", "--source", str(REPO / "README.md"),
                        "--img", "64"], capsys)[::2], "--source", "not an image")
    (tmp_path / "fake.png").write_text("not a png")
    rc, _, err = _main(["detect", "yolov7-tiny", "--source", "fake.png", "--img", "64"], capsys)
    assert rc == 2 and "none of its 1 images could be read" in err.splitlines()[-1]
    assert not list((tmp_path / "runs" / "detect").iterdir())   # no empty run folder left


def test_image_as_model_and_folder_as_data_say_what_to_do(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    monkeypatch.chdir(tmp_path)
    png = _png(tmp_path / "cat.png")
    _one_line_2(*_main(["report", str(png)], capsys)[::2], "an image, not a model",
                f"detect yolov7-tiny --source {png}")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "data.yaml").write_text("val: .\nnames: [a]\n")
    _one_line_2(*_main(["val", "yolov7-tiny", "--data", "ds"], capsys)[::2],
                "--data ds: is a folder; give its data YAML, e.g. ds/data.yaml")


def test_flags_not_abbreviated_and_python_syntax_becomes_flags(capsys) -> None:
    from yolov7c.cli import build_parser, flag_map, user_message
    from yolov7c.errors import UserError
    _one_line_2(*_main(["report", "yolov7", "--im", "640"], capsys)[::2],
                "unrecognized arguments: --im 640; did you mean --img?")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    flags = {**flag_map(sub.choices["bench"]), "device": "--device"}
    assert user_message(UserError("use device='cpu' or raise max_memory=<GiB>; a=b"), flags) \
        == "use --device cpu or raise --max-memory <GiB>; a=b"


def test_version(capsys) -> None:
    rc, out, _ = _main(["--version"], capsys)
    assert rc == 0 and re.fullmatch(r"yolov7c \S+\n", out)


@pytest.mark.one_thread
def test_passes_verifies_by_default(capsys) -> None:
    rc, out, _ = _main(["passes", "yolov7-tiny", "--img", "64", "--json"], capsys)  # 2×2 at P5
    assert rc == 0 and all(p["max_rel_err"] is not None for p in json.loads(out)["passes"])
    rc, out, _ = _main(["passes", "yolov7-tiny", "--no-verify", "--json"], capsys)
    assert rc == 0 and all(p["max_rel_err"] is None for p in json.loads(out)["passes"])


def test_scale_symbolic_states_the_deepened_form(capsys) -> None:
    rc, out, _ = _main(["scale", "yolov7", "--symbolic"], capsys)
    assert rc == 0 and "47,073,178 params, the model itself 37,622,682" in out
    rc, out, _ = _main(["scale", "yolov7", "--symbolic", "--json"], capsys)
    assert "depth-scalable form" in json.loads(out)["caveat"]


def test_package_namespace_is_clean_and_signed() -> None:
    import inspect
    names = dir(yolov7c)
    assert len(names) == len(set(names)) and not {"sys", "Any", "importlib"} & set(names)
    assert {"train", "resolve", "val", "report"} <= set(names)
    assert "epochs" in inspect.signature(yolov7c.train).parameters
    assert "fmt" in inspect.signature(yolov7c.report).parameters


def test_zoo_name_wins_over_a_file_of_that_name(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolov7-tiny").write_text("not a model")
    rc, out, err = _main(["report", "yolov7-tiny", "--json"], capsys)
    assert rc == 0 and json.loads(out)["params"] == 6_228_762
    assert "write ./yolov7-tiny for the file" in err
    _one_line_2(*_main(["report", "./yolov7-tiny"], capsys)[::2], "yolov7-tiny")


def test_crafted_so_with_a_made_up_sidecar_is_one_line(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    """A real shared library that is no TVM library (libz), with a sidecar claiming it is."""
    pytest.importorskip("tvm")
    import ctypes.util
    name = ctypes.util.find_library("z")
    lib = next((Path(d) / name for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
                                         "/usr/lib", "/lib") if name and (Path(d) / name).is_file()),
               None)
    if lib is None:
        pytest.skip("no libz to stand in for a crafted library")
    monkeypatch.chdir(tmp_path)
    so = tmp_path / "x.so"
    so.write_bytes(lib.read_bytes())
    (tmp_path / "x.so.json").write_text(json.dumps({"input_shape": [1, 3, 64, 64],
                                                    "target": "llvm"}))
    _png(tmp_path / "a.png")
    _one_line_2(*_main(["detect", str(so), "--source", "a.png"], capsys)[::2],
                "not a library from `yolov7c compile`")


def test_building_the_parser_imports_no_torch():
    """Every verb's parser is built at start-up (even for --version): defaults it shows must
    come from light modules, not from packages that import torch (1.8 s on 2 cores)."""
    import subprocess
    import sys
    code = ("import sys, yolov7c.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'tvm', 'onnxruntime') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stdout
