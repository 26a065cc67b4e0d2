"""The RNN codec's training objective: L1 of the residual after every iteration, averaged.

As the original ``train.py``: the model runs ``iterations`` residual iterations with stochastic
binarization, and the loss is ``Σ_t mean|res_t| / iterations``, where ``res_t`` is what is left
of ``x - 0.5`` after ``t`` decoder outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imgcomp.train.objectives import psnr_from_mse

__all__ = ["ResidualL1"]


@dataclass(frozen=True)
class ResidualL1:
    """``residual-l1``: the original's loss over ``iterations`` residual iterations."""

    name: ClassVar[str] = "residual-l1"
    progress_keys: ClassVar[tuple[str, ...]] = ("psnr",)

    iterations: int = 16

    def __post_init__(self) -> None:
        v = self.iterations
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 16:
            raise ValueError(f"iterations must be an integer in 1..16, got {v!r}")

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        """The decoder output of every iteration (bf16 autocast with ``amp``)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            outs = model(x, self.iterations)
        return {"outs": [o.float() for o in outs]}

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """The averaged L1, with the final residual's L1 and MSE (of the reconstruction)."""
        res = x.float() - 0.5
        total = x.new_zeros((), dtype=torch.float32)
        for o in out["outs"]:
            res = res - o
            total = total + res.abs().mean()
        return total / len(out["outs"]), {"l1": res.abs().mean(), "mse": (res**2).mean()}

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        """``psnr`` of the final reconstruction's averaged ``mse``."""
        return {"psnr": psnr_from_mse(means["mse"])}
