"""The README's command lines run as written (a new user copies them).

Every ``yolov7c ...`` line of the README's bash blocks is either run here, in README order,
in one scratch folder (later lines use what earlier ones wrote), or listed in ``SKIP`` with
the reason: lines that need an external service or a download, or take minutes on a CPU.
A new README line must be classified, so this test also fails on a line in neither set.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from yolov7c.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# line prefix → why it is not run here
SKIP = {
    "yolov7c passes yolov7-e6e": "builds and traces yolov7-e6e: about a minute on 2 cores",
    "yolov7c compile yolov7-tiny --target llvm": "TVM compile: minutes on 2 cores (covered by "
                                                "tests/backends/test_tvm_compile.py)",
    "yolov7c compile tiny.onnx": "TVM compile: minutes on 2 cores",
    "yolov7c compile yolov7 --target cuda": "CUDA build of yolov7: minutes",
    "yolov7c compile yolov7-tiny --target mali": "needs the aarch64 cross compiler",
    "yolov7c tune yolov7-tiny --target llvm": "2000 tuning trials: hours",
    "yolov7c tune yolov7-tiny --target mali": "needs an RPC tracker with a Mali board",
    "yolov7c bench yolov7-tiny": "needs the tuning database of the tune line; untuned TVM "
                                 "alone takes minutes",
    "yolov7c report --zoo --bench bench.json": "reads the result of the bench line",
    "yolov7c compile shapes.onnx": "TVM compile: minutes on 2 cores (the TVM path of val is "
                                   "covered by tests/eval/test_backend_parity.py)",
    "yolov7c val shapes_x86.so": "reads the library of the compile line",
    "yolov7c train --resume": "needs an interrupted run (tests/train/test_trainer_runs.py "
                              "interrupts and resumes one)",
    "yolov7c train yolov7-tiny.pt": "needs the official yolov7-tiny.pt download",
    "yolov7c train yolov7-w6": "yolov7-w6 training at 640: hours on a CPU",
}
# line prefix → (README value, value run here): the same command on a smaller set / fewer
# epochs, so the dependent lines below it run as written in seconds
CHEAPER = {
    "yolov7c data synth": (("--train 400", "--train 8"), ("--val 100", "--val 4")),
    "yolov7c train yolov7-tiny --data": (("--epochs 30", "--epochs 1"), ("--batch 16", "--batch 4")),
}
# lines that need a file we cannot make (the official checkpoint): run with the test
# fixture in its place when ../shared is there
NEEDS_OFFICIAL = ("yolov7c import-official yolov7_training.pt", "yolov7c passes yolov7.ckpt",
                  "yolov7c report yolov7.ckpt")


def readme_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index("## Using it")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text[start:], re.S):
        lines += [ln.strip() for ln in block.splitlines() if ln.strip().startswith("yolov7c ")]
    return lines


LINES = readme_lines()


def _skip_reason(line: str) -> str | None:
    return next((why for prefix, why in SKIP.items() if line.startswith(prefix)), None)


def test_every_readme_line_is_classified() -> None:
    stale = [p for p in SKIP if not any(ln.startswith(p) for ln in LINES)]
    assert not stale, f"SKIP entries that match no README line (remove them): {stale}"
    assert len(LINES) >= 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    official = SHARED / "fixtures" / "yolov7-tiny-official.pt"
    if official.exists():  # stands in for the user's download
        shutil.copy(official, d / "yolov7_training.pt")
    return d


@pytest.mark.slow
@pytest.mark.parametrize("line", LINES)
def test_readme_line_runs_as_written(workdir: Path, line: str) -> None:
    why = _skip_reason(line)
    if why:
        pytest.skip(why)
    if line.startswith(NEEDS_OFFICIAL) and not (workdir / "yolov7_training.pt").exists():
        pytest.skip("needs the official checkpoint (../shared/fixtures stands in for it)")
    if line.startswith(NEEDS_OFFICIAL[1:]) and not (workdir / "yolov7.ckpt").exists():
        pytest.skip("needs yolov7.ckpt from the import-official line")
    for prefix, swaps in CHEAPER.items():
        if line.startswith(prefix):
            for old, new in swaps:
                assert old in line, f"CHEAPER[{prefix!r}]: {old!r} is no longer in the README line"
                line = line.replace(old, new)
    argv = shlex.split(line, comments=True)
    redirect = None
    if ">" in argv:  # `yolov7c ... > file`: the one shell feature the README uses
        i = argv.index(">")
        argv, redirect = argv[:i], argv[i + 1]
    assert argv[0] == "yolov7c"
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(workdir)  # in-process (a subprocess per line costs seconds of start-up each)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv[1:])
    finally:
        os.chdir(cwd)
    assert rc == 0, f"{line}\n{err.getvalue()[-2000:]}"
    if redirect:
        (workdir / redirect).write_text(out.getvalue())
        assert (workdir / redirect).stat().st_size > 0
    if "--json" in argv and "--out" not in argv:
        json.loads(out.getvalue())  # one JSON object on stdout
