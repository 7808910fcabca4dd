"""DDP is exact: two gloo processes on CPU (launched the way torchrun launches them) with
SyncBN take one optimizer step of the real trainer and end with the same weights as one
process with the same global batch; without SyncBN they do not (the test can fail)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolov7c.data.synth import make_synthetic

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _ddp_setup import BATCH, IMG, one_step  # noqa: E402

pytestmark = pytest.mark.one_thread




def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_err(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in b)


@pytest.mark.slow
def test_two_processes_with_syncbn_equal_one_process(tmp_path: Path) -> None:
    data = str(make_synthetic(tmp_path / "d", train=BATCH, val=1, img=IMG, nc=3, seed=0))
    out = tmp_path / "ddp" / "weights.pt"
    out.parent.mkdir()
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), PYTHONWARNINGS="ignore")
        procs.append(subprocess.Popen([sys.executable, str(HERE / "_ddp_worker.py"), data,
                                       str(out)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs[0][-2000:] + logs[1][-2000:]
    ddp = torch.load(out, weights_only=True)

    torch.manual_seed(0)
    from yolov7c import zoo
    from yolov7c.backends.torch.lower import lower
    before = lower(zoo.get("yolov7-tiny", nc=3)).double().state_dict()
    single = one_step(data, tmp_path / "single", sync_bn=True)

    moved = max(float((single[k] - before[k]).abs().max()) for k in single
                if single[k].is_floating_point())
    assert moved > 1e-3, "the step must change the weights for the comparison to mean much"
    err = _max_err(ddp["sync_bn=True"], single)
    print(f"DDP+SyncBN vs one process: max |Δw| = {err:.2e} (weights moved up to {moved:.3f})")
    assert err <= 1e-5
    err_plain = _max_err(ddp["sync_bn=False"], single)
    print(f"DDP without SyncBN: max |Δw| = {err_plain:.2e}")
    assert err_plain > 1e-3  # per-process batch statistics differ: SyncBN is what makes it exact
