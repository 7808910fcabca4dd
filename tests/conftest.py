"""Shared test helpers: the optional ../shared folder (reference material a user's clone
lacks; tests that need it skip cleanly)."""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterator

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


@pytest.fixture(autouse=True)
def _one_torch_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Modules marked ``one_thread`` run torch on one thread: on the 2 shared cores of CI,
    two spinning OpenMP threads make small ops an order of magnitude slower."""
    if request.node.get_closest_marker("one_thread") is None:
        yield
        return
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 validation images of 128 px, 3 classes (shared, read-only for the tests)."""
    from yolov7c.data import make_synthetic
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds", train=0, val=8, img=128,
                          nc=3, seed=3)


@contextlib.contextmanager
def _captured_logs(name: str = "yolov7c") -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    h = logging.Handler()
    h.emit = records.append  # type: ignore[method-assign]
    lg = logging.getLogger(name)
    old = lg.level
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)


@pytest.fixture
def captured_logs() -> Callable[..., contextlib.AbstractContextManager]:
    """``with captured_logs() as records:`` the records reaching the ``yolov7c`` logger,
    independent of how other tests or the CLI configured propagation and handlers."""
    return _captured_logs
