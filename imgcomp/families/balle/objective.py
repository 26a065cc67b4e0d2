"""The Ballé family's training objective (``rd``): CompressAI's rate-distortion loss.

``loss = lmbda * 255**2 * MSE + bpp`` on :func:`rd_forward`, which runs a Ballé model's own steps
with bf16 autocast limited to the transforms ``g_a`` and ``g_s``: the hyper transforms and all
likelihoods stay in float32, where rate precision lives. With ``amp=False`` it is bit-identical to
``model(x)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imgcomp.families.balle.model import (
    BalleModel,
    FactorizedPrior,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from imgcomp.train.objectives import psnr_from_mse

__all__ = ["RateDistortion", "rd_forward", "rd_loss"]


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


@dataclass(frozen=True)
class RateDistortion:
    """``rd``: ``lmbda * 255**2 * MSE + bpp`` (CompressAI's convention) on :func:`rd_forward`."""

    name: ClassVar[str] = "rd"
    progress_keys: ClassVar[tuple[str, ...]] = ("bpp", "psnr")

    lmbda: float = 0.0067

    def __post_init__(self) -> None:
        v = self.lmbda
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v == v and v > 0):
            raise ValueError(f"lmbda must be a number > 0.0, got {v!r}")

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        """:func:`rd_forward`."""
        return rd_forward(model, x, amp=amp)  # type: ignore[arg-type]

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """:func:`rd_loss`, with ``mse`` and ``bpp`` as metrics."""
        loss, mse, bpp = rd_loss(x, out["x_hat"], out["likelihoods"], self.lmbda)
        return loss, {"mse": mse, "bpp": bpp}

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        """``psnr`` of the averaged ``mse``."""
        return {"psnr": psnr_from_mse(means["mse"])}
