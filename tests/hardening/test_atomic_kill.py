"""atomic_path under signals: SIGTERM removes the live temp file and the process still dies
of SIGTERM; SIGKILL cannot be caught, so the next write beside it sweeps the orphan (its
writer pid is dead); a live writer's temp file is never swept (issue 12, item 7: every
SIGKILL/SIGTERM left a hidden partial file, up to 14 MB)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolov7c.io_util import atomic_path, sweep_stale_temps, write_json_atomic, write_text_atomic

WRITER = r"""
import sys, time
from yolov7c.io_util import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"\0" * (8 << 20))
        f.flush()
        print(tmp, flush=True)
        time.sleep(60)
"""


def _start_writer(dest: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    line = proc.stdout.readline().strip()
    assert line, f"writer exited early with {proc.wait()}"
    tmp = Path(line)
    assert tmp.exists() and tmp.parent == dest.parent and tmp.name.startswith(f".{dest.name}.~")
    return proc, tmp


def _strays(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_sigterm_removes_the_temp_file_and_still_terminates(tmp_path):
    dest = tmp_path / "model.onnx"
    proc, tmp = _start_writer(dest)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM   # the default action, re-raised
    print(f"SIGTERM: strays {_strays(tmp_path)}")
    assert not tmp.exists() and _strays(tmp_path) == [] and not dest.exists()


def test_sigkill_orphan_is_swept_by_the_next_write(tmp_path):
    dest = tmp_path / "model.onnx"
    proc, tmp = _start_writer(dest)
    proc.kill()
    proc.wait(timeout=30)
    assert tmp.exists() and tmp.stat().st_size == 8 << 20   # nothing can catch SIGKILL
    write_text_atomic(tmp_path / "other.txt", "x")           # any write in the folder sweeps
    print(f"SIGKILL then one write: strays {_strays(tmp_path)}")
    assert _strays(tmp_path) == [] and not dest.exists()


def test_a_live_writers_temp_is_not_swept(tmp_path):
    dest = tmp_path / "model.onnx"
    proc, tmp = _start_writer(dest)
    try:
        write_json_atomic(tmp_path / "other.json", {"a": 1})
        assert tmp.exists()
        assert sweep_stale_temps(tmp_path) == []
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert sweep_stale_temps(tmp_path) == [tmp]


def test_legacy_temp_names_are_swept_when_old(tmp_path):
    old = tmp_path / ".model.onnx.ab12cd_9.onnx"        # mkstemp naming of earlier versions
    young = tmp_path / ".model.onnx.zz12cd_9.onnx"
    unrelated = tmp_path / ".model.onnx.keep"
    for p in (old, young, unrelated):
        p.write_text("partial")
    t = time.time() - 3600
    os.utime(old, (t, t))
    write_text_atomic(tmp_path / "model.onnx", "done")
    assert not old.exists() and young.exists() and unrelated.exists()


def test_exception_and_ctrl_c_leave_nothing(tmp_path):
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_path(tmp_path / "x.bin") as tmp:
                tmp.write_bytes(b"partial")
                raise exc
    assert list(tmp_path.iterdir()) == []


def test_bad_destinations_are_one_line_errors(tmp_path):
    from yolov7c.errors import UserError
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"file/out.json: cannot write there") as e:
        write_json_atomic(tmp_path / "file" / "out.json", {})
    assert e.value.arg == "path"
    with pytest.raises(UserError, match=r"is a folder; give a file name"):
        write_text_atomic(tmp_path, "x")


def test_writes_from_threads(tmp_path):
    """signal handlers can only be installed from the main thread: writers in other threads
    still work (their temp files are cleaned on exceptions and by the sweep)."""
    import threading
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                write_json_atomic(tmp_path / f"t{i}.json", {"i": i, "j": j})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(p.name for p in tmp_path.iterdir()) == \
        [f"t{i}.json" for i in range(4)]
