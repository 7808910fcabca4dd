"""A one-line progress bar on stderr (no dependency), redrawn in place on a terminal and
printed every ~10 % otherwise (at most every ``MIN_INTERVAL`` seconds, and at least every
``MAX_SILENCE`` seconds of a slow step), so logs of long runs stay short but never go quiet.

Counts are in ``unit`` (images for training and validation), so the rate reads as images/s
and the ETA is the time left at the rate so far."""
from __future__ import annotations

import sys
import time
from typing import TextIO

MIN_INTERVAL = 5.0   # s between two non-terminal lines (except the last)
MAX_SILENCE = 30.0   # s after which a non-terminal line is printed whatever the decile


def hms(seconds: float) -> str:
    """A short duration: 42s, 3m07s, 2h05m."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rate_text(rate: float, unit: str) -> str:
    """``12.3 img/s``, or ``4.2 s/img`` below one per second (never ``0.0/s``)."""
    if rate >= 1 or rate <= 0:
        return f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit}"


class Progress:
    """``with Progress(total, "val", unit="img") as p: p.update(k)``; silent when ``enabled``
    is False. ``note`` (set by the caller) is appended to every line, e.g. the run's ETA."""

    def __init__(self, total: int, label: str, enabled: bool = True,
                 stream: TextIO | None = None, unit: str = "it") -> None:
        self.total, self.label, self.enabled, self.unit = max(total, 1), label, enabled, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.note = ""
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._last_draw = -MAX_SILENCE

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def rate(self) -> float:
        """Units per second so far (0 before the first update)."""
        el = self.elapsed
        return self.done / el if el > 0 and self.done else 0.0

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before the first update)."""
        r = self.rate()
        return (self.total - min(self.done, self.total)) / r if r > 0 else None

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        decile = int(10 * self.done / self.total)
        since = self.elapsed - self._last_draw
        if self.tty or self.done >= self.total or since >= MAX_SILENCE or (
                decile != self._last_decile and since >= MIN_INTERVAL):
            self._last_decile = decile
            self._last_draw = self.elapsed
            self._draw()

    def line(self) -> str:
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        eta = self.eta()
        left = f" ETA {hms(eta)}" if eta is not None and self.done < self.total else ""
        note = f"  {self.note}" if self.note else ""
        return (f"{self.label} [{bar}] {self.done}/{self.total} "
                f"{rate_text(self.rate(), self.unit)} {hms(self.elapsed)}{left}{note}")

    def _draw(self) -> None:
        line = self.line()
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
