"""A one-line progress bar on stderr (no dependency), redrawn in place on a terminal and
printed every ~10 % otherwise, so logs of long runs stay short."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "val") as p: p.update(k)``; silent when ``enabled`` is False."""

    def __init__(self, total: int, label: str, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        decile = int(10 * self.done / self.total)
        if self.tty or decile != self._last_decile or self.done >= self.total:
            self._last_decile = decile
            self._draw()

    def _draw(self) -> None:
        frac = min(self.done / self.total, 1.0)
        el = time.perf_counter() - self.t0
        rate = self.done / el if el > 0 else 0.0
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        line = (f"{self.label} [{bar}] {self.done}/{self.total} "
                f"{rate:.1f}/s {el:.0f}s")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
