"""Hostile command lines and destinations (issue 20, sections 1 and 2): ``--out`` never
replaces anything but a regular file, never creates folders far from the current one, never
overwrites its own input; the log file is not opened through a link; every numeric flag is
bounded at the parser; a model too large for the memory cap is refused before it is built.
Each case exits 2 with one line and no traceback."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from yolov7c.cli import build_parser, main
from yolov7c.cli.bounds import bound_of
from yolov7c.errors import UserError
from yolov7c.io_util import (atomic_path, check_replaceable, make_parents, open_regular,
                             private_dir, write_text_atomic)


def cli(args: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process: (exit code, stderr)."""
    try:
        rc = main(args)
    except SystemExit as e:
        rc = int(e.code or 0)
    return rc, capsys.readouterr().err


def one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


# --------------------------------------------------------------- section 1: writes

def test_fifo_and_device_destinations_are_refused(tmp_path, capsys):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    link = tmp_path / "null-link"
    link.symlink_to("/dev/null")
    for dest, kind in ((fifo, "a FIFO"), (Path("/dev/null"), "/dev"), (link, "/dev"),
                       (Path("/dev/stdout"), "/dev")):
        one_line_error(*cli(["convert-yaml", "yolov7-tiny", "--out", str(dest)], capsys), kind)
        with pytest.raises(UserError, match=kind):
            write_text_atomic(dest, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.path.islink(link)
    assert os.path.islink("/dev/stdout") and stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_device_node_is_not_replaced(tmp_path, capsys):
    node = tmp_path / "n"
    os.mknod(node, 0o644 | stat.S_IFCHR, os.makedev(1, 7))
    one_line_error(*cli(["report", "yolov7-tiny", "--out", str(node)], capsys),
                   "a character device")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_symlink_destination_keeps_the_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real.name)
    write_text_atomic(link, "new")
    assert os.path.islink(link) and real.read_text() == "new"


def test_missing_parent_is_refused_outside_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    far = tmp_path.parent / f"{tmp_path.name}-far" / "dir" / "x.yaml"
    one_line_error(*cli(["convert-yaml", "yolov7-tiny", "--out", str(far)], capsys),
                   "does not exist; create it first")
    assert not far.parent.parent.exists()
    # under the current folder, missing folders are created (documented)
    assert cli(["convert-yaml", "yolov7-tiny", "--out", "sub/dir/x.yaml"], capsys)[0] == 0
    assert (tmp_path / "sub" / "dir" / "x.yaml").is_file()


def test_no_folder_is_created_in_the_root():
    top = Path("/yolov7c-never-created-by-a-test")
    with pytest.raises(UserError, match="never created in the file system root"):
        make_parents(top / "d" / "x.ckpt")
    with pytest.raises(UserError):
        with atomic_path(top / "x.ckpt"):
            pass
    assert not top.exists()


def test_import_official_refuses_its_own_input_as_output(tmp_path, capsys):
    src = tmp_path / "f.pt"
    src.write_bytes(b"not read at all")
    link = tmp_path / "g.pt"
    link.symlink_to(src.name)
    for out in (src, link):
        one_line_error(*cli(["import-official", str(src), "--out", str(out)], capsys),
                       "is the input")
    assert src.read_bytes() == b"not read at all"


def test_log_file_is_not_opened_through_a_link(tmp_path):
    """A prepared ``$TMPDIR/yolov7c-<uid>`` (world-readable folder, or ours with a symlinked
    log) never empties the link's target: the log goes to the user's cache folder."""
    tmp = tmp_path / "T"
    folder = tmp / f"yolov7c-{os.getuid()}"
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (folder / "list.log").symlink_to(victim)
    env = dict(os.environ, TMPDIR=str(tmp), HOME=str(tmp_path / "home"))
    env.pop("YOLOV7C_LOG", None)
    env.pop("XDG_CACHE_HOME", None)
    for mode in (0o755, 0o700):
        folder.chmod(mode)
        r = subprocess.run([sys.executable, "-m", "yolov7c", "list", "--json"], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert victim.read_text() == "precious"
    log = tmp_path / "home" / ".cache" / "yolov7c" / "list.log"
    assert log.is_file() and stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_open_regular_and_private_dir(tmp_path):
    target = tmp_path / "t"
    target.write_text("keep")
    (tmp_path / "l").symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        open_regular(tmp_path / "l")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="FIFO"):
        open_regular(tmp_path / "fifo")
    with pytest.raises(UserError, match="folder"):
        open_regular(tmp_path, os.O_RDONLY)
    assert target.read_text() == "keep"
    os.close(open_regular(target))
    assert target.read_text() == ""          # a regular file is truncated as asked
    d = private_dir(tmp_path / "p")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    d.chmod(0o755)
    with pytest.raises(UserError, match="lets others in"):
        private_dir(d)
    (tmp_path / "pl").symlink_to(d)
    with pytest.raises(UserError, match="symbolic link"):
        private_dir(tmp_path / "pl")
    assert check_replaceable(tmp_path / "new") == tmp_path / "new"


