"""The op catalog: every layer type of the official training and deploy cfgs, in one place.

Each op declares its attributes and their defaults once (``OpSpec.schema``; read them with
``attr``/``complete``, never restate a default elsewhere), and knows, as pure functions of
its attributes and input channels: output channels, spatial stride, parameter count and cost. The functions use only + - * / on their inputs, so
they work unchanged on ints and on sympy expressions (closed-form scaling and reports).

Cost is kept as separate counts (conv MACs, BatchNorm elements, conv-bias outputs,
LeakyReLU elements, nearest-upsample outputs, conv output activations) because the three
FLOP conventions weight them differently (see ``analysis.CONVENTIONS``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, Mapping, Sequence

from ..errors import UserError

ACTIVATIONS = ("silu", "leaky", "relu", "identity")


# Value rules of the integer attributes (inclusive bounds) and the boolean ones, declared once
# for every reader: graph validation (so the DSL, YAML and checkpoint specs all get them).
INT_RANGES: Mapping[str, tuple[int, int]] = {
    "k": (1, 63), "s": (1, 16), "g": (1, 1 << 16), "scale": (1, 16), "step": (1, 16),
    "parts": (1, 256), "stages": (1, 256)}
BOOL_ATTRS = ("bn", "bias")


def check_value(name: str, v: Any) -> str | None:
    """Why ``v`` is not a valid value of attribute ``name``; None when it is, or when it is
    symbolic or a width (widths may be exact fractions or sympy expressions)."""
    if name in BOOL_ATTRS:
        return None if isinstance(v, bool) else "must be true or false"
    if name in INT_RANGES:
        lo, hi = INT_RANGES[name]
        items = v if isinstance(v, tuple) and name == "k" else (v,)
        for x in items:
            if isinstance(x, bool) or (isinstance(x, (int, float, Fraction)) and not (
                    isinstance(x, int) and lo <= x <= hi)):
                return f"must be an integer in [{lo}, {hi}]"
    return None


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


def _check_groups(spec: "OpSpec", attrs: Mapping[str, Any], c_in: Any) -> None:
    g, c = spec.attr(attrs, "g"), spec.attr(attrs, "c")
    if g != 1 and all(isinstance(v, int) for v in (g, c, c_in)) and (c_in % g or c % g):
        raise OpError(f"groups g={g} must divide the input width {c_in} and the output width {c}")


class _Required:
    """Marker default of an attribute every node of the op must set."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class OpSpec:
    """Base of all ops: one input, channels and stride unchanged, no parameters, no cost.

    ``schema`` declares the op's attributes and their defaults, once: every reader (DSL,
    YAML, lowering, passes, reports) asks ``attr()`` / ``complete()`` instead of restating a
    default. An attribute not in the schema is an error, so a typo cannot pass silently."""

    name = ""
    arity: tuple[int, int | None] = (1, 1)  # (min, max) number of inputs; None = unbounded
    is_head = False
    schema: Mapping[str, Any] = {}

    @property
    def attrs_required(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.schema.items() if v is REQUIRED)

    def default(self, name: str) -> Any:
        """The declared default of attribute ``name`` (``REQUIRED`` when there is none)."""
        return self.schema[name]

    def attr(self, attrs: Mapping[str, Any], name: str) -> Any:
        """``attrs[name]``, or the declared default when the node leaves it out."""
        if name in attrs:
            return attrs[name]
        default = self.schema[name]  # KeyError: the op has no such attribute (a code bug)
        if default is REQUIRED:
            raise OpError(f"missing attribute {name!r}")
        return default

    def complete(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared attribute, defaults filled in (schema order)."""
        return {k: self.attr(attrs, k) for k in self.schema}

    def check_arity(self, node: Any, n: int) -> None:
        lo, hi = self.arity
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            raise UserError(f"{node.where()}: takes {want} input(s), got {n}")

    def validate(self, attrs: Mapping[str, Any], cins: Sequence[Any], strides: Sequence[Any]) -> None:
        unknown = [a for a in attrs if a not in self.schema]
        if unknown:
            takes = ", ".join(self.schema) or "no attributes"
            raise OpError(f"unknown attribute {unknown[0]!r}; {self.name} takes {takes}")
        for a in self.attrs_required:
            if a not in attrs:
                raise OpError(f"missing attribute {a!r}")
        for a, v in attrs.items():
            why = check_value(a, v)
            if why is not None:
                raise OpError(f"attribute {a}={v!r} {why}")
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
    """Conv2d (+BN) (+bias) + activation; ``bn=False, bias=True`` is the BN-folded form."""

    name = "Conv"
    schema = {"c": REQUIRED, "k": 1, "s": 1, "g": 1, "act": "silu", "bn": True, "bias": False}

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        _check_groups(self, attrs, cins[0])

    def out_channels(self, attrs, cins):
        return attrs["c"]

    def scale(self, attrs):
        return self.attr(attrs, "s")

    def params(self, attrs, cins):
        a = self.complete(attrs)
        return conv_params(cins[0], a["c"], a["k"], a["g"], a["bn"], a["bias"])

    def cost(self, attrs, cins, areas):
        a = self.complete(attrs)
        return conv_cost(cins[0], a["c"], a["k"], self.out_area(attrs, areas), a["g"], a["bn"],
                         a["bias"], a["act"])


class RepConvOp(OpSpec):
    """act(BN(conv k×k) + BN(conv 1×1) [+ BN(x)]). ``identity``: None = the identity branch
    exists when c_in == c and s == 1 (the official RepConv); False = never — **RepConvN**,
    the planned form for a conv that already has a residual or concatenation connection
    (paper §4.1; YAML module ``RepConvN``); True = required (an error where shapes forbid it).
    Both branches count in training params and cost; the fused form is one k×k conv."""

    name = "RepConv"
    schema = {"c": REQUIRED, "k": 3, "s": 1, "g": 1, "act": "silu", "identity": None}

    def identity_possible(self, attrs, cins) -> bool:
        """An identity branch needs the output to have the input's shape: c_in == c, s == 1."""
        return bool(cins[0] == attrs["c"] and self.attr(attrs, "s") == 1)

    def has_identity(self, attrs, cins) -> bool:
        ident = self.attr(attrs, "identity")
        return self.identity_possible(attrs, cins) if ident is None else bool(ident)

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        _check_groups(self, attrs, cins[0])
        ident = self.attr(attrs, "identity")
        if ident is not None and not isinstance(ident, bool):
            raise OpError(f"identity={ident!r} must be null (auto), true or false")
        if ident is True and all(isinstance(v, int) for v in (cins[0], attrs["c"])) \
                and not self.identity_possible(attrs, cins):
            raise OpError(f"identity=True needs c_in == c and s == 1 (got c_in={cins[0]}, "
                          f"c={attrs['c']}, s={self.attr(attrs, 's')}); use identity=False "
                          f"(RepConvN) or leave it unset")

    def out_channels(self, attrs, cins):
        return attrs["c"]

    def scale(self, attrs):
        return self.attr(attrs, "s")

    def params(self, attrs, cins):
        a = self.complete(attrs)
        c1, c2, k, g = cins[0], a["c"], a["k"], a["g"]
        p = conv_params(c1, c2, k, g) + conv_params(c1, c2, 1, g)
        return p + (2 * c1 if self.has_identity(attrs, cins) else 0)

    def cost(self, attrs, cins, areas):
        a = self.complete(attrs)
        c1, c2, k, g = cins[0], a["c"], a["k"], a["g"]
        area = self.out_area(attrs, areas)
        dense = conv_cost(c1, c2, k, area, g, act=a["act"])  # the sum is activated once
        one = conv_cost(c1, c2, 1, area, g)
        total = dense + Cost(conv_macs=one.conv_macs, bn_elems=one.bn_elems)
        if self.has_identity(attrs, cins):
            total = total + Cost(bn_elems=areas[0] * c1)
        return total


class MPOp(OpSpec):
    """MaxPool kernel = stride = k."""

    name = "MP"
    schema = {"k": 2}

    def scale(self, attrs):
        return self.attr(attrs, "k")


class SPOp(OpSpec):
    """MaxPool kernel k, stride s, padding k//2."""

    name = "SP"
    schema = {"k": 3, "s": 1}

    def scale(self, attrs):
        return self.attr(attrs, "s")


class ConcatOp(OpSpec):
    """Channel concat; width = Σ input widths (never restated)."""

    name = "Concat"
    arity = (1, None)
    schema = {"dim": 1}

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if self.attr(attrs, "dim") != 1:
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
    """Nearest-neighbour upsample by ``scale``."""

    name = "Upsample"
    schema = {"scale": 2, "mode": "nearest"}

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if self.attr(attrs, "mode") != "nearest":
            raise OpError("only nearest upsampling is supported")

    def scale(self, attrs):
        return Fraction(1, self.attr(attrs, "scale"))

    def out_area(self, attrs, areas):
        f = self.attr(attrs, "scale")
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
    ``convs()``. ``bn=False`` is the BN-folded form (the convs carry a bias)."""

    def out_channels(self, attrs, cins):
        return attrs["c"]

    def convs(self, attrs, cins) -> list[tuple[Any, Any, int, bool]]:
        """(c_in, c_out, k, at_output_resolution) of each internal conv."""
        raise NotImplementedError

    def params(self, attrs, cins):
        bn, total = self.attr(attrs, "bn"), 0
        for a, b, k, _ in self.convs(attrs, cins):
            total = total + conv_params(a, b, k, bn=bn, bias=not bn)
        return total

    def cost(self, attrs, cins, areas):
        bn, act, total = self.attr(attrs, "bn"), self.attr(attrs, "act"), Cost()
        out = self.out_area(attrs, areas)
        for a, b, k, at_out in self.convs(attrs, cins):
            total = total + conv_cost(a, b, k, out if at_out else areas[0], bn=bn, bias=not bn,
                                      act=act)
        return total


class DownCOp(CompositeOp):
    """[conv3×3/k(conv1×1 c1→c1) ‖ conv1×1(maxpool_k)], each c/2 wide."""

    name = "DownC"
    schema = {"c": REQUIRED, "k": 2, "act": "silu", "bn": True}

    def scale(self, attrs):
        return self.attr(attrs, "k")

    def convs(self, attrs, cins):
        c1, h = cins[0], half(attrs["c"])
        return [(c1, c1, 1, False), (c1, h, 3, True), (c1, h, 1, True)]


class SPPCSPCOp(CompositeOp):
    """CSP spatial-pyramid pooling (max-pool kernels ``k``), hidden width = c."""

    name = "SPPCSPC"
    schema = {"c": REQUIRED, "k": (5, 9, 13), "act": "silu", "bn": True}

    def convs(self, attrs, cins):
        c1, c = cins[0], attrs["c"]
        npool = len(self.attr(attrs, "k"))
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
    schema = {"nc": REQUIRED, "anchors": REQUIRED}
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
    ``g``: every conv a group conv (grouped E-ELAN; c is then all groups' width).
    attrs: c, stages, step=1, k=3, g=1, act, bn=True, bias=False."""

    name = "ElanChain"
    schema = {"c": REQUIRED, "stages": REQUIRED, "step": 1, "k": 3, "s": 1, "g": 1,
              "act": "silu", "bn": True, "bias": False}

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if self.attr(attrs, "s") != 1:
            raise OpError("an ELAN chain has stride 1 (s=1)")
        _check_groups(self, attrs, cins[0])

    def out_channels(self, attrs, cins):
        return attrs["c"] * attrs["stages"]

    def _conv(self, attrs):
        return dict(k=self.attr(attrs, "k"), g=self.attr(attrs, "g"), bn=self.attr(attrs, "bn"),
                    bias=self.attr(attrs, "bias"))

    def params(self, attrs, cins):
        c, rest = attrs["c"], attrs["stages"] * self.attr(attrs, "step") - 1
        return (conv_params(cins[0], c, **self._conv(attrs))
                + rest * conv_params(c, c, **self._conv(attrs)))

    def cost(self, attrs, cins, areas):
        c, rest = attrs["c"], attrs["stages"] * self.attr(attrs, "step") - 1
        kw = dict(self._conv(attrs), act=self.attr(attrs, "act"))
        return (conv_cost(cins[0], c, out_area=areas[0], **kw)
                + _times(conv_cost(c, c, out_area=areas[0], **kw), rest))


class ShuffleOp(OpSpec):
    """E-ELAN shuffle: the input is ``parts`` concatenated tensors, each made of ``g`` equal
    groups; regroup so that group j of every part comes together (view (parts, g, C/(parts·g))
    → transpose → (g, parts, ·)). No parameters, no arithmetic. attrs: g, parts."""

    name = "Shuffle"
    schema = {"g": REQUIRED, "parts": REQUIRED}

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
    schema = {"g": REQUIRED}

    def validate(self, attrs, cins, strides):
        super().validate(attrs, cins, strides)
        if isinstance(cins[0], int) and cins[0] % attrs["g"]:
            raise OpError(f"{cins[0]} channels do not split into g={attrs['g']} equal groups")

    def out_channels(self, attrs, cins):
        return cins[0] / attrs["g"] if not isinstance(cins[0], int) else cins[0] // attrs["g"]


CATALOG.update({spec.name: spec for spec in (ElanChainOp(), ShuffleOp(), GroupSumOp())})
