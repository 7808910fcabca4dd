"""PyTorch modules for every op of the IR catalog.

Each module mirrors one IR op. Sub-module and parameter names follow the official
implementation's state_dict layout (``conv``/``bn``, ``rbr_dense``/``rbr_1x1``/``rbr_identity``,
``cv1``..``cv7``, ``m``/``m2``/``ia``/``im``, buffers ``anchors``/``anchor_grid``) so that
official checkpoints map onto our models key for key. Nothing here monkey-patches ``forward``:
the deploy form of a module is a different module produced by a pass.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...ir import ops

# Constructor defaults come from the op catalog (one source of truth for attribute defaults).
_CONV, _REP = ops.get("Conv").schema, ops.get("RepConv").schema
_MP, _SP, _CAT, _UP = (ops.get(o).schema for o in ("MP", "SP", "Concat", "Upsample"))
_DOWNC, _SPP = ops.get("DownC").schema, ops.get("SPPCSPC").schema
# BatchNorm settings of the official training recipe (set by its initialize_weights()).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def make_act(name: str) -> nn.Module:
    """Activation module from its IR name ('silu', 'leaky' = LeakyReLU(0.1), 'identity')."""
    if name == "silu":
        return nn.SiLU()
    if name == "leaky":
        return nn.LeakyReLU(0.1)
    if name == "relu":
        return nn.ReLU()
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected one of {ops.ACTIVATIONS}")


def batchnorm(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class Conv(nn.Module):
    """Conv2d → BatchNorm → activation (training form) or Conv2d+bias → activation (BN folded).

    ``bn=False, bias=True`` is the form the BN-folding pass produces; the module keeps the
    attribute names (``conv``, ``bn``, ``act``) so structure and state_dict stay predictable.
    """

    def __init__(self, c1: int, c2: int, k: int = _CONV["k"], s: int = _CONV["s"],
                 g: int = _CONV["g"], act: str = _CONV["act"], bn: bool = _CONV["bn"],
                 bias: bool = _CONV["bias"]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=bias)
        self.bn = batchnorm(c2) if bn else nn.Identity()
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class RepConv(nn.Module):
    """RepVGG-style block: act(BN(conv3x3) + BN(conv1x1) [+ BN(x) when c1 == c2 and s == 1]).

    The re-parameterization pass turns it into one 3×3 ``Conv`` with bias (``deploy`` form).
    """

    def __init__(self, c1: int, c2: int, k: int = _REP["k"], s: int = _REP["s"],
                 g: int = _REP["g"], act: str = _REP["act"],
                 identity: bool | None = _REP["identity"]) -> None:
        super().__init__()
        if identity is None:
            identity = c1 == c2 and s == 1
        self.rbr_identity = batchnorm(c1) if identity else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False),
                                       batchnorm(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False),
                                     batchnorm(c2))
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)


class MP(nn.Module):
    """Max-pool with kernel = stride = k (the ``MP`` of the official cfgs)."""

    def __init__(self, k: int = _MP["k"]) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class SP(nn.Module):
    """Same-size max-pool (stride s, padding k//2): the SPP branches of yolov7-tiny."""

    def __init__(self, k: int = _SP["k"], s: int = _SP["s"]) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class Concat(nn.Module):
    def __init__(self, dim: int = _CAT["dim"]) -> None:
        super().__init__()
        self.d = dim

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(xs), self.d)


class Shortcut(nn.Module):
    """Element-wise sum of two equal-shape tensors (E-ELAN's two-branch merge in E6E)."""

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return xs[0] + xs[1]


class Upsample(nn.Module):
    def __init__(self, scale: int = _UP["scale"]) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=float(self.scale), mode="nearest")


