"""Evaluation tests run torch single-threaded: the CI box has 2 shared cores, where torch's
intra-op threads contend and small ops get orders of magnitude slower."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """8 validation images of 128 px, 3 classes (shared, read-only for the tests)."""
    from yolov7c.data import make_synthetic
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds", train=0, val=8, img=128,
                          nc=3, seed=3)
