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

import torch
from torch import Tensor, nn

from imgcomp.nn.gdn import GDN
from imgcomp.nn.subpixel import SubpixelGeometry, subpixel_geometry, subpixel_index

__all__ = [
    "ConvGDN",
    "SubpixelConvTranspose2d",
    "SubpixelGeometry",
    "compact_subpixel_weight",
    "expand_subpixel_weight",
    "subpixel_geometry",
    "subpixel_index",
]


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
        return x * (n.sqrt_() if self.inverse else n.rsqrt_())  # n is fresh: in place

    def extra_repr(self) -> str:
        return f"inverse={self.inverse}"
