"""HiFiC's training objective (``hific-gan``): rate-distortion warm-up, then conditional GAN.

As the original ``Model.compression_loss`` / ``discriminator_loss`` (Justin Tan's code):

* rate: ``lambda * n_bpp`` (the noisy-latent estimate), with ``lambda = lambda_A`` while the
  batch's rounded-latent rate ``q_bpp`` is above ``target_rate`` and ``lambda_B`` below (the
  original's ``target_rate_map`` mechanism). For the first ``schedule_fraction`` of the steps,
  lambda is doubled and the target raised by 1/0.7 (the original's ``lambda_schedule`` and
  ``target_schedule``: the first 50,000 of 1,000,000 steps);
* distortion: ``k_M * MSE`` on a 0..255 scale plus ``k_P`` times a perceptual term. LPIPS needs an
  ImageNet backbone that cannot be downloaded here, so the perceptual term is ``1 - SSIM``
  (:func:`imgcomp.train.perceptual.ssim_index`, the metric the study reports), or none;
* GAN (from ``gan_start`` of the steps on; before it, the warm-up trains the rate-distortion
  model alone, the original's first stage): ``beta`` times the non-saturating generator loss
  ``-log D(x_hat, y_hat)``; the discriminator, conditioned on the detached quantised latents,
  minimises ``-log D(x, y_hat) - log(1 - D(x_hat, y_hat))``.

Deviations from the original, all deliberate: the discriminator steps on the same batch right
after the compression step (the original alternates batches); both stages are one run with a
stage boundary, not two runs with a warm start; the perceptual term is SSIM, not LPIPS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgcomp.train.config import check_float
from imgcomp.train.objectives import psnr_from_mse
from imgcomp.train.perceptual import ssim_index

__all__ = ["HiFiCGAN", "HiFiCStage"]

_PERCEPTUAL = ("ssim", "none")
#: The original's schedules: lambda x2 and target x(1/0.7) for the first 50,000 steps.
_EARLY_LAMBDA, _EARLY_TARGET = 2.0, 1.0 / 0.7


@dataclass(frozen=True)
class HiFiCGAN:
    """``hific-gan``: the original's loss (see the module docstring); defaults are its 'med'
    regime (target 0.30 bpp, lambda_A 1, lambda_B 2^-4, k_M 0.075 * 2^-5, beta 0.15)."""

    name: ClassVar[str] = "hific-gan"
    progress_keys: ClassVar[tuple[str, ...]] = ("bpp", "psnr", "ssim")

    target_rate: float = 0.30
    lambda_A: float = 1.0
    lambda_B: float = 0.0625
    k_M: float = 0.075 * 2**-5
    k_P: float = 1.0
    perceptual: str = "ssim"
    beta: float = 0.15
    gan_start: float = 0.5
    schedule_fraction: float = 0.05

    def __post_init__(self) -> None:
        for name in ("target_rate", "lambda_A", "lambda_B", "k_M", "k_P", "beta"):
            check_float(name, getattr(self, name), low=0.0)
        for name in ("gan_start", "schedule_fraction"):
            check_float(name, getattr(self, name), low=0.0, high=1.0)
        if not self.lambda_A > self.lambda_B:
            raise ValueError(f"lambda_A ({self.lambda_A}) must exceed lambda_B ({self.lambda_B})")
        if self.perceptual not in _PERCEPTUAL:
            raise ValueError(f"perceptual must be one of {_PERCEPTUAL}, got {self.perceptual!r}")

    def at(self, step: int, steps: int) -> HiFiCStage:
        """The loss in force at the 0-based ``step`` of ``steps`` (warm-up or GAN stage)."""
        return HiFiCStage(
            self,
            gan=step >= int(steps * self.gan_start),
            early=step < int(steps * self.schedule_fraction),
        )

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        """Without a schedule (e.g. recovery fine-tuning): the GAN stage when the model has a
        discriminator, else the warm-up stage (exported models have none)."""
        gan = bool(getattr(model, "has_discriminator", False))
        return HiFiCStage(self, gan=gan, early=False).forward(model, x, amp)

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of the stage ``out`` came from."""
        return HiFiCStage(self, gan="gen_logits" in out, early=False).loss(x, out)

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        """``psnr`` of the averaged ``mse``."""
        return {"psnr": psnr_from_mse(means["mse"])}


@dataclass(frozen=True)
class HiFiCStage:
    """:class:`HiFiCGAN` at one step: ``gan`` (the discriminator is in play) and ``early`` (the
    doubled lambda and raised target of the first steps)."""

    objective: HiFiCGAN
    gan: bool
    early: bool

    @property
    def progress_keys(self) -> tuple[str, ...]:
        return self.objective.progress_keys

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        return self.objective.derived(means)

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        """Training forward: transforms under bf16 autocast with ``amp``, the hyperprior and
        every rate in float32; with the GAN, the discriminator's logits of the reconstruction."""
        model.check_input(x, model.downsampling_factor)
        fast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp)
        with fast:
            y = model.Encoder(x)
        with torch.autocast(x.device.type, enabled=False):
            hyper = model.Hyperprior(y.float(), x.shape[-2:])
        with fast:
            x_hat = model.Generator(hyper.y_hat)
        out = {"x_hat": x_hat.float(), "y_hat": hyper.y_hat.detach(), "hyper": hyper}
        if self.gan:
            with fast:
                _, logits = model.Discriminator(out["x_hat"], out["y_hat"])
            out["gen_logits"] = logits.float()
        return out

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """The compression loss: weighted rate + distortion (+ perceptual) (+ beta * G loss)."""
        o = self.objective
        hyper, x_hat = out["hyper"], out["x_hat"]
        target = o.target_rate * (_EARLY_TARGET if self.early else 1.0)
        scale = _EARLY_LAMBDA if self.early else 1.0
        q_bpp, n_bpp = hyper.q_bpp_total.float(), hyper.n_bpp_total.float()
        penalty = torch.where(q_bpp > target, o.lambda_A * scale, o.lambda_B * scale)
        mse = torch.mean((x_hat - x.float()) ** 2)
        ssim = ssim_index(x_hat, x.float()).mean()
        loss = penalty.detach() * n_bpp + o.k_M * 255.0**2 * mse
        if o.perceptual == "ssim":
            loss = loss + o.k_P * (1.0 - ssim)
        gen = x.new_zeros((), dtype=torch.float32)
        if "gen_logits" in out:
            gen = F.softplus(-out["gen_logits"]).mean()  # -log sigmoid: non-saturating
            loss = loss + o.beta * gen
        metrics = {"bpp": q_bpp.detach(), "n_bpp": n_bpp.detach(), "mse": mse.detach()}
        return loss, {**metrics, "ssim": ssim.detach(), "gen": gen.detach()}

    @property
    def adversary_loss(self) -> Any:
        """The discriminator's loss function, in the GAN stage only (else None)."""
        return self._discriminator_loss if self.gan else None

    def _discriminator_loss(
        self, model: nn.Module, x: Tensor, out: dict[str, Any], amp: bool = False
    ) -> Tensor:
        fast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp)
        pair = torch.cat((x.float(), out["x_hat"].detach()))
        with fast:
            _, logits = model.Discriminator(pair, out["y_hat"].repeat(2, 1, 1, 1))
        real, fake = logits.float().chunk(2)
        return F.softplus(-real).mean() + F.softplus(fake).mean()
