"""The one exception type for user errors.

A ``UserError`` message is a single line that names the place (node, layer index, file and
row, argument) and the fix. The CLI prints it and exits 2 with no traceback; library callers
can catch it as a ``ValueError``. ``arg`` names the library argument at fault (``img``,
``iou`` ...) so the CLI can show its own flag for it; library text never names a CLI flag.
"""
from __future__ import annotations

import re
import reprlib

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def one_line(text: object, limit: int = 300) -> str:
    """``text`` as one printable line of at most ``limit`` characters: terminal escape codes
    and control characters removed, newlines joined, the rest cut with an ellipsis (so a
    hostile file cannot flood a terminal or a log through an error message)."""
    s = _ESCAPES.sub("", " ".join(str(text).split("\n")))
    return s if len(s) <= limit else s[: limit - 1] + "…"


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring, _SHOW.maxother = 3, 8, 6, 40, 40


def show(value: object, limit: int = 120) -> str:
    """A bounded one-line repr of a value read from a file: nested or aliased structures
    are cut at 3 levels and 8 items (never expanded whole, never recursing without bound)."""
    try:
        return one_line(_SHOW.repr(value), limit)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply>"


class UserError(ValueError):
    """Bad input from a user: one line, naming the culprit and the fix."""

    def __init__(self, message: str, *, arg: str | None = None) -> None:
        super().__init__(message)
        self.arg = arg
