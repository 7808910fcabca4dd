"""The paper's planned re-parameterization ablations as small DSL detectors (§4.1, §5.4.2).

One layout for all: stem (3×3/2 → 16, 3×3/2 → 32), then four stages at strides 4, 8, 16,
32 of widths 32, 64, 128, 128, each a 3×3/2 conv (not the first) and one *body*; IDetect on
the stride-8/16/32 stage outputs (yolov7-tiny's anchors). Only the bodies differ, and the
stride-2 convs are never candidates, so every variant's 3×3 stride-1 convs are its bodies'.
At 320² every model is 0.2–1.5 M params: small enough to train on a CPU.

- Fig. 4, a body is one 2-conv block (3×3 ``a`` then 3×3 ``b``, width = the stage's):
  ``fig4-plainnet`` (no skip), ``fig4-repplainnet`` (both RepConv), ``fig4-resnet`` (a
  Shortcut from the block input to b's output), ``fig4-represnet`` (both RepConv with
  identity: the placement §4.1 warns about), ``fig4-p1-represnet`` (a → RepConvN, b →
  RepConv: the planner's choice; a's input is added to the block output, b's input is not)
  and ``fig4-p2-represnet`` (RepConvN at both: no identity anywhere inside the residual).
  Which conv each of the paper's panels (e), (f) replaces is our reading, stated here.
- Fig. 6, a body is a 3-stacked ELAN (6 chained 3×3 convs, every 2nd output tapped: three
  stacks of two; width c/2 inside, c out). ``fig6-elan3`` is the base; ``fig6-elan3-a`` ..
  ``-e`` put RepConv (identity) at: (a) all six, (b) the first conv of each stack (its input
  is tapped: concat position), (c) the second conv of each stack (plain position), (d) the
  first stack, (e) the last stack. The letters are our labels (the figure is not reproduced
  in our notes); (c) is the placement the rule favours and the one with the highest AP in
  Table 4. ``fig6-elan3-planned`` is (c) plus RepConvN at the concat positions — exactly
  what ``plan_reparam(fig6-elan3, "planned")`` produces.
- Fig. 7, a body is a CSPDarknet stage with one dark block (hidden width c/2): ``fig7-csp``
  (dark block: 1×1 then 3×3, residual), ``fig7-repcsp`` (its 3×3 → RepConv: a plain
  position), ``fig7-rcsp`` (reversed dark block: 3×3 then 1×1, the same params and FLOPs),
  ``fig7-reprcsp`` (the reversed block's 3×3 → RepConvN: it reads the residual's input).

Variants are written by hand with the DSL, not produced by the planner, so the tests can
check the planner against them.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..ir.blocks import COMPUTATIONAL, TRANSITION, elan
from ..ir.dsl import Builder, T
from ..ir.graph import Graph
from ..ir.ops import half
from .p5 import ANCHORS_TINY
from .registry import register_ablation

IMG = 320
STEM = (16, 32)
WIDTHS = (32, 64, 128, 128)          # stages at strides 4, 8, 16, 32
# how a 3×3 stride-1 conv is written: plain Conv, RepConv (identity automatic), RepConv with
# a deliberate identity (the harmful ablations; not linted), RepConvN (no identity)
CONV, REP, REP_ID, REPN = "conv", "rep", "rep!", "repn"
Body = Callable[[T, Any], T]


def conv3(x: T, c: Any, name: str, kind: str) -> T:
    """One 3×3 stride-1 conv of the given kind."""
    b = x.builder
    if kind == CONV:
        return b.conv(x, c, 3, name=name)
    identity = {REP: None, REP_ID: True, REPN: False}[kind]
    return b.repconv(x, c, name=name, identity=identity)


def detector(name: str, body: Body, nc: int = 80,
             anchors: Sequence[Sequence[float]] = ANCHORS_TINY) -> Graph:
    """The shared layout around ``body(x, c)`` (see the module docstring)."""
    b = Builder(name, act="silu")
    x = b.input
    with b.scope("stem", stage="stem"):
        for i, w in enumerate(STEM):
            x = b.conv(x, w, 3, 2, name=f"conv{i}")
    feats = []
    for level, c in enumerate(WIDTHS):
        with b.scope(f"p{level + 2}", stage=f"P{level + 2}"):
            if level:
                with b.scope("down", kind="conv_down", c=c), b.role("downsample"):
                    x = b.conv(x, c, 3, 2)
            x = body(x, c)
        feats.append(x)
    with b.scope("head", stage="head"):
        b.detect(feats[1:], nc, anchors, kind="IDetect")
    return b.build()


# ----- Fig. 4: plain and residual 2-conv blocks -------------------------------------------
def block2(kinds: tuple[str, str], residual: bool) -> Body:
    def body(x: T, c: Any) -> T:
        b = x.builder
        with b.scope("block", kind="res_block" if residual else "plain_block", c=c), \
                b.role(COMPUTATIONAL):
            y = conv3(conv3(x, c, "a", kinds[0]), c, "b", kinds[1])
            return b.shortcut(y, x, name="add") if residual else y
    return body


# ----- Fig. 6: 3-stacked ELAN ----------------------------------------------------------------
ELAN3_CONVS, ELAN3_STEP = 6, 2   # three stacks of two chained 3×3 convs, each stack tapped
FIG6: dict[str, tuple[int, ...]] = {   # variant → chain convs (m0..m5) that become RepConv
    "a": (0, 1, 2, 3, 4, 5), "b": (0, 2, 4), "c": (1, 3, 5), "d": (0, 1), "e": (4, 5)}


def elan3(kinds: Sequence[str]) -> Body:
    def body(x: T, c: Any) -> T:
        def chain(y: T, c3: Any, name: str) -> T:
            return conv3(y, c3, name, kinds[int(name[1:])])
        return elan(x, half(c), ELAN3_CONVS, c, step=ELAN3_STEP, conv3=chain)
    return body


def fig6_kinds(variant: str) -> tuple[str, ...]:
    if variant == "base":
        return (CONV,) * ELAN3_CONVS
    if variant == "planned":  # plain (second of a stack) → RepConv, tapped input → RepConvN
        return tuple(REP if i % ELAN3_STEP else REPN for i in range(ELAN3_CONVS))
    reps = FIG6[variant]
    return tuple(REP_ID if i in reps else CONV for i in range(ELAN3_CONVS))


# ----- Fig. 7: CSPDarknet dark block and the reversed dark block ------------------------------
def csp_dark(reverse: bool, kind3: str) -> Body:
    """CSP stage: [cv1 → dark block → cv3 ‖ cv2] → concat → cv4; the dark block (hidden
    width h = c/2) is 1×1 then 3×3 (or reversed: 3×3 then 1×1) plus a residual."""
    def body(x: T, c: Any) -> T:
        b = x.builder
        h = half(c)
        with b.scope("csp", kind="csp_dark", c=c, reverse=reverse):
            with b.role(COMPUTATIONAL):
                y = b.conv(x, h, 1, name="cv1")
                with b.scope("dark", kind="dark_block", c=h, reverse=reverse):
                    if reverse:
                        t = b.conv(conv3(y, h, "cv3x3", kind3), h, 1, name="cv1x1")
                    else:
                        t = conv3(b.conv(y, h, 1, name="cv1x1"), h, "cv3x3", kind3)
                    y = b.shortcut(t, y, name="add")
                y = b.conv(y, h, 1, name="cv3")
                side = b.conv(x, h, 1, name="cv2")
                cat = b.concat(y, side)
            with b.role(TRANSITION):
                return b.conv(cat, c, 1, name="cv4")
    return body


# ----- the registry: name → (body, description) ---------------------------------------------
VARIANTS: dict[str, tuple[Body, str]] = {
    "fig4-plainnet": (block2((CONV, CONV), False), "Fig. 4a PlainNet: 3×3 pairs, no skip"),
    "fig4-repplainnet": (block2((REP, REP), False), "Fig. 4b RepPlainNet: every 3×3 RepConv"),
    "fig4-resnet": (block2((CONV, CONV), True), "Fig. 4c ResNet: 3×3 pairs + residual"),
    "fig4-represnet": (block2((REP_ID, REP_ID), True),
                       "Fig. 4d RepResNet: RepConv with identity inside the residual"),
    "fig4-p1-represnet": (block2((REPN, REP), True),
                          "Fig. 4e P1-RepResNet: RepConvN first, RepConv second (planned)"),
    "fig4-p2-represnet": (block2((REPN, REPN), True),
                          "Fig. 4f P2-RepResNet: RepConvN at both convs of the block"),
    "fig6-elan3": (elan3(fig6_kinds("base")), "Fig. 6 base: 3-stacked ELAN"),
    **{f"fig6-elan3-{v}": (elan3(fig6_kinds(v)), f"Fig. 6({v}): RepConv at chain convs "
                           + ",".join(f"m{i}" for i in FIG6[v])) for v in FIG6},
    "fig6-elan3-planned": (elan3(fig6_kinds("planned")),
                           "Fig. 6 planned: (c) + RepConvN where the input is tapped"),
    "fig7-csp": (csp_dark(False, CONV), "Fig. 7 CSP: dark block 1×1 → 3×3 + residual"),
    "fig7-repcsp": (csp_dark(False, REP), "Fig. 7 RepCSP: the dark block's 3×3 → RepConv"),
    "fig7-rcsp": (csp_dark(True, CONV), "Fig. 7 RCSP: reversed dark block 3×3 → 1×1"),
    "fig7-reprcsp": (csp_dark(True, REPN), "Fig. 7 RepRCSP: reversed, 3×3 → RepConvN"),
}


def _builder(name: str, body: Body) -> Callable[..., Graph]:
    def build(nc: int = 80, anchors: Sequence[Sequence[float]] = ANCHORS_TINY) -> Graph:
        return detector(name, body, nc, anchors)
    build.__name__ = name.replace("-", "_")
    return build


for _name, (_body, _desc) in VARIANTS.items():
    register_ablation(_name, IMG, _desc)(_builder(_name, _body))

# the plain base each variant re-parameterizes: its deploy form must equal the base's
BASES = {name: {"fig4": "fig4-plainnet", "fig6": "fig6-elan3", "fig7": "fig7-csp"}[name[:4]]
         for name in VARIANTS}
BASES.update({name: "fig4-resnet" for name in VARIANTS if "resnet" in name})

__all__ = ["BASES", "FIG6", "IMG", "VARIANTS", "detector"]