# --------------------------------------------------------------- section 2: bounds

@pytest.mark.parametrize("args, needle", [
    (["passes", "yolov7-tiny", "--img", "100000", "--verify"], "--img 100000: expected an integer in 1..8192"),
    (["export", "yolov7-tiny", "--img", "100000", "--out", "x.onnx"], "--img 100000"),
    (["bench", "yolov7-tiny", "--threads", "100000"], "--threads 100000"),
    (["passes", "yolov7-tiny", "--seed", "99999999999999999999"], "--seed 99999999999999999999"),
    (["scale", "yolov7", "--width", "1e9"], "--width 1e9"),
    (["scale", "yolov7", "--depth", "nan"], "--depth nan"),
    (["export", "yolov7-tiny", "--iou", "5", "--out", "x.onnx"], "--iou 5: expected a number in 0..1"),
    (["convert-yaml", "yolov7", "--img", "0"], "--img 0"),
    (["val", "yolov7-tiny", "--data", "d.yaml", "--batch-size", "0"], "--batch-size 0"),
    (["detect", "yolov7-tiny", "--source", "x", "--max-det", "-1"], "--max-det -1"),
    (["train", "yolov7-tiny", "--epochs", "1e9"], "--epochs: '1e9' is not an integer"),
    (["report", "yolov7", "--imgg", "640"], "did you mean --img?"),
])
def test_numeric_flags_are_bounded_at_the_parser(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(*cli(args, capsys), needle)
    assert list(tmp_path.iterdir()) == []


def test_every_numeric_flag_has_a_stated_range():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [f"{verb} {a.option_strings or a.dest}" for verb, p in sub.choices.items()
               for a in p._actions
               if getattr(a.type, "__name__", None) in ("int", "float")
               and bound_of(verb, a.dest) is None]
    assert not missing, f"add these to yolov7c/cli/bounds.py: {missing}"


WIDE = """nc: 1
anchors: [[10,13, 16,30, 33,23]]
backbone: [[-1, 1, Conv, [16384, 3, 2]], [-1, 1, Conv, [16384, 3, 2]]]
head: [[[1], 1, Detect, [nc, anchors]]]
"""

_RSS = """
import sys
from yolov7c.cli import main
from yolov7c.limits import peak_rss_mb
rc = main(sys.argv[1:])
print("rc", rc, "rss_mb", int(peak_rss_mb()))
"""


@pytest.mark.parametrize("extra, needle", [
    ([], "GiB of weights"),
    (["--img", "4096"], "GiB of activations"),
])
def test_model_memory_is_estimated_before_building(tmp_path, extra, needle):
    """A 150-byte cfg with 16384-wide convs (10 GiB of weights) and a plain model at a huge
    size are refused from the IR in < 1 GB; ``--max-memory`` names the way to raise it."""
    cfg = tmp_path / "wide.yaml"
    cfg.write_text(WIDE)
    src = [str(cfg)] if not extra else ["yolov7"]
    r = subprocess.run([sys.executable, "-c", _RSS, "passes", *src, *extra, "--verify"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "rc 2 " in r.stdout, r.stdout + r.stderr[-2000:]
    assert int(r.stdout.split("rss_mb")[-1]) < 1024
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "--max-memory <GiB>" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.yaml"]


def test_max_memory_raises_the_cap():
    from yolov7c import zoo
    from yolov7c.api.args import check_memory
    from yolov7c.limits import memory_limit
    g = zoo.get("yolov7-tiny")
    with pytest.raises(UserError, match="activations"):
        check_memory(g, 4096)
    with memory_limit(64):
        check_memory(g, 4096)
    check_memory(zoo.get("yolov7-e6e"), 1280)   # the largest zoo model at its size fits


def test_the_library_refuses_the_same_values(tmp_path):
    """The API (no parser in front of it) refuses the probe's values in one line too."""
    import yolov7c
    with pytest.raises(UserError, match="seed 99999999999999999999"):
        yolov7c.resolve("yolov7-tiny", seed=99999999999999999999)
    with pytest.raises(UserError, match="img 100000: .* activations"):
        yolov7c.export("yolov7-tiny", tmp_path / "x.onnx", img=100000)
    with pytest.raises(UserError, match="nc 1000000: more than 10,000 classes"):
        yolov7c.resolve("yolov7-tiny", nc=1_000_000)
    assert list(tmp_path.iterdir()) == []
