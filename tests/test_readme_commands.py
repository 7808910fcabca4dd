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


def _cheaper(line: str, table: dict, name: str) -> str:
    """``line`` with the swaps of its prefix in ``table`` (each must still be in the line)."""
    for prefix, swaps in table.items():
        if line.startswith(prefix):
            for old, new in swaps:
                assert old in line, f"{name}[{prefix!r}]: {old!r} is no longer in the line"
                line = line.replace(old, new)
    return line


def _run_in(folder: Path, argv: list[str]) -> tuple[int, io.StringIO, io.StringIO]:
    """``yolov7c argv[1:]`` in-process in ``folder`` (a subprocess per line costs seconds of
    start-up each): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv[1:])
    finally:
        os.chdir(cwd)
    return rc, out, err


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
    line = _cheaper(line, CHEAPER, "CHEAPER")
    argv = shlex.split(line, comments=True)
    redirect = None
    if ">" in argv:  # `yolov7c ... > file`: the one shell feature the README uses
        i = argv.index(">")
        argv, redirect = argv[:i], argv[i + 1]
    assert argv[0] == "yolov7c"
    rc, out, err = _run_in(workdir, argv)
    assert rc == 0, f"{line}\n{err.getvalue()[-2000:]}"
    if redirect:
        (workdir / redirect).write_text(out.getvalue())
        assert (workdir / redirect).stat().st_size > 0
    if "--json" in argv and "--out" not in argv:
        json.loads(out.getvalue())  # one JSON object on stdout


# ---------------------------------------------------------------- docs/*.md (issue 23 §4)
#
# Every ``yolov7c ...`` line of a bash block in docs/*.md must at least parse with the CLI
# as written (schematic parts normalised: ``[--flag X]`` → ``--flag X``, ``a|b`` → ``a``,
# ``…`` → a name), so a renamed verb or flag fails here; and each is either run below, in
# its doc's order in one scratch folder per doc (with the smaller values declared in
# DOC_CHEAPER), or listed in DOC_SKIP with the reason.

DOCS = sorted((REPO / "docs").glob("*.md"))

DOC_SKIP = {
    "yolov7c compile ": "TVM compile: minutes on 2 cores, or a cross toolchain / GPU target "
                        "(covered by tests/backends/test_tvm_compile.py)",
    "yolov7c tune ": "tuning: minutes to hours, or an RPC board",
    "yolov7c bench ": "runs every backend, TVM included: minutes",
    "yolov7c detect tiny_x86.so": "reads the library of the compile line",
    "yolov7c detect tiny.onnx": "schematic sources (dir/, more/*.png)",
    "yolov7c val tiny.onnx": "schematic data.yaml (tests/eval/test_backend_parity.py runs "
                             "onnxruntime val)",
    "yolov7c val tiny_x86.so": "reads the library of the compile line",
    "yolov7c val yolov7-tiny.ckpt --data coco/": "needs the COCO download",
    "yolov7c val yolov7-tiny.ckpt --data data.yaml": "schematic data.yaml (the line above runs "
                                                     "val on the synthetic set)",
    "yolov7c passes yolov7-e6e": "builds and traces yolov7-e6e: about a minute on 2 cores",
    "yolov7c report --zoo --bench latency.json": "reads the result of a bench run",
    "yolov7c report yolov7-e6e --format html": "the README's e6e line runs it",
}
DOC_CHEAPER = {
    "yolov7c data synth": (("--train 400", "--train 8"), ("--val 100", "--val 4")),
    "yolov7c export yolov7-tiny --format onnx --img 416": (("--img 416", "--img 128"),),
    "yolov7c passes fig6-elan3-planned": (("--img 320", "--img 64"),),
}


def doc_lines() -> list[tuple[str, str]]:
    """(doc name, line) for every ``yolov7c`` line in a bash block of docs/*.md."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", doc.read_text(), re.S):
            out += [(doc.name, " ".join(ln.split())) for ln in block.splitlines()
                    if ln.strip().startswith("yolov7c ")]   # aligned columns: one space
    return out


DOC_LINES = doc_lines()


def normalised(line: str) -> list[str]:
    """The argv of a doc line with its schematic notation made concrete."""
    line = re.sub(r"\[(--[^\]]+)\]", r"\1", line).replace("…", "x")
    argv = shlex.split(line, comments=True)
    argv = [a.split("|")[0] if "|" in a and not a.startswith("'") else a for a in argv]
    return argv[: argv.index(">")] if ">" in argv else argv


@pytest.mark.parametrize("doc, line", DOC_LINES, ids=[f"{d}: {ln[:60]}" for d, ln in DOC_LINES])
def test_doc_line_parses(doc: str, line: str) -> None:
    from yolov7c.cli import build_parser
    argv = normalised(line)
    assert argv[0] == "yolov7c"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{doc}: `{line}` does not parse: {err.getvalue().strip()}")


def test_every_doc_line_is_classified() -> None:
    stale = [p for p in [*DOC_SKIP, *DOC_CHEAPER] if not any(ln.startswith(p)
                                                             for _, ln in DOC_LINES)]
    assert not stale, f"DOC_SKIP / DOC_CHEAPER entries that match no docs line: {stale}"
    assert len(DOC_LINES) >= 20


@pytest.fixture(scope="module")
def doc_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One scratch folder per doc (lines of a doc build on each other); a trained-weights
    stand-in ``yolov7-tiny.ckpt`` (3 classes) for the eval doc."""
    import yolov7c
    out = {}
    for doc in DOCS:
        d = tmp_path_factory.mktemp(doc.stem)
        if doc.stem == "eval":
            yolov7c.save(yolov7c.resolve("yolov7-tiny", nc=3), d / "yolov7-tiny.ckpt")
        out[doc.name] = d
    return out


@pytest.mark.slow
@pytest.mark.parametrize("doc, line", DOC_LINES, ids=[f"{d}: {ln[:60]}" for d, ln in DOC_LINES])
def test_doc_line_runs(doc_dirs: dict[str, Path], doc: str, line: str) -> None:
    why = next((w for p, w in DOC_SKIP.items() if line.startswith(p)), None)
    if why:
        pytest.skip(why)
    line = _cheaper(line, DOC_CHEAPER, "DOC_CHEAPER")
    argv = normalised(line)
    rc, out, err = _run_in(doc_dirs[doc], argv)
    assert rc == 0, f"{doc}: {line}\n{err.getvalue()[-2000:]}"
    if "--json" in argv and "--out" not in argv:
        json.loads(out.getvalue())
