"""Our symbolic FLOP counter against independent oracles, over the whole zoo registry.

Oracle 1 is torch's ``torch.utils.flop_counter.FlopCounterMode`` on the lowered model: it
counts, per executed aten op, 2 × MACs of ``aten.convolution`` (and of matmuls, which YOLO
has none of) and nothing else. So it must equal our ``macs2`` convention *exactly*, in both
the training form (train mode, so the auxiliary head's convs run) and the fused deploy form.

What it does not count, and so what separates our other two conventions from it, exactly:
BatchNorm, conv bias, activations, pooling, upsampling, concat/slicing (ReOrg), the implicit
layers and the head's decode. Oracle 2 measures those element counts with forward hooks on
the same modules (output ``numel()``), and the test checks

    official = FlopCounterMode + 2·(4·BatchNorm elements + nearest-upsample outputs)
    paper    = FlopCounterMode + 2·(conv-bias outputs + 2·BatchNorm elements
                                    + LeakyReLU elements)

Models are built on the meta device (shapes only, no arithmetic) at the smallest size with
two cells at the coarsest level (2 × max stride), so the whole zoo takes seconds.
"""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import yolov7c
from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.lower import lower
from yolov7c.ir.analysis import analyze
from yolov7c.ir.deploy import to_deploy


def _measure(graph: yolov7c.Graph, img: int, train: bool) -> tuple[int, Counter, dict]:
    """(FlopCounterMode total, element counts by kind from hooks, FLOPs per aten op)."""
    with torch.device("meta"):
        model = lower(graph)
    model.train(train)
    elems: Counter = Counter()

    def hook(kind: str):
        def count(module: nn.Module, inputs: object, out: torch.Tensor) -> None:
            elems[kind] += out.numel()
        return count
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(hook("bn"))
        elif isinstance(m, nn.Conv2d) and m.bias is not None:
            m.register_forward_hook(hook("bias"))
        elif isinstance(m, nn.LeakyReLU):
            m.register_forward_hook(hook("leaky"))
        elif isinstance(m, M.Upsample):
            m.register_forward_hook(hook("upsample"))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.empty(1, graph.in_channels, img, img, device="meta"))
    per_op = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    return fc.get_total_flops(), elems, per_op


@pytest.mark.parametrize("form", ["training", "deploy"])
@pytest.mark.parametrize("name", yolov7c.zoo.list())
def test_flop_counter_equals_torch_flop_counter_mode(name: str, form: str) -> None:
    graph = yolov7c.graph(name)
    if form == "deploy":
        graph = to_deploy(graph)
    img = 2 * graph.max_stride
    oracle, elems, per_op = _measure(graph, img, train=form == "training")
    a = analyze(graph, img)
    assert set(per_op) == {"aten.convolution"}  # the only op FlopCounterMode counts here
    assert a.flops("macs2") == oracle
    assert a.flops("official") == oracle + 2 * (4 * elems["bn"] + elems["upsample"])
    assert a.flops("paper") == oracle + 2 * (elems["bias"] + 2 * elems["bn"] + elems["leaky"])
    if form == "deploy":
        assert elems["bn"] == 0  # fused: every BN folded into a conv bias
