"""P6 models (strides 8/16/32/64): yolov7-w6, yolov7-e6, yolov7-d6, yolov7-e6e.

One layout, four configs: ReOrg stem → five ELAN stages (strided-conv or DownC downsampling)
→ SPPCSPC → PAN neck over P3..P6 → lead 3×3 convs + auxiliary 3×3 convs → IAuxDetect.
E6E replaces every ELAN by the two-group, summed E-ELAN. Layer indices equal the official
training cfgs'.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..ir.blocks import conv_down, downc_down, e_elan_sum, elan, lead_convs, sppcspc, up_route
from ..ir.dsl import T, Builder
from ..ir.graph import Graph

ANCHORS_P6 = ((19, 27, 44, 40, 38, 94), (96, 68, 86, 152, 180, 137),
              (140, 301, 303, 264, 238, 542), (436, 615, 739, 380, 925, 792))


@dataclass(frozen=True)
class ElanP6:
    stem: int                                   # conv 3×3 after ReOrg
    down: tuple[int, int, int, int, int]        # downsample widths, P2..P6
    elan_c: tuple[int, int, int, int, int]      # backbone ELAN widths
    convs: int                                  # 3×3 convs per ELAN (backbone and neck)
    spp: int
    route: tuple[int, int, int]                 # top-down 1×1 widths (P5, P4, P3)
    head_c: tuple[int, int, int]                # neck ELAN widths at P5, P4, P3 (reused bottom-up)
    lead: tuple[int, int, int, int]             # lead 3×3 widths, P3..P6
    aux: tuple[int, int, int, int]              # auxiliary 3×3 widths, P3..P6
    downc: bool                                 # DownC (True) or strided conv downsampling
    e_elan: bool = False                        # E6E: two summed ELAN groups per block


W6 = ElanP6(stem=64, down=(128, 256, 512, 768, 1024), elan_c=(64, 128, 256, 384, 512), convs=4,
            spp=512, route=(384, 256, 128), head_c=(384, 256, 128),
            lead=(256, 512, 768, 1024), aux=(320, 640, 960, 1280), downc=False)
E6 = ElanP6(stem=80, down=(160, 320, 640, 960, 1280), elan_c=(64, 128, 256, 384, 512), convs=6,
            spp=640, route=(480, 320, 160), head_c=(384, 256, 128),
            lead=(320, 640, 960, 1280), aux=(320, 640, 960, 1280), downc=True)
D6 = ElanP6(stem=96, down=(192, 384, 768, 1152, 1536), elan_c=(64, 128, 256, 384, 512), convs=8,
            spp=768, route=(576, 384, 192), head_c=(384, 256, 128),
            lead=(384, 768, 1152, 1536), aux=(384, 768, 1152, 1536), downc=True)
E6E = ElanP6(stem=80, down=(160, 320, 640, 960, 1280), elan_c=(64, 128, 256, 384, 512), convs=6,
             spp=640, route=(480, 320, 160), head_c=(384, 256, 128),
             lead=(320, 640, 960, 1280), aux=(320, 640, 960, 1280), downc=True, e_elan=True)


def _block(cfg: ElanP6, x: T, c: int, out: int, neck: bool) -> tuple[T, T]:
    """One computational block + transition; returns (output, tap for the aux head).

    Backbone ELANs tap every second 3×3 output; neck ELANs tap all, with 3×3s half as wide.
    """
    kw = dict(c3=c // 2, step=1) if neck else dict(step=2)
    if cfg.e_elan:
        return e_elan_sum(x, c, cfg.convs, out, **kw)
    y = elan(x, c, cfg.convs, out, **kw)
    return y, y


def elan_p6(name: str, cfg: ElanP6, nc: int = 80,
            anchors: Sequence[Sequence[float]] = ANCHORS_P6) -> Graph:
    b = Builder(name, act="silu")
    down = downc_down if cfg.downc else conv_down
    with b.scope("backbone.stem", stage="stem"):
        x = b.conv(b.reorg(b.input), cfg.stem, 3, name="conv0")
    feats = []
    for level, (d, c) in enumerate(zip(cfg.down, cfg.elan_c)):
        with b.scope(f"backbone.p{level + 2}", stage=f"P{level + 2}"):
            x, _ = _block(cfg, down(x, d), c, d, neck=False)
        feats.append(x)
    with b.scope("neck", stage="neck"):
        top = sppcspc(x, cfg.spp)
        td, taps = [top], [top]            # top-down outputs (P6..P3) and aux taps
        for skip, r, c in zip(feats[3:0:-1], cfg.route, cfg.head_c):
            y, tap = _block(cfg, up_route(td[-1], skip, r), c, r, neck=True)
            td.append(y)
            taps.append(tap)
        # bottom-up P3 → P6: downsample, concat the top-down output of the next level, block
        bu_width = cfg.route[::-1][1:] + (cfg.spp,)
        bu_c = cfg.head_c[::-1][1:] + (cfg.elan_c[-1],)
        outs = [td[-1]]
        for skip, w, c in zip(td[-2::-1], bu_width, bu_c):
            y, _ = _block(cfg, down(outs[-1], w, extra=[skip]), c, w, neck=True)
            outs.append(y)
    with b.scope("head", stage="head"):
        lead = lead_convs(outs, cfg.lead, rep=False)
        with b.scope("aux", stage="aux"):
            aux = lead_convs(taps[::-1], cfg.aux, rep=False, name="convs")
        b.detect(lead + aux, nc, anchors, kind="IAuxDetect")
    return b.build()


def yolov7_w6(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_P6) -> Graph:
    return elan_p6("yolov7-w6", W6, nc, anchors)


def yolov7_e6(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_P6) -> Graph:
    return elan_p6("yolov7-e6", E6, nc, anchors)


def yolov7_d6(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_P6) -> Graph:
    return elan_p6("yolov7-d6", D6, nc, anchors)


def yolov7_e6e(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_P6) -> Graph:
    return elan_p6("yolov7-e6e", E6E, nc, anchors)
