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
