"""Differentiable SSIM for training: the same definition :func:`imgcomp.metrics.ssim` reports.

An 11x11 Gaussian window (sigma 1.5, separable), population covariance, K1 = 0.01, K2 = 0.03,
the map averaged over the 'valid' region (pixels at least 5 from the border) and over channels.
It needs no downloaded weights (unlike LPIPS), which is why the GAN objective can use it as its
perceptual term here. Computed in float32 whatever the inputs' dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SSIM_WINDOW", "ssim_index"]

#: Window side (the metric's); images need both sides at least this long.
SSIM_WINDOW = 11
_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def _band(n: int, device: torch.device) -> Tensor:
    """[n, n - 10] matrix whose column j holds the Gaussian window at rows j..j+10: ``x @ band``
    filters along the last axis, valid region only (a matmul: far faster on the CPU than a
    one-channel convolution, forward and backward)."""
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2.0 * _SIGMA**2))
    g = g / g.sum()
    m = n - SSIM_WINDOW + 1
    band = torch.zeros(n, m, dtype=torch.float64)
    cols = torch.arange(m)
    for k in range(SSIM_WINDOW):
        band[cols + k, cols] = g[k]
    return band.to(device=device, dtype=torch.float32)


def _blur(x: Tensor, bh: Tensor, bw: Tensor) -> Tensor:
    """Separable Gaussian over the last two axes of [..., H, W], valid region only."""
    return bh.transpose(0, 1) @ (x @ bw)


def ssim_index(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of each pair of images in ``x``, ``y`` ([B, C, H, W]): a [B] float32 tensor."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim_index needs two [B, C, H, W] tensors of one shape, got "
            f"{list(x.shape)} and {list(y.shape)}"
        )
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim_index needs sides >= {SSIM_WINDOW}, got {list(x.shape)}")
    b, c, h, w = x.shape
    x, y = x.float(), y.float()
    stats = _blur(torch.cat((x, y, x * x, y * y, x * y)), _band(h, x.device), _band(w, x.device))
    mx, my, xx, yy, xy = stats.chunk(5)
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(b, c, -1).mean(dim=(1, 2))
