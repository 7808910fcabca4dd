"""Trainer building blocks against values computed by hand: the schedule at chosen
iterations, the parameter groups, weight-decay scaling, the EMA formula, fine-tuning transfer."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from yolov7c import zoo
from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.lower import lower
from yolov7c.train.ema import ModelEMA, ema_decay
from yolov7c.train.optim import (Schedule, accumulate_steps, build_optimizer, one_cycle,
                                 param_groups, scaled_weight_decay)

pytestmark = pytest.mark.one_thread

HYP = {"lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005,
       "warmup_epochs": 3.0, "warmup_momentum": 0.8, "warmup_bias_lr": 0.1}


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return lower(zoo.get("yolov7-tiny", nc=3)).train()


def test_schedule_values_by_hand() -> None:
    # 10 epochs × 100 batches of 16: warmup = max(3 × 100, 1000) = 1000 batches,
    # nominal accumulation = round(64 / 16) = 4
    s = Schedule.from_hyp(HYP, epochs=10, batches_per_epoch=100, total_batch=16)
    assert s.warmup_iters == 1000
    lrs, mom, acc = s.at(0, 0)
    assert lrs == [0.0, 0.0, 0.1] and mom == pytest.approx(0.8) and acc == 1
    # ni 500 (half-way), epoch 5: cosine factor = (1 − cos(π/2))/2 · (0.01 − 1) + 1 = 0.505,
    # target lr = 0.00505; groups 0/1: 0.5 × 0.00505; bias: 0.1 + 0.5 × (0.00505 − 0.1);
    # momentum 0.8 + 0.5 × 0.137; accumulation round(1 + 0.5 × 3) = round(2.5) = 2 (half to even)
    lrs, mom, acc = s.at(500, 5)
    assert lrs == pytest.approx([0.002525, 0.002525, 0.052525], abs=1e-12)
    assert mom == pytest.approx(0.8685) and acc == 2
    # ni 250, epoch 2: factor = (1 − cos(0.2π))/2 · (−0.99) + 1 = 1 − 0.0954915 · 0.99
    f = 1 - 0.09549150281252627 * 0.99
    lrs, mom, acc = s.at(250, 2)
    assert lrs == pytest.approx([0.25 * 0.01 * f, 0.25 * 0.01 * f, 0.1 + 0.25 * (0.01 * f - 0.1)])
    assert mom == pytest.approx(0.8 + 0.25 * 0.137) and acc == 2  # round(1.75) = 2
    # after warmup, epoch 9: factor = (1 − cos(0.9π))/2 · (−0.99) + 1 = 0.0342268...
    lrs, mom, acc = s.at(1500, 9)
    assert lrs == pytest.approx([0.000342268] * 3, rel=1e-5)
    assert mom == 0.937 and acc == 4
    assert one_cycle(10, 10, 0.01) == pytest.approx(0.01)  # ends at lrf


def test_long_warmup_follows_epochs() -> None:
    # 3 epochs × 500 batches = 1500 > 1000
    s = Schedule.from_hyp(HYP, epochs=300, batches_per_epoch=500, total_batch=64)
    assert s.warmup_iters == 1500
    assert s.at(1500, 3)[2] == 1 and s.at(750, 1)[0][2] == pytest.approx(0.05 + 0.5 * 0.01 * (
        1 - (1 - math.cos(math.pi / 300)) / 2 * 0.99), rel=1e-9)


def test_accumulation_and_weight_decay_scaling() -> None:
    assert [accumulate_steps(b) for b in (1, 8, 16, 24, 64, 128)] == [64, 8, 4, 3, 1, 1]
    # wd × batch × accumulate / 64
    assert scaled_weight_decay(0.0005, 16) == pytest.approx(0.0005)
    assert scaled_weight_decay(0.0005, 24) == pytest.approx(0.0005 * 72 / 64)
    assert scaled_weight_decay(0.0005, 128) == pytest.approx(0.001)


def test_three_param_groups(tiny: nn.Module) -> None:
    g = param_groups(tiny)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in tiny.modules())
    n_impl = sum(isinstance(m, (M.ImplicitA, M.ImplicitM)) for m in tiny.modules())
    n_conv = sum(isinstance(m, nn.Conv2d) for m in tiny.modules())
    n_conv_bias = sum(isinstance(m, nn.Conv2d) and m.bias is not None for m in tiny.modules())
    assert n_impl > 0 and n_conv_bias > 0
    assert len(g["no_decay"]) == n_bn + n_impl
    assert len(g["decay"]) == n_conv
    assert len(g["bias"]) == n_bn + n_conv_bias
    assert all(p.ndim == 4 for p in g["decay"]) and all(p.ndim == 1 for p in g["bias"])
    every = {id(p) for p in tiny.parameters()}
    grouped = [id(p) for v in g.values() for p in v]
    assert len(grouped) == len(set(grouped)) == len(every)

    opt = build_optimizer(tiny, HYP, total_batch=24)
    decays = [pg["weight_decay"] for pg in opt.param_groups]
    assert decays == [0, pytest.approx(0.0005 * 72 / 64), 0]
    assert all(pg["nesterov"] and pg["momentum"] == 0.937 for pg in opt.param_groups)


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="no optimizer group"):
        param_groups(nn.MultiheadAttention(4, 2))


def test_ema_formula_over_params_and_buffers() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    ema = ModelEMA(m)
    w0 = m[0].weight.detach().clone()
    rm0 = m[1].running_mean.clone()
    # change the weights and the BN statistics, then update twice
    with torch.no_grad():
        m[0].weight.add_(1.0)
    m.train()(torch.randn(4, 2, 3, 3) + 5)
    ema.update(m)
    d1 = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema_decay(1) == pytest.approx(d1)
    assert torch.allclose(ema.module[0].weight, d1 * w0 + (1 - d1) * m[0].weight)
    assert torch.allclose(ema.module[1].running_mean, d1 * rm0 + (1 - d1) * m[1].running_mean)
    ema.update(m)
    d2 = 0.9999 * (1 - math.exp(-2 / 2000))
    e1 = d1 * w0 + (1 - d1) * m[0].weight
    assert torch.allclose(ema.module[0].weight, d2 * e1 + (1 - d2) * m[0].weight)
    assert int(ema.module[1].num_batches_tracked) == int(m[1].num_batches_tracked)
    assert ema.updates == 2 and not ema.module.training
    assert ema_decay(10 ** 6) == pytest.approx(0.9999)


def test_transfer_reinitialises_head_on_new_nc(tiny: nn.Module) -> None:
    from yolov7c.train.transfer import transfer
    torch.manual_seed(1)
    target = lower(zoo.get("yolov7-tiny", nc=5))
    fresh_head = target.detect.m[0].weight.detach().clone()
    rep = transfer(tiny, target)
    sd_src, sd_dst = tiny.state_dict(), target.state_dict()
    # exactly the tensors whose width is na × (5 + nc) differ: the detection convs and
    # IDetect's multiplicative implicit vectors
    differ = sorted(k for k in sd_dst if sd_src[k].shape != sd_dst[k].shape)
    assert sorted(rep.reinitialised) == differ
    assert all(k.startswith("model.77.") for k in rep.reinitialised)
    assert len(rep.reinitialised) == 9  # 3 levels × (m weight, m bias, im implicit)
    assert all(torch.equal(sd_src[k], sd_dst[k]) for k in rep.transferred)
    assert len(rep.transferred) + len(rep.reinitialised) == rep.total
    assert torch.equal(target.detect.m[0].weight, fresh_head)
    assert "transferred" in rep.summary() and "re-initialised" in rep.summary()


# ---------------------------------------------------------------- issue 23: what a user sees


def test_progress_shows_images_per_second_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from yolov7c import progress as P
    now = [100.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: now[0])
    out = io.StringIO()
    bar = P.Progress(128, "epoch 1/3", stream=out, unit="img")
    bar.note = "run ETA x"
    now[0] = 104.0
    bar.update(32)                                    # 32 images in 4 s
    assert bar.rate() == 8.0 and bar.eta() == 12.0    # 96 left at 8/s
    line = out.getvalue().splitlines()[-1]
    assert "32/128 8.0 img/s 4s ETA 12s  run ETA x" in line, line
    slow = P.Progress(10, "w6", stream=io.StringIO(), unit="img")
    now[0] = 124.0
    slow.update(4)                                    # 4 images in 20 s: never "0.0/s"
    assert "5.0 s/img" in slow.line() and "ETA 30s" in slow.line()
    assert [P.hms(x) for x in (0, 42.4, 187, 7500)] == ["0s", "42s", "3m07s", "2h05m"]


def _settings(**kw):
    from yolov7c.train.trainer import Settings
    base = dict(data="d.yaml", img=64, epochs=3, batch=16, hyp=HYP, nominal_batch=64,
                min_warmup_iters=1000)
    return Settings(**{**base, **kw})


def test_schedule_warnings_name_the_fixing_flags() -> None:
    from yolov7c.train.trainer import schedule_warnings
    s = _settings()  # 3 epochs × 5 batches of 16, 1000-batch warmup, accumulate 4 → 2 steps
    sched = Schedule.from_hyp(HYP, s.epochs, 5, s.batch, s.min_warmup_iters, s.nominal_batch)
    w = schedule_warnings(sched, s, 5)
    assert len(w) == 2
    assert "warmup lasts 1000 batches but the whole run has 15" in w[0]
    assert "--warmup-iters" in w[0]
    assert w[1].startswith("2 optimizer step(s) per epoch") and "--nominal-batch" in w[1]
    # the fixes: a short warmup and no accumulation → no warning
    s = _settings(nominal_batch=16, min_warmup_iters=2)
    sched = Schedule.from_hyp({**HYP, "warmup_epochs": 0.0}, s.epochs, 5, s.batch,
                              s.min_warmup_iters, s.nominal_batch)
    assert schedule_warnings(sched, s, 5) == []
