"""The RNN codec's training objective: L1 of the residual after every iteration, averaged.

As the original ``train.py``: the model runs ``iterations`` residual iterations with stochastic
binarization, and the loss is ``Σ_t mean|res_t| / iterations``, where ``res_t`` is what is left
of ``x - 0.5`` after ``t`` decoder outputs. ``ssim_weight`` k (0 in the original) adds
``k * (1 - SSIM)`` of each iteration's reconstruction, averaged the same way, for models meant to
be judged on SSIM (the study's metric).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imgcomp.train.objectives import psnr_from_mse
from imgcomp.train.perceptual import ssim_index

__all__ = ["ResidualL1"]


@dataclass(frozen=True)
class ResidualL1:
    """``residual-l1``: the original's loss over ``iterations`` residual iterations."""

    name: ClassVar[str] = "residual-l1"
    progress_keys: ClassVar[tuple[str, ...]] = ("psnr",)

    iterations: int = 16
    ssim_weight: float = 0.0

    def __post_init__(self) -> None:
        v = self.iterations
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 16:
            raise ValueError(f"iterations must be an integer in 1..16, got {v!r}")
        k = self.ssim_weight
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 <= k < float("inf"):
            raise ValueError(f"ssim_weight must be a finite number >= 0, got {k!r}")

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        """The decoder output of every iteration (bf16 autocast with ``amp``)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            outs = model(x, self.iterations)
        return {"outs": [o.float() for o in outs]}

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """The averaged L1 (plus the SSIM term), with the final reconstruction's L1 and MSE."""
        x = x.float()
        res = x - 0.5
        total = x.new_zeros((), dtype=torch.float32)
        ssim = None
        for o in out["outs"]:
            res = res - o
            total = total + res.abs().mean()
            if self.ssim_weight:
                ssim = ssim_index(x - res, x).mean()
                total = total + self.ssim_weight * (1.0 - ssim)
        parts = {"l1": res.abs().mean(), "mse": (res**2).mean()}
        if ssim is not None:
            parts["ssim"] = ssim.detach()
        return total / len(out["outs"]), parts

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        """``psnr`` of the final reconstruction's averaged ``mse``."""
        return {"psnr": psnr_from_mse(means["mse"])}
