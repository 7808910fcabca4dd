"""The YOLOv7 building blocks as DSL functions (paper §3.1, Fig. 2; §3.2, Fig. 3).

Every block opens a named scope, records its kind and arguments (``Graph.blocks``) for scaling
and reports, and tags its nodes with a role: ``computational`` (the stacked convs and their
concat) or ``transition`` (the 1×1 conv that follows a computational block), or ``downsample``.
Nodes are emitted in the order of the official cfgs, so zoo layer indices equal official ones.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .dsl import T

COMPUTATIONAL = "computational"
TRANSITION = "transition"
DOWNSAMPLE = "downsample"


def elan_taps(convs: int, step: int) -> list[int]:
    """Which chain outputs an ELAN concatenates, newest first.

    The chain is [y0 = the 1×1 that feeds the 3×3 stack, y1..y_convs]; every ``step``-th output
    counting back from the last is tapped: convs=4, step=2 → [4, 2, 0] (yolov7 backbone),
    step=1 → [4, 3, 2, 1, 0] (yolov7 head). The other 1×1 branch is always appended last.
    """
    return list(range(convs, -1, -step))


def elan(x: T, c: Any, convs: int, out: Any, c3: Any = None, step: int = 2,
         name: str = "elan", act: str | None = None,
         conv3: Callable[[T, Any, str], T] | None = None) -> T:
    """ELAN computational block + transition: two 1×1 branches of width ``c``, a chain of
    ``convs`` 3×3 convs of width ``c3`` (default ``c``), a concat of the tapped outputs, and a
    1×1 transition conv of width ``out``. Concat width = c·2 + c3·(taps − 1), inferred.
    ``conv3(y, c3, name)`` makes a chain conv (default: a 3×3 Conv; the re-parameterization
    ablations place RepConv / RepConvN with it)."""
    b = x.builder
    c3 = c if c3 is None else c3
    with b.scope(name, kind="elan", c=c, c3=c3, convs=convs, step=step, out=out):
        with b.role(COMPUTATIONAL):
            side = b.conv(x, c, 1, act=act, name="cv1")
            y = b.conv(x, c, 1, act=act, name="cv2")
            chain = [y]
            for i in range(convs):
                y = (conv3(y, c3, f"m{i}") if conv3 is not None
                     else b.conv(y, c3, 3, act=act, name=f"m{i}"))
                chain.append(y)
            cat = b.concat(*[chain[i] for i in elan_taps(convs, step)], side)
        with b.role(TRANSITION):
            return b.conv(cat, out, 1, act=act, name="transition")


def e_elan_sum(x: T, c: Any, convs: int, out: Any, c3: Any = None, step: int = 2,
               name: str = "e_elan") -> tuple[T, T]:
    """The released E6E form of E-ELAN: two ELAN groups on the same input, merged by an
    element-wise sum (the paper's expand–shuffle–merge with cardinality 2, the shuffle being
    a no-op for a sum). Returns (merged, second group's output); the second is where E6E's
    auxiliary head taps in."""
    b = x.builder
    with b.scope(name, kind="e_elan", c=c, c3=c3 if c3 is not None else c, convs=convs,
                 step=step, out=out, groups=2):
        first = elan(x, c, convs, out, c3, step, name="group1")
        second = elan(x, c, convs, out, c3, step, name="group2")
        with b.role(COMPUTATIONAL):
            return b.shortcut(second, first, name="merge"), second


def mp_down(x: T, c: Any, extra: Sequence[T] = (), name: str = "mp_down") -> T:
    """MP-down transition (Fig. 2 of the official cfgs): [conv3×3/2(conv1×1(x)) ‖
    conv1×1(maxpool(x))] plus optional skip tensors concatenated after."""
    b = x.builder
    with b.scope(name, kind="mp_down", c=c), b.role(DOWNSAMPLE):
        pooled = b.conv(b.mp(x), c, 1, name="cv1")
        strided = b.conv(b.conv(x, c, 1, name="cv2"), c, 3, 2, name="cv3")
        return b.concat(strided, pooled, *extra)


def conv_down(x: T, c: Any, extra: Sequence[T] = (), name: str = "down",
              act: str | None = None) -> T:
    """Strided 3×3 conv downsample, concatenated with skip tensors (tiny and W6 heads)."""
    b = x.builder
    with b.scope(name, kind="conv_down", c=c), b.role(DOWNSAMPLE):
        y = b.conv(x, c, 3, 2, act=act)
        return b.concat(y, *extra) if extra else y


def downc_down(x: T, c: Any, extra: Sequence[T] = (), name: str = "down") -> T:
    """DownC downsample (E6/D6/E6E), concatenated with skip tensors."""
    b = x.builder
    with b.scope(name, kind="downc", c=c), b.role(DOWNSAMPLE):
        y = b.downc(x, c)
        return b.concat(y, *extra) if extra else y


def up_route(x: T, skip: T, c: Any, name: str = "up", act: str | None = None) -> T:
    """Top-down fusion: [conv1×1(skip) ‖ upsample(conv1×1(x))], both ``c`` wide."""
    b = x.builder
    with b.scope(name, kind="up_route", c=c), b.role(TRANSITION):
        up = b.upsample(b.conv(x, c, 1, act=act, name="reduce"))
        lateral = b.conv(skip, c, 1, act=act, name="lateral")
        return b.concat(lateral, up)


def sppcspc(x: T, c: Any, name: str = "sppcspc") -> T:
    b = x.builder
    with b.scope(name, kind="sppcspc", c=c), b.role(TRANSITION):
        return b.sppcspc(x, c)


def spp_tiny(x: T, c: Any, name: str = "spp", act: str | None = None) -> T:
    """yolov7-tiny's SPP: a CSP split whose one half goes through max-pools 5, 9, 13."""
    b = x.builder
    with b.scope(name, kind="spp_tiny", c=c), b.role(TRANSITION):
        side = b.conv(x, c, 1, act=act, name="cv1")
        y = b.conv(x, c, 1, act=act, name="cv2")
        pools = [b.sp(y, k) for k in (5, 9, 13)]
        y = b.conv(b.concat(*pools[::-1], y), c, 1, act=act, name="cv3")
        return b.conv(b.concat(y, side), c, 1, act=act, name="cv4")


def lead_convs(xs: Sequence[T], widths: Sequence[Any], rep: bool, name: str = "lead") -> list[T]:
    """The 3×3 convs before the detector (RepConv in yolov7 / plain Conv elsewhere)."""
    b = xs[0].builder
    with b.scope(name, kind="lead_convs", widths=tuple(widths), rep=rep):
        return [b.repconv(x, w, name=f"p{i}") if rep else b.conv(x, w, 3, name=f"p{i}")
                for i, (x, w) in enumerate(zip(xs, widths))]


def e_elan(x: T, c: Any, convs: int, out: Any, g: int = 2, step: int = 2,
           name: str = "e_elan", act: str | None = None) -> T:
    """E-ELAN as the paper draws it (§3.1, Fig. 2d): *expand* — every conv of the
    computational block becomes a group conv with ``g`` groups and ``g``× the channels
    (channel multiplier g); *shuffle* — the concatenated taps are regrouped so each of the
    ``g`` groups holds one slice of every tap; *merge cardinality* — the ``g`` groups are
    added, which brings the width back to the plain ELAN's concat width; then the unchanged
    1×1 transition. Taps follow ``elan_taps(convs, step)`` plus the side branch; all
    branches are ``c`` wide per group (the shuffle needs equal parts). The input width must
    be divisible by ``g``. Compare ``e_elan_sum``, the two-branch form the released E6E uses
    (every branch reads the whole input, merged after two transitions)."""
    b = x.builder
    with b.scope(name, kind="e_elan_grouped", c=c, convs=convs, step=step, out=out, groups=g):
        with b.role(COMPUTATIONAL):
            side = b.conv(x, g * c, 1, g=g, act=act, name="cv1")
            y = b.conv(x, g * c, 1, g=g, act=act, name="cv2")
            chain = [y]
            for i in range(convs):
                y = b.conv(y, g * c, 3, g=g, act=act, name=f"m{i}")
                chain.append(y)
            taps = [chain[i] for i in elan_taps(convs, step)] + [side]
            cat = b.concat(*taps)
            shuffled = b.add("Shuffle", [cat], "shuffle", g=g, parts=len(taps))
            merged = b.add("GroupSum", [shuffled], "merge", g=g)
        with b.role(TRANSITION):
            return b.conv(merged, out, 1, act=act, name="transition")
