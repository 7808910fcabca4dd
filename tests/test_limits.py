"""limits.peak_rss_mb: the bounded-memory checks measure the child's own pages."""
from __future__ import annotations

import subprocess
import sys

from yolov7c.limits import peak_rss_mb


def test_a_child_reports_its_own_peak_not_its_parents():
    held = bytearray(400 << 20)          # the parent's pages: 400 MiB touched
    held[:: 4096] = b"\1" * len(held[:: 4096])
    assert peak_rss_mb() > 400
    r = subprocess.run([sys.executable, "-c",
                        "from yolov7c.limits import peak_rss_mb; print(peak_rss_mb())"],
                       capture_output=True, text=True, check=True)
    child = float(r.stdout)
    print(f"parent {peak_rss_mb():.0f} MiB, child {child:.0f} MiB")
    assert 0 < child < 200
    del held


def test_number_problem_words_each_refusal_once() -> None:
    """The shared check of resumed settings and checkpoint records: bools are not numbers,
    non-finite floats are refused, an int too large for a float is out of range (no
    OverflowError), and the bounds print as the flags' ranges do."""
    from yolov7c.limits import number_problem
    assert number_problem(3, int, 1, 8) is None and number_problem(0.5, float, 0, 1) is None
    assert number_problem(True, int) == "is True, expected an integer"
    assert number_problem(2.0, int) == "is 2.0, expected an integer"
    assert number_problem(float("inf"), float) == "is inf, expected a number"
    assert number_problem("1", float) == "is '1', expected a number"
    assert number_problem(9, int, 1, 8) == "is 9, expected 1..8"
    assert number_problem(1.5, float, 0.0, 1.0) == "is 1.5, expected 0..1"
    big = number_problem(10**400, float, 0, 1)
    assert big is not None and big.endswith(", expected 0..1") and len(big) < 80
