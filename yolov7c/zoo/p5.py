"""P5 models (strides 8/16/32): yolov7-tiny, yolov7-tiny-silu, yolov7, yolov7x.

Each model is one layout function fed a small config, written the way the paper draws it:
stem → ELAN stages joined by MP-down transitions → SPPCSPC → PAN neck → lead convs → IDetect.
Layer indices equal the official training cfgs'.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..ir.blocks import conv_down, elan, lead_convs, mp_down, sppcspc, spp_tiny, up_route
from ..ir.dsl import Builder
from ..ir.ops import half
from ..ir.graph import Graph

ANCHORS_P5 = ((12, 16, 19, 36, 40, 28), (36, 75, 76, 55, 72, 146), (142, 110, 192, 243, 459, 401))
ANCHORS_TINY = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))


@dataclass(frozen=True)
class ElanP5:
    """Widths and depths of a yolov7 / yolov7x-style P5 model."""

    stem: tuple[int, int, int, int]           # conv 3×3 widths: s1, s2, s1, s2
    elan_c: tuple[int, int, int, int]         # backbone ELAN widths, P2..P5
    elan_out: tuple[int, int, int, int]       # backbone transition widths, P2..P5
    convs: int                                # 3×3 convs per backbone ELAN
    spp: int                                  # SPPCSPC width
    route: tuple[int, int]                    # top-down 1×1 widths (P4, P3)
    head_c: tuple[int, int, int, int]         # neck ELAN widths: top-down P4, P3, bottom-up P4, P5
    head_c3: tuple[int, int, int, int]        # neck ELAN 3×3 widths
    head_out: tuple[int, int, int, int]       # neck transition widths
    head_convs: int
    head_step: int
    lead: tuple[int, int, int]                # 3×3 widths before the detector
    rep: bool                                 # RepConv lead convs (yolov7) or plain (yolov7x)


YOLOV7 = ElanP5(stem=(32, 64, 64, 128), elan_c=(64, 128, 256, 256), elan_out=(256, 512, 1024, 1024),
                convs=4, spp=512, route=(256, 128), head_c=(256, 128, 256, 512),
                head_c3=(128, 64, 128, 256), head_out=(256, 128, 256, 512), head_convs=4,
                head_step=1, lead=(256, 512, 1024), rep=True)

YOLOV7X = ElanP5(stem=(40, 80, 80, 160), elan_c=(64, 128, 256, 256),
                 elan_out=(320, 640, 1280, 1280), convs=6, spp=640, route=(320, 160),
                 head_c=(256, 128, 256, 512), head_c3=(256, 128, 256, 512),
                 head_out=(320, 160, 320, 640), head_convs=6, head_step=2,
                 lead=(320, 640, 1280), rep=False)


def elan_p5(name: str, cfg: ElanP5, nc: int = 80,
            anchors: Sequence[Sequence[float]] = ANCHORS_P5) -> Graph:
    """The yolov7 / yolov7x layout."""
    b = Builder(name, act="silu")
    x = b.input
    with b.scope("backbone.stem", stage="stem"):
        for i, (w, s) in enumerate(zip(cfg.stem, (1, 2, 1, 2))):
            x = b.conv(x, w, 3, s, name=f"conv{i}")
    feats = []
    for level, (c, out) in enumerate(zip(cfg.elan_c, cfg.elan_out)):
        with b.scope(f"backbone.p{level + 2}", stage=f"P{level + 2}"):
            if level:
                x = mp_down(x, half(x.c))
            x = elan(x, c, cfg.convs, out)
        feats.append(x)
    p3, p4 = feats[1], feats[2]
    hk = dict(convs=cfg.head_convs, step=cfg.head_step)
    with b.scope("neck", stage="neck"):
        p5 = sppcspc(x, cfg.spp)
        t4 = elan(up_route(p5, p4, cfg.route[0]), cfg.head_c[0], out=cfg.head_out[0],
                  c3=cfg.head_c3[0], **hk)
        t3 = elan(up_route(t4, p3, cfg.route[1]), cfg.head_c[1], out=cfg.head_out[1],
                  c3=cfg.head_c3[1], **hk)
        n4 = elan(mp_down(t3, t3.c, extra=[t4]), cfg.head_c[2], out=cfg.head_out[2],
                  c3=cfg.head_c3[2], **hk)
        n5 = elan(mp_down(n4, n4.c, extra=[p5]), cfg.head_c[3], out=cfg.head_out[3],
                  c3=cfg.head_c3[3], **hk)
    with b.scope("head", stage="head"):
        outs = lead_convs([t3, n4, n5], cfg.lead, rep=cfg.rep)
        b.detect(outs, nc, anchors, kind="IDetect")
    return b.build()


def yolov7(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_P5) -> Graph:
    return elan_p5("yolov7", YOLOV7, nc, anchors)


def yolov7x(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_P5) -> Graph:
    return elan_p5("yolov7x", YOLOV7X, nc, anchors)


def tiny(name: str, act: str, nc: int = 80,
         anchors: Sequence[Sequence[float]] = ANCHORS_TINY) -> Graph:
    """yolov7-tiny: 2-conv ELANs (all outputs tapped), plain max-pool downsampling."""
    b = Builder(name, act=act)
    x = b.input
    with b.scope("backbone.stem", stage="stem"):
        x = b.conv(x, 32, 3, 2, name="conv0")
        x = b.conv(x, 64, 3, 2, name="conv1")
    feats = []
    for level, c in enumerate((32, 64, 128, 256)):
        with b.scope(f"backbone.p{level + 2}", stage=f"P{level + 2}"):
            if level:
                with b.scope("down", kind="mp"):
                    x = b.mp(x)
            x = elan(x, c, 2, 2 * c, step=1)
        feats.append(x)
    p3, p4 = feats[1], feats[2]
    with b.scope("neck", stage="neck"):
        p5 = spp_tiny(x, 256)
        t4 = elan(up_route(p5, p4, 128), 64, 2, 128, step=1)
        t3 = elan(up_route(t4, p3, 64), 32, 2, 64, step=1)
        n4 = elan(conv_down(t3, 128, extra=[t4]), 64, 2, 128, step=1)
        n5 = elan(conv_down(n4, 256, extra=[p5]), 128, 2, 256, step=1)
    with b.scope("head", stage="head"):
        outs = lead_convs([t3, n4, n5], (128, 256, 512), rep=False)
        b.detect(outs, nc, anchors, kind="IDetect")
    return b.build()


def yolov7_tiny(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_TINY) -> Graph:
    return tiny("yolov7-tiny", "leaky", nc, anchors)


def yolov7_tiny_silu(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_TINY) -> Graph:
    return tiny("yolov7-tiny-silu", "silu", nc, anchors)
