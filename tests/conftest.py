"""Shared test helpers: the optional ../shared folder (reference material a user's clone
lacks; tests that need it skip cleanly)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is not there."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only beside the developers' checkout)")
    return p


@pytest.fixture
def shared():
    """``shared(*parts)`` → path under ../shared (skips when absent); ``.json(*parts)``."""
    class _Shared:
        __call__ = staticmethod(shared_path)

        @staticmethod
        def json(*parts: str):
            return json.loads(shared_path(*parts).read_text())
    return _Shared()
