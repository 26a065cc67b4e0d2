"""A transposed convolution as its exact sub-pixel form: a stride-1 convolution giving ``s*s``
phases per output channel, then ``pixel_shuffle(s)``.

Output pixel ``s*j + a`` of a stride-``s`` transposed convolution (kernel ``k``, padding ``p``,
output exactly ``s`` x its input) sums input ``j + d`` times tap ``a + p - s*d`` over every ``d``
where that tap exists; so phase ``a`` is a correlation of reach ``D = max |d|`` (a
``(2D+1)``-wide kernel, padding ``D``). Every sub-pixel weight is one tap of the transposed
kernel or a structural zero, so the rewrite computes the same function (float sums in another
order). oneDNN runs it faster than the native transposed convolution where the output has few
channels (a synthesis transform's last, RGB layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["SubpixelGeometry", "subpixel_geometry", "subpixel_index", "subpixel_weights"]


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
    """Largest |d| linking an output phase to input offset d (tap t = a + p - s*d)."""
    return max(abs(d) for a in range(s) for d in range(-k - p, k + p + 1) if 0 <= a + p - s * d < k)


def subpixel_geometry(deconv: nn.ConvTranspose2d) -> SubpixelGeometry | None:
    """The sub-pixel geometry of ``deconv``, or None when it has none (output not ``s`` x input,
    groups, dilation, unequal strides, non-zero padding modes)."""
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
    order ``pixel_shuffle`` reads), -1 at structural zeros."""
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


def subpixel_weights(
    deconv: nn.ConvTranspose2d, g: SubpixelGeometry
) -> tuple[Tensor, Tensor | None]:
    """(weight, bias) of the sub-pixel convolution of ``deconv`` (its dtype and device; zeros
    where no tap feeds a phase, the bias repeated over the ``s*s`` phases)."""
    weight = deconv.weight.detach()
    idx = subpixel_index(g).to(weight.device)
    taken = weight.reshape(-1)[idx.clamp(min=0)]
    w = torch.where(idx >= 0, taken, torch.zeros((), dtype=weight.dtype, device=weight.device))
    b = deconv.bias
    return w, None if b is None else b.detach().repeat_interleave(g.stride**2)
