"""The one exception type for user errors.

A ``UserError`` message is a single line that names the place (node, layer index, file and
row, option) and the fix. The CLI prints it and exits 2 with no traceback; library callers
can catch it as a ``ValueError``.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from a user: one line, naming the culprit and the fix."""
