"""Exact float rewrites that make a transform quantizable and fast under int8 / bf16.

* A stride-``s`` ``ConvTranspose2d`` whose output is exactly ``s`` times its input equals a
  stride-1 convolution producing ``s*s`` phases per output channel followed by
  ``PixelShuffle(s)`` (the "sub-pixel" form). Quantized, that convolution runs on fbgemm's fast
  int8 conv kernels, where the native quantized transposed convolution is slower than float32.
* GDN / IGDN at inference is ``x * rsqrt(conv1x1(x**2))`` (``sqrt`` for IGDN) with the effective
  ``gamma`` as the 1x1 kernel and ``beta`` as its bias: :class:`ConvGDN` holds them precomputed.

Each sub-pixel weight position maps to at most one tap of the transposed kernel (or is a
structural zero), so :func:`subpixel_index` converts weights both ways without loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from imgcomp.nn.gdn import GDN

__all__ = [
    "ConvGDN",
    "SubpixelConvTranspose2d",
    "SubpixelGeometry",
    "compact_subpixel_weight",
    "expand_subpixel_weight",
    "subpixel_geometry",
    "subpixel_index",
]


@dataclass(frozen=True)
class SubpixelGeometry:
    """Shape of the sub-pixel form of a transposed convolution (square stride ``s``)."""

    in_channels: int
    out_channels: int
    stride: int
    kernel: tuple[int, int]  # the transposed conv's kernel
    padding: tuple[int, int]  # the transposed conv's padding
    reach: tuple[int, int]  # D: the sub-pixel conv is (2D+1)-wide with padding D

    @property
    def conv_kernel(self) -> tuple[int, int]:
        return (2 * self.reach[0] + 1, 2 * self.reach[1] + 1)


def _reach(k: int, s: int, p: int) -> int:
    """Largest |j - i| linking output phase position i to input j (tap t = a + p - s*(j - i))."""
    return max(abs(d) for a in range(s) for d in range(-k - p, k + p + 1) if 0 <= a + p - s * d < k)


def subpixel_geometry(deconv: nn.ConvTranspose2d) -> SubpixelGeometry | None:
    """The sub-pixel geometry of ``deconv``, or None when it has none (output not ``s`` x input,
    groups, dilation, unequal strides)."""
    sh, sw = deconv.stride
    if sh != sw or sh < 1 or deconv.groups != 1 or deconv.dilation != (1, 1):
        return None
    if deconv.padding_mode != "zeros" or isinstance(deconv.padding, str):
        return None
    kh, kw = deconv.kernel_size
    ph, pw = deconv.padding
    oph, opw = deconv.output_padding
    # output = (H - 1) s - 2p + k + op must be s * H
    if kh + oph - 2 * ph != sh or kw + opw - 2 * pw != sw:
        return None
    return SubpixelGeometry(
        deconv.in_channels,
        deconv.out_channels,
        sh,
        (kh, kw),
        (ph, pw),
        (_reach(kh, sh, ph), _reach(kw, sw, pw)),
    )


def _phase_taps(k: int, s: int, p: int, reach: int) -> list[list[int]]:
    """taps[a][d + reach]: transposed-kernel tap feeding phase a from input offset d, or -1."""
    return [
        [t if 0 <= (t := a + p - s * d) < k else -1 for d in range(-reach, reach + 1)]
        for a in range(s)
    ]


def subpixel_index(g: SubpixelGeometry) -> Tensor:
    """Flat index into the transposed weight [Cin, Cout, kh, kw] for every element of the
    sub-pixel weight [Cout*s*s, Cin, 2Dh+1, 2Dw+1] (output channel ``c*s*s + a_h*s + a_w``, the
    order ``PixelShuffle`` reads), -1 at structural zeros."""
    s, (kh, kw) = g.stride, g.kernel
    th = torch.tensor(_phase_taps(kh, s, g.padding[0], g.reach[0]))  # [s, KH]
    tw = torch.tensor(_phase_taps(kw, s, g.padding[1], g.reach[1]))  # [s, KW]
    c = torch.arange(g.out_channels).view(-1, 1, 1, 1, 1, 1)
    i = torch.arange(g.in_channels).view(1, 1, 1, -1, 1, 1)
    tap_h = th.view(1, s, 1, 1, -1, 1)
    tap_w = tw.view(1, 1, s, 1, 1, -1)
    flat = ((i * g.out_channels + c) * kh + tap_h) * kw + tap_w
    flat = torch.where((tap_h < 0) | (tap_w < 0), torch.tensor(-1), flat)
    kh2, kw2 = g.conv_kernel
    return flat.reshape(g.out_channels * s * s, g.in_channels, kh2, kw2)


def expand_subpixel_weight(weight: Tensor, g: SubpixelGeometry) -> Tensor:
    """Sub-pixel conv weight from a transposed-conv weight (any dtype; zeros where no tap)."""
    idx = subpixel_index(g).to(weight.device)
    taken = weight.reshape(-1)[idx.clamp(min=0)]
    return torch.where(idx >= 0, taken, torch.zeros((), dtype=weight.dtype, device=weight.device))


def compact_subpixel_weight(weight: Tensor, g: SubpixelGeometry) -> Tensor:
    """Inverse of :func:`expand_subpixel_weight`: the transposed-conv weight [Cin, Cout, kh, kw]."""
    idx = subpixel_index(g).to(weight.device)
    keep = idx >= 0
    out = torch.zeros(
        g.in_channels * g.out_channels * g.kernel[0] * g.kernel[1], dtype=weight.dtype
    )
    out[idx[keep]] = weight[keep]
    return out.reshape(g.in_channels, g.out_channels, *g.kernel)


class SubpixelConvTranspose2d(nn.Module):
    """A transposed convolution rewritten as ``PixelShuffle(s)(conv(x))`` (same function)."""

    def __init__(self, deconv: nn.ConvTranspose2d, geometry: SubpixelGeometry) -> None:
        super().__init__()
        g = geometry
        self.geometry = g
        self.conv = nn.Conv2d(
            g.in_channels, g.out_channels * g.stride**2, g.conv_kernel, padding=g.reach
        )
        with torch.no_grad():
            self.conv.weight.copy_(expand_subpixel_weight(deconv.weight.detach().float(), g))
            if deconv.bias is None:
                self.conv.bias.zero_()
            else:
                self.conv.bias.copy_(deconv.bias.detach().float().repeat_interleave(g.stride**2))
        self.shuffle = nn.PixelShuffle(g.stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


class ConvGDN(nn.Module):
    """Inference GDN / IGDN with its effective parameters frozen into a 1x1 convolution."""

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        c = gdn.channels
        self.inverse = gdn.inverse
        self.norm = nn.Conv2d(c, c, 1)
        with torch.no_grad():
            self.norm.weight.copy_(gdn.effective_gamma().detach().reshape(c, c, 1, 1))
            self.norm.bias.copy_(gdn.effective_beta().detach())

    def forward(self, x: Tensor) -> Tensor:
        n = self.norm(x * x)
        return x * (torch.sqrt(n) if self.inverse else torch.rsqrt(n))

    def extra_repr(self) -> str:
        return f"inverse={self.inverse}"
