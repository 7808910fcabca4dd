"""The op catalog: every layer type of the official training and deploy cfgs, in one place.

Each op knows, as pure functions of its attributes and input channels: output channels,
spatial stride, parameter count and cost. The functions use only + - * / on their inputs, so
they work unchanged on ints and on sympy expressions (closed-form scaling and reports).

Cost is kept as separate counts (conv MACs, BatchNorm elements, conv-bias outputs,
LeakyReLU elements, nearest-upsample outputs, conv output activations) because the three
FLOP conventions weight them differently (see ``analysis.CONVENTIONS``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from ..errors import UserError

ACTIVATIONS = ("silu", "leaky", "relu", "identity")


class OpError(ValueError):
    """An op's attributes or inputs are inconsistent (the graph adds the node's name)."""


@dataclass(frozen=True)
class Cost:
    """Countable work of one layer at a given input size (all elements, batch 1)."""

    conv_macs: Any = 0       # Σ out_elements · c_in/groups · kh · kw over convolutions
    bn_elems: Any = 0        # BatchNorm input elements
    bias_elems: Any = 0      # output elements of convolutions that carry a bias
    leaky_elems: Any = 0     # LeakyReLU input elements
    upsample_elems: Any = 0  # nearest-upsample output elements
    activations: Any = 0     # convolution output elements (Dollár et al.'s activation count)

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Cost)))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(Cost)}


def exact_div(a: Any, b: Any) -> Any:
    """a / b that stays an int when both are ints and b divides a (sympy stays symbolic)."""
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return a / b


def half(c: Any) -> Any:
    """c / 2, exact for ints (c // 2) and symbolic for sympy expressions."""
    return c // 2 if isinstance(c, int) else c / 2


def conv_params(c1: Any, c2: Any, k: int, g: Any = 1, bn: bool = True, bias: bool = False) -> Any:
    # weight c2·(c1/g)·k² ; BN adds γ, β per output channel ; bias adds one per channel
    return c2 * exact_div(c1, g) * k * k + (2 * c2 if bn else 0) + (c2 if bias else 0)


def conv_cost(c1: Any, c2: Any, k: int, out_area: Any, g: Any = 1, bn: bool = True,
              bias: bool = False, act: str = "identity") -> Cost:
    out = out_area * c2
    return Cost(conv_macs=out * exact_div(c1, g) * k * k,
                bn_elems=out if bn else 0,
                bias_elems=out if bias else 0,
                leaky_elems=out if act == "leaky" else 0,
                activations=out)


def _check_groups(attrs: Mapping[str, Any], c_in: Any) -> None:
    g, c = attrs.get("g", 1), attrs["c"]
    if g != 1 and all(isinstance(v, int) for v in (g, c, c_in)) and (c_in % g or c % g):
        raise OpError(f"groups g={g} must divide the input width {c_in} and the output width {c}")


class OpSpec:
    """Base of all ops: one input, channels and stride unchanged, no parameters, no cost."""

    name = ""
    arity: tuple[int, int | None] = (1, 1)  # (min, max) number of inputs; None = unbounded
    is_head = False
    attrs_required: tuple[str, ...] = ()

    def check_arity(self, node: Any, n: int) -> None:
        lo, hi = self.arity
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            raise UserError(f"{node.where()}: takes {want} input(s), got {n}")

    def validate(self, attrs: Mapping[str, Any], cins: Sequence[Any], strides: Sequence[Any]) -> None:
        for a in self.attrs_required:
            if a not in attrs:
                raise OpError(f"missing attribute {a!r}")
        act = attrs.get("act")
        if act is not None and act not in ACTIVATIONS:
            raise OpError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
        c = attrs.get("c")
        if isinstance(c, (int, float)) and c <= 0:
            raise OpError(f"width c={c} must be positive")

    def out_channels(self, attrs: Mapping[str, Any], cins: Sequence[Any]) -> Any:
        return cins[0]

    def scale(self, attrs: Mapping[str, Any]) -> Any:
        """Output stride / input stride (2 for a stride-2 conv, 1/2 for a 2× upsample)."""
        return 1

    def out_stride(self, attrs: Mapping[str, Any], strides: Sequence[Any]) -> Any:
        s = self.scale(attrs)
        return strides[0] * s if s >= 1 else strides[0] // int(round(1 / s))

    def params(self, attrs: Mapping[str, Any], cins: Sequence[Any]) -> Any:
        return 0

    def cost(self, attrs: Mapping[str, Any], cins: Sequence[Any], areas: Sequence[Any]) -> Cost:
        """Cost at input spatial areas ``areas`` (h·w of each input)."""
        return Cost()

    def out_area(self, attrs: Mapping[str, Any], areas: Sequence[Any]) -> Any:
        s = self.scale(attrs)
        return exact_div(areas[0], s * s) if s != 1 else areas[0]


class ConvOp(OpSpec):
    """Conv2d (+BN) (+bias) + activation. attrs: c, k=1, s=1, g=1, act, bn=True, bias=False."""

    name = "Conv"
    attrs_required = ("c",)

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        _check_groups(attrs, cins[0])

    def out_channels(self, attrs, cins):
        return attrs["c"]

    def scale(self, attrs):
        return attrs.get("s", 1)

    def params(self, attrs, cins):
        return conv_params(cins[0], attrs["c"], attrs.get("k", 1), attrs.get("g", 1),
                           attrs.get("bn", True), attrs.get("bias", False))

    def cost(self, attrs, cins, areas):
        return conv_cost(cins[0], attrs["c"], attrs.get("k", 1), self.out_area(attrs, areas),
                         attrs.get("g", 1), attrs.get("bn", True), attrs.get("bias", False),
                         attrs.get("act", "silu"))


class RepConvOp(OpSpec):
    """act(BN(conv k×k) + BN(conv 1×1) [+ BN(x)]); the identity branch exists when
    c_in == c and s == 1. attrs: c, k=3, s=1, g=1, act."""

    name = "RepConv"
    attrs_required = ("c",)

    @staticmethod
    def has_identity(attrs, cins) -> bool:
        return bool(attrs.get("identity", cins[0] == attrs["c"] and attrs.get("s", 1) == 1))

    def out_channels(self, attrs, cins):
        return attrs["c"]

    def scale(self, attrs):
        return attrs.get("s", 1)

    def params(self, attrs, cins):
        c1, c2, k, g = cins[0], attrs["c"], attrs.get("k", 3), attrs.get("g", 1)
        p = conv_params(c1, c2, k, g) + conv_params(c1, c2, 1, g)
        return p + (2 * c1 if self.has_identity(attrs, cins) else 0)

    def cost(self, attrs, cins, areas):
        c1, c2, k, g = cins[0], attrs["c"], attrs.get("k", 3), attrs.get("g", 1)
        area = self.out_area(attrs, areas)
        act = attrs.get("act", "silu")
        dense = conv_cost(c1, c2, k, area, g, act=act)  # the sum is activated once
        one = conv_cost(c1, c2, 1, area, g)
        total = dense + Cost(conv_macs=one.conv_macs, bn_elems=one.bn_elems)
        if self.has_identity(attrs, cins):
            total = total + Cost(bn_elems=areas[0] * c1)
        return total


class MPOp(OpSpec):
    """MaxPool kernel = stride = k (default 2)."""

    name = "MP"

    def scale(self, attrs):
        return attrs.get("k", 2)


class SPOp(OpSpec):
    """MaxPool kernel k, stride s (default 1), padding k//2."""

    name = "SP"

    def scale(self, attrs):
        return attrs.get("s", 1)


class ConcatOp(OpSpec):
    """Channel concat; width = Σ input widths (never restated)."""

    name = "Concat"
    arity = (1, None)

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if attrs.get("dim", 1) != 1:
            raise OpError("only channel concatenation (dim=1) is supported")
        if len(set(strides)) > 1:
            raise OpError(f"inputs have different strides {list(strides)}; concat needs equal "
                          f"spatial sizes")

    def out_channels(self, attrs, cins):
        total = cins[0]
        for c in cins[1:]:
            total = total + c
        return total


class ShortcutOp(OpSpec):
    """Element-wise sum of two tensors of equal shape."""

    name = "Shortcut"
    arity = (2, 2)

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if cins[0] != cins[1]:
            raise OpError(f"inputs have {cins[0]} and {cins[1]} channels; a shortcut adds "
                          f"tensors of equal width")
        if strides[0] != strides[1]:
            raise OpError(f"inputs have strides {strides[0]} and {strides[1]}")


class UpsampleOp(OpSpec):
    """Nearest-neighbour upsample by ``scale`` (default 2)."""

    name = "Upsample"

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if attrs.get("mode", "nearest") != "nearest":
            raise OpError("only nearest upsampling is supported")

    def scale(self, attrs):
        from fractions import Fraction
        return Fraction(1, attrs.get("scale", 2))

    def out_area(self, attrs, areas):
        f = attrs.get("scale", 2)
        return areas[0] * f * f

    def cost(self, attrs, cins, areas):
        return Cost(upsample_elems=self.out_area(attrs, areas) * cins[0])


class ReOrgOp(OpSpec):
    """Space-to-depth by 2: 4× channels, stride 2."""

    name = "ReOrg"

    def out_channels(self, attrs, cins):
        return 4 * cins[0]

    def scale(self, attrs):
        return 2


class CompositeOp(OpSpec):
    """An op made of fixed internal convs (DownC, SPPCSPC): params and cost are the sums over
    ``convs()``. attrs: c, act, bn=True (False: the BN-folded form, convs carry a bias)."""

    attrs_required = ("c",)

    def out_channels(self, attrs, cins):
        return attrs["c"]

    def convs(self, attrs, cins) -> list[tuple[Any, Any, int, bool]]:
        """(c_in, c_out, k, at_output_resolution) of each internal conv."""
        raise NotImplementedError

    def params(self, attrs, cins):
        bn, total = attrs.get("bn", True), 0
        for a, b, k, _ in self.convs(attrs, cins):
            total = total + conv_params(a, b, k, bn=bn, bias=not bn)
        return total

    def cost(self, attrs, cins, areas):
        bn, total = attrs.get("bn", True), Cost()
        out = self.out_area(attrs, areas)
        for a, b, k, at_out in self.convs(attrs, cins):
            total = total + conv_cost(a, b, k, out if at_out else areas[0], bn=bn, bias=not bn,
                                      act=attrs.get("act", "silu"))
        return total


class DownCOp(CompositeOp):
    """[conv3×3/k(conv1×1 c1→c1) ‖ conv1×1(maxpool_k)], each c/2 wide. attrs: c, k=2, act, bn."""

    name = "DownC"

    def scale(self, attrs):
        return attrs.get("k", 2)

    def convs(self, attrs, cins):
        c1, h = cins[0], half(attrs["c"])
        return [(c1, c1, 1, False), (c1, h, 3, True), (c1, h, 1, True)]


class SPPCSPCOp(CompositeOp):
    """CSP spatial-pyramid pooling (max-pools 5, 9, 13), hidden width = c. attrs: c, act, bn."""

    name = "SPPCSPC"

    def convs(self, attrs, cins):
        c1, c = cins[0], attrs["c"]
        npool = len(attrs.get("k", (5, 9, 13)))
        # cv1..cv7; cv5 reads the concat of x1 and its npool max-pools
        return [(c1, c, 1, False), (c1, c, 1, False), (c, c, 3, False), (c, c, 1, False),
                ((npool + 1) * c, c, 1, False), (c, c, 3, False), (2 * c, c, 1, False)]


class ImplicitAOp(OpSpec):
    """x + a (a: one learned value per channel)."""

    name = "ImplicitA"

    def params(self, attrs, cins):
        return cins[0]


class ImplicitMOp(ImplicitAOp):
    """x · m (m: one learned value per channel)."""

    name = "ImplicitM"


class DetectOp(OpSpec):
    """YOLO head: a 1×1 conv with bias per level. attrs: nc, anchors (per-level flat lists)."""

    name = "Detect"
    arity = (1, None)
    is_head = True
    attrs_required = ("nc", "anchors")
    lead_implicit = False   # IDetect: ImplicitA before and ImplicitM after each lead conv
    aux = False             # IAuxDetect: a second set of inputs feeding plain 1×1 convs

    @staticmethod
    def no(attrs) -> Any:
        na = len(attrs["anchors"][0]) // 2
        return na * (attrs["nc"] + 5)

    def nl(self, attrs) -> int:
        return len(attrs["anchors"])

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        anchors = attrs["anchors"]
        if not anchors or len({len(a) for a in anchors}) != 1 or len(anchors[0]) % 2:
            raise OpError("anchors must be per-level lists of (w, h) pairs, equal count per "
                          "level")
        if isinstance(attrs["nc"], int) and attrs["nc"] < 1:
            raise OpError(f"nc={attrs['nc']} must be at least 1")
        want = self.nl(attrs) * (2 if self.aux else 1)
        if len(cins) != want:
            raise OpError(f"{len(anchors)} anchor levels need {want} inputs, got {len(cins)}")

    def out_channels(self, attrs, cins):
        return self.no(attrs)

    def params(self, attrs, cins):
        no, total = self.no(attrs), 0
        for c in cins:  # lead (and aux) 1×1 convs with bias
            total = total + conv_params(c, no, 1, bn=False, bias=True)
        if self.lead_implicit:
            for c in cins[: self.nl(attrs)]:
                total = total + c + no  # ImplicitA(c_in) + ImplicitM(no)
        return total

    def cost(self, attrs, cins, areas):
        no, total = self.no(attrs), Cost()
        for c, a in zip(cins, areas):
            total = total + conv_cost(c, no, 1, a, bn=False, bias=True)
        return total


class IDetectOp(DetectOp):
    name = "IDetect"
    lead_implicit = True


class IAuxDetectOp(IDetectOp):
    name = "IAuxDetect"
    aux = True


CATALOG: dict[str, OpSpec] = {spec.name: spec for spec in (
    ConvOp(), RepConvOp(), MPOp(), SPOp(), ConcatOp(), ShortcutOp(), UpsampleOp(), ReOrgOp(),
    DownCOp(), SPPCSPCOp(), ImplicitAOp(), ImplicitMOp(), DetectOp(), IDetectOp(),
    IAuxDetectOp())}


def get(op: str, where: str = "") -> OpSpec:
    """The spec of ``op``; an unknown op is a user error naming the place."""
    try:
        return CATALOG[op]
    except KeyError:
        place = f"{where}: " if where else ""
        raise UserError(f"{place}unknown op {op!r}; known ops: {', '.join(sorted(CATALOG))}") \
            from None


# ----- ops added for scaling (symbolic depth) and the grouped E-ELAN (paper §3.1, Fig. 2d) ----
def _times(cost: Cost, m: Any) -> Cost:
    """Cost of ``m`` identical layers: every count × m (m may be a sympy expression)."""
    return Cost(*(getattr(cost, f.name) * m for f in fields(Cost)))


class ElanChainOp(OpSpec):
    """An ELAN 3×3 chain with a (possibly symbolic) number of stages, used by symbolic depth
    scaling where a node count cannot be symbolic: ``stages·step`` convs k×k of width ``c``
    (the first reads the block's cv2 output, c_in wide; the rest read c), the last conv of
    every stage tapped, so out = c·stages (the block's concat adds cv2 and cv1 beside it).
    params = P(c_in→c) + (stages·step − 1)·P(c→c), affine in ``stages``; the same for cost.
    attrs: c, stages, step=1, k=3, act, bn=True, bias=False."""

    name = "ElanChain"
    attrs_required = ("c", "stages")

    def out_channels(self, attrs, cins):
        return attrs["c"] * attrs["stages"]

    def _conv(self, attrs):
        return dict(k=attrs.get("k", 3), bn=attrs.get("bn", True), bias=attrs.get("bias", False))

    def params(self, attrs, cins):
        c, rest = attrs["c"], attrs["stages"] * attrs.get("step", 1) - 1
        return (conv_params(cins[0], c, **self._conv(attrs))
                + rest * conv_params(c, c, **self._conv(attrs)))

    def cost(self, attrs, cins, areas):
        c, rest = attrs["c"], attrs["stages"] * attrs.get("step", 1) - 1
        kw = dict(self._conv(attrs), act=attrs.get("act", "silu"))
        return (conv_cost(cins[0], c, out_area=areas[0], **kw)
                + _times(conv_cost(c, c, out_area=areas[0], **kw), rest))


class ShuffleOp(OpSpec):
    """E-ELAN shuffle: the input is ``parts`` concatenated tensors, each made of ``g`` equal
    groups; regroup so that group j of every part comes together (view (parts, g, C/(parts·g))
    → transpose → (g, parts, ·)). No parameters, no arithmetic. attrs: g, parts."""

    name = "Shuffle"
    attrs_required = ("g", "parts")

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        n = attrs["g"] * attrs["parts"]
        if isinstance(cins[0], int) and cins[0] % n:
            raise OpError(f"{cins[0]} channels do not split into parts={attrs['parts']} × "
                          f"g={attrs['g']} equal groups")


class GroupSumOp(OpSpec):
    """E-ELAN merge cardinality: split the channels into ``g`` equal groups and add them
    (out = c_in / g). No parameters; the additions are not counted by any FLOP convention
    (thop counts none for tensor adds either). attrs: g."""

    name = "GroupSum"
    attrs_required = ("g",)

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if isinstance(cins[0], int) and cins[0] % attrs["g"]:
            raise OpError(f"{cins[0]} channels do not split into g={attrs['g']} equal groups")

    def out_channels(self, attrs, cins):
        return cins[0] / attrs["g"] if not isinstance(cins[0], int) else cins[0] // attrs["g"]


CATALOG.update({spec.name: spec for spec in (ElanChainOp(), ShuffleOp(), GroupSumOp())})
