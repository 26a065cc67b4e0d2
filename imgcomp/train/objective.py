"""The rate-distortion training forward pass and loss (CompressAI's convention).

``rd_forward`` runs the model's own steps with bf16 autocast limited to the transforms ``g_a``
and ``g_s``: the hyper transforms and all likelihoods stay in float32, where rate precision lives.
With ``amp=False`` it is bit-identical to ``model(x)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from imgcomp.nn.balle import BalleModel, FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior

__all__ = ["psnr_from_mse", "rd_forward", "rd_loss"]


def rd_forward(model: BalleModel, x: Tensor, amp: bool = False) -> dict[str, Any]:
    """Training-mode forward: ``{"x_hat": float32, "likelihoods": {name: float32}}``."""
    model.check_input(x)
    dev = x.device.type
    fast = torch.autocast(dev, dtype=torch.bfloat16, enabled=amp)
    exact = torch.autocast(dev, enabled=False)
    with fast:
        y = model.analysis(x)
    with exact:
        y = y.float()
        if isinstance(model, (ScaleHyperprior, MeanScaleHyperprior)):
            z = model.hyper_analysis(y)
            z_hat, z_lik = model.z_prior(z)
            scales, means = model.hyper_synthesis(z_hat)
            y_hat, y_lik = model.y_conditional(y, scales, means)
            likelihoods = {"y": y_lik, "z": z_lik}
        elif isinstance(model, FactorizedPrior):
            y_hat, y_lik = model.y_prior(y)
            likelihoods = {"y": y_lik}
        else:
            raise TypeError(f"no training forward for {type(model).__name__}")
    with fast:
        x_hat = model.synthesis(y_hat)
    return {"x_hat": x_hat.float(), "likelihoods": likelihoods}


def rd_loss(
    x: Tensor, x_hat: Tensor, likelihoods: dict[str, Tensor], lmbda: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, mse, bpp)`` with ``loss = lmbda * 255**2 * mse + bpp``, all float32 scalars.

    ``bpp = sum(-log2 likelihoods) / (B * H * W)``; mse is over [0, 1] pixel values.
    """
    b, _, h, w = x.shape
    bits = sum((-torch.log2(lik.float())).sum() for lik in likelihoods.values())
    bpp = bits / (b * h * w)
    mse = torch.mean((x_hat.float() - x.float()) ** 2)
    return lmbda * 255.0**2 * mse + bpp, mse, bpp


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error over [0, 1] values (inf for 0)."""
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)