class ReOrg(nn.Module):
    """Space-to-depth by 2 (the P6 stem): channel order as in the official cfgs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2],
                          x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


class DownC(nn.Module):
    """Downsampling by k: [conv3x3/s(conv1x1(x)) ‖ conv1x1(maxpool_k(x))], each c2/2 wide."""

    def __init__(self, c1: int, c2: int, k: int = _DOWNC["k"], act: str = _DOWNC["act"],
                 bn: bool = _DOWNC["bn"]) -> None:
        super().__init__()
        f = dict(act=act, bn=bn, bias=not bn)
        self.cv1 = Conv(c1, c1, 1, 1, **f)
        self.cv2 = Conv(c1, c2 // 2, 3, k, **f)
        self.cv3 = Conv(c1, c2 // 2, 1, 1, **f)
        self.mp = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), dim=1)


class SPPCSPC(nn.Module):
    """CSP spatial-pyramid pooling with max-pools of kernels k; hidden width c_ = c2."""

    def __init__(self, c1: int, c2: int, k: Sequence[int] = _SPP["k"],
                 act: str = _SPP["act"], bn: bool = _SPP["bn"]) -> None:
        super().__init__()
        c_ = c2
        f = dict(act=act, bn=bn, bias=not bn)
        self.cv1 = Conv(c1, c_, 1, 1, **f)
        self.cv2 = Conv(c1, c_, 1, 1, **f)
        self.cv3 = Conv(c_, c_, 3, 1, **f)
        self.cv4 = Conv(c_, c_, 1, 1, **f)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv((len(k) + 1) * c_, c_, 1, 1, **f)
        self.cv6 = Conv(c_, c_, 3, 1, **f)
        self.cv7 = Conv(2 * c_, c2, 1, 1, **f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        y2 = self.cv2(x)
        return self.cv7(torch.cat((y1, y2), dim=1))


class ImplicitA(nn.Module):
    """YOLOR additive implicit knowledge: x + a, a learned per channel (init N(0, .02))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.zeros(1, c, 1, 1))
        nn.init.normal_(self.implicit, mean=0.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(nn.Module):
    """YOLOR multiplicative implicit knowledge: x · m, m learned per channel (init N(1, .02))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.ones(1, c, 1, 1))
        nn.init.normal_(self.implicit, mean=1.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x


def _anchor_tensor(anchors: Sequence[Sequence[float]]) -> torch.Tensor:
    """(nl, na, 2) anchors in pixels from the cfg's flat per-level lists."""
    return torch.tensor(anchors, dtype=torch.float32).view(len(anchors), -1, 2)


class Detect(nn.Module):
    """YOLO head: one 1×1 conv per level, then the grid decode in eval mode.

    Training mode returns the raw per-level outputs shaped (B, na, H, W, 5 + nc); eval mode
    returns ``(decoded (B, N, 5 + nc), raw)``, the official output format. ``anchors`` holds the
    anchors in grid units (pixels / stride), ``anchor_grid`` in pixels, as in official files.
    Subclasses add implicit layers (IDetect) or auxiliary heads (IAuxDetect).
    """

    def __init__(self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int],
                 strides: Sequence[int]) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        a = _anchor_tensor(anchors)
        stride = torch.tensor([float(s) for s in strides])
        self.register_buffer("stride", stride, persistent=False)
        self.register_buffer("anchors", a / stride.view(-1, 1, 1))
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch[: self.nl])

    def head(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The per-level lead conv (overridden by IDetect to add the implicit layers)."""
        return self.m[i](x)

    def _to_raw(self, x: torch.Tensor) -> torch.Tensor:
        bs, _, ny, nx = x.shape
        return x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def _decode(self, i: int, raw: torch.Tensor) -> torch.Tensor:
        bs, _, ny, nx, _ = raw.shape
        yv, xv = torch.meshgrid(torch.arange(ny, device=raw.device),
                                torch.arange(nx, device=raw.device), indexing="ij")
        grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).to(raw.dtype)
        y = raw.sigmoid()
        # xy = (2σ - 0.5 + grid) · stride ; wh = (2σ)² · anchor  (YOLOv5/v7 decode)
        xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[i]
        wh = (y[..., 2:4] * 2.0) ** 2 * self.anchor_grid[i]
        y = torch.cat((xy, wh, y[..., 4:]), -1)
        return y.view(bs, -1, self.no)

    def forward(self, xs: Sequence[torch.Tensor]):
        raw = [self._to_raw(self.head(i, xs[i])) for i in range(self.nl)]
        if self.training:
            return raw
        return torch.cat([self._decode(i, r) for i, r in enumerate(raw)], 1), raw


class IDetect(Detect):
    """Detect with YOLOR implicit knowledge: m(ia(x)) then im(·) per level."""

    def __init__(self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int],
                 strides: Sequence[int]) -> None:
        super().__init__(nc, anchors, ch, strides)
        self.ia = nn.ModuleList(ImplicitA(c) for c in ch[: self.nl])
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch[: self.nl])

    def head(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.im[i](self.m[i](self.ia[i](x)))


class IAuxDetect(IDetect):
    """IDetect on the first nl inputs (lead head) plus plain 1×1 convs ``m2`` on the next nl
    (auxiliary head, trained with coarse labels). Training returns lead + aux raw outputs;
    eval returns only the lead head's, like the official model.
    """

    def __init__(self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int],
                 strides: Sequence[int]) -> None:
        super().__init__(nc, anchors, ch, strides)
        self.m2 = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch[self.nl:])

    def forward(self, xs: Sequence[torch.Tensor]):
        lead = super().forward(xs[: self.nl])
        if not self.training:
            return lead
        aux = [self._to_raw(self.m2[i](xs[self.nl + i])) for i in range(self.nl)]
        return lead + aux


class Shuffle(nn.Module):
    """E-ELAN shuffle: (parts, g, c) channel blocks → (g, parts, c), so each of the ``g``
    groups holds one slice of every concatenated part (paper Fig. 2d)."""

    def __init__(self, g: int, parts: int) -> None:
        super().__init__()
        self.g, self.parts = g, parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = x.view(b, self.parts, self.g, c // (self.parts * self.g), h, w).transpose(1, 2)
        return y.reshape(b, c, h, w)


class GroupSum(nn.Module):
    """E-ELAN merge cardinality: sum of the ``g`` equal channel groups."""

    def __init__(self, g: int) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.g, c // self.g, h, w).sum(1)
