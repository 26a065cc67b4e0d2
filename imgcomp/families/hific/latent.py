"""HiFiC's latents as stream sections: input padding, hyper-latent tables, the latent codec.

* **Input padding** (:func:`pad_image`): the original reflect-pads ``x`` bottom / right to
  multiples of 16 and fails for sides of 64 or less (its hyper encoder reflect-pads latents of
  fewer than 5 per side). Here each side goes to ``max(ceil16(side), 80)`` (80: the smallest
  padded side the original accepts, latents of 5, padded to 8 by the latent codec): reflected as
  far as the side allows (a reflection must be shorter than the side), the rest edge-replicated.
  Sides longer than 64 are therefore padded exactly as the original; a 37x50 image becomes
  80x80 (reflect 36 / 30, replicate 7 / 0), a 1x1 image 80x80 by replication.
* **Hyper-latents** ``z`` (``floor(z + 0.5)``, no median offset) are coded with one integer table
  per channel built from :class:`~imgcomp.families.hific.model.HyperpriorDensity`'s own CDF
  (:class:`HyperDensityTables`: the support is where the CDF logits lie within ``+-log(2 / 1e-9
  - 1)``, found by bisection in float64; symbols outside it are escape-coded exactly).
* **Latents** ``y`` (reflect-padded to multiples of 4, as the original) are coded as ``floor(y -
  mu + 0.5)`` with a Gaussian conditional through the scale table :data:`SCALE_TABLE` (the
  original's ``prior_entropy_model`` range, 0.11, HiFiC's sigma bound, to 256, log-spaced, at
  128 levels instead of its 64),
  ``(mu, sigma)`` computed on one CPU thread, and the scale-table index checksum
  (:class:`~imgcomp.codecs.latent.HyperpriorLatent` with ``rounding="floor_half"``,
  ``z_offset="zero"``, ``pad_y=True``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgcomp.codecs.latent import HyperpriorLatent, LatentCodec
from imgcomp.families.hific.model import HiFiC, HyperpriorDensity, round_half_up
from imgcomp.nn.density import MAX_SUPPORT, TAIL_MASS, GaussianConditional, PmfTable, scale_table
from imgcomp.nn.determinism import single_cpu_thread

__all__ = [
    "MIN_PADDED_SIDE",
    "SCALE_TABLE",
    "HyperDensityTables",
    "hific_coding_pass",
    "hific_latent",
    "pad_image",
    "padded_side",
]

#: The smallest padded image side: latents of 5 per side, what the hyper encoder needs.
MIN_PADDED_SIDE = 80
#: The Gaussian conditional's scale levels: the original's (TFC's) range, 0.11 .. 256, at 128
#: levels where it has 64. A scale is coded with the next level up; 64 levels (13% apart) cost
#: 0.6% over the latents' own estimate on Kodak and twice that once pruning shifts the latents,
#: 128 levels (6% apart) about half of that, at twice the (small) tables.
SCALE_TABLE: Tensor = scale_table(0.11, 256.0, 128)
#: Largest |symbol| of a hyper-latent table (its support spans at most MAX_SUPPORT - 1 symbols).
_RADIUS = MAX_SUPPORT // 2 - 1


def padded_side(n: int, multiple: int = 16) -> int:
    """The padded length of an image side ``n``: ``max(ceil(n / multiple) * multiple, 80)``."""
    return max(-(-int(n) // multiple) * multiple, MIN_PADDED_SIDE)


def _pad_axis(x: Tensor, dim: int, target: int) -> Tensor:
    n = x.size(dim)
    pad = target - n
    if pad <= 0:
        return x
    reflect = min(pad, n - 1)
    spec = (0, 0, 0, reflect) if dim == -2 else (0, reflect, 0, 0)
    if reflect:
        x = F.pad(x, spec, mode="reflect")
    rest = pad - reflect
    if rest:
        spec = (0, 0, 0, rest) if dim == -2 else (0, rest, 0, 0)
        x = F.pad(x, spec, mode="replicate")
    return x


def pad_image(x: Tensor, multiple: int = 16) -> Tensor:
    """``x`` [B, 3, H, W] padded bottom / right to :func:`padded_side` (see the module docstring:
    reflection as far as each side allows, edge replication beyond)."""
    x = _pad_axis(x, -2, padded_side(x.size(-2), multiple))
    return _pad_axis(x, -1, padded_side(x.size(-1), multiple))


class HyperDensityTables:
    """What :class:`~imgcomp.codecs.latent.HyperpriorLatent` reads of a z density, for HiFiC's
    :class:`HyperpriorDensity`: ``channels``, ``likelihood`` (the model's own, for the rate
    estimate) and :meth:`pmf_table` (the integer coder's support and probabilities)."""

    def __init__(self, density: HyperpriorDensity, tail_mass: float = TAIL_MASS) -> None:
        self.density = density
        self.tail_mass = float(tail_mass)

    @property
    def channels(self) -> int:
        return self.density.channels

    def likelihood(self, v: Tensor) -> Tensor:
        """The model's likelihood of ``v`` (float32, ``-sign(u + l)``, at least 1e-9)."""
        return self.density.likelihood(v)

    def _logits(self, x: Tensor) -> Tensor:
        """CDF logits at ``x`` [N, 1, M] in float64 (the model's formula, parameters cast)."""
        d = self.density
        logits = x
        for k in range(d.n_layers):
            h, a, b = (getattr(d, f"{p}_{k}").detach().cpu().double() for p in "Hab")
            logits = torch.bmm(F.softplus(h), logits) + b
            logits = logits + torch.tanh(a) * torch.tanh(logits)
        return logits

    def _bisect(self, offset: float, target: float, last: bool) -> Tensor:
        """Per channel, over the integers k in [-R, R] where ``logits(k + offset)`` is monotone:
        the largest k with logits <= target (``last``), else the smallest with logits >= target;
        clamped to the range when there is none."""
        n = self.channels
        lo = torch.full((n,), -_RADIUS, dtype=torch.int64)
        hi = torch.full((n,), _RADIUS, dtype=torch.int64)
        while bool((lo < hi).any()):
            mid = (lo + hi + (1 if last else 0)).div(2, rounding_mode="floor")
            val = self._logits((mid.double() + offset)[:, None, None])[:, 0, 0]
            if last:
                ok = val <= target
                lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid - 1)
            else:
                ok = val >= target
                lo, hi = torch.where(ok, lo, mid + 1), torch.where(ok, mid, hi)
        return lo

    @torch.no_grad()
    def pmf_table(self) -> PmfTable:
        """Symbols ``lo .. hi`` per channel (the CDF logits at ``lo - 0.5`` / ``hi + 0.5`` just
        beyond ``-+log(2 / tail_mass - 1)``), each with ``P[k - 0.5 < Z < k + 0.5]`` evaluated on
        the side where the CDF is small, in float64; the mass outside is the escape's."""
        t = math.log(2.0 / self.tail_mass - 1.0)
        lo = self._bisect(-0.5, -t, last=True)
        hi = self._bisect(0.5, t, last=False)
        lengths = hi - lo + 1
        width = int(lengths.max())
        k = torch.arange(width, dtype=torch.float64)
        samples = (lo.double()[:, None] + k[None, :])[:, None, :]
        lower = self._logits(samples - 0.5)[:, 0, :]
        upper = self._logits(samples + 0.5)[:, 0, :]
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(torch.float64)
        prob = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        valid = k[None, :] < lengths[:, None]
        pmf = torch.where(valid, prob, torch.zeros_like(prob))
        last = upper.gather(1, (lengths - 1)[:, None])[:, 0]
        tail = torch.sigmoid(lower[:, 0]) + torch.sigmoid(-last)
        return PmfTable(
            lo=lo.numpy().astype(np.int64),
            hi=hi.numpy().astype(np.int64),
            pmf=pmf.numpy(),
            tail_mass=tail.numpy(),
        )


def _entropy_parameters(model: HiFiC):
    def parameters(z_hat: Tensor) -> tuple[Tensor, Tensor]:
        with single_cpu_thread(z_hat.device):
            mu, sigma = model.hyper_synthesis(z_hat)
        return sigma, mu

    return parameters


def hific_latent(model: nn.Module) -> LatentCodec:
    """The latent codec of a HiFiC model (see the module docstring)."""
    if not isinstance(model, HiFiC):
        raise TypeError(f"no HiFiC latent codec for {type(model).__name__}")
    density = model.Hyperprior.hyperlatent_likelihood
    return HyperpriorLatent(
        model.hyper_analysis,
        HyperDensityTables(density),  # type: ignore[arg-type]  # the FactorizedDensity it reads
        _entropy_parameters(model),
        GaussianConditional(SCALE_TABLE, scale_bound=model.Hyperprior.scale_lower_bound).to(
            next(model.parameters()).device
        ),
        stride=model.downsampling_factor,
        hyper_stride=model.latent_multiple,
        rounding="floor_half",
        z_offset="zero",
        mean_offset=True,
        pad_y=True,
    )


def hific_coding_pass(model: nn.Module, x: Tensor, params: object) -> Tensor:
    """What coding one image computes (the profile's MACs): pad, Encoder, y padded to 4, h_a,
    ``floor(z + 0.5)``, both h_s, ``y_hat``, Generator."""
    y = model.analysis(pad_image(x, model.downsampling_factor))
    k = model.latent_multiple
    y = _pad_axis(_pad_axis(y, -2, -(-y.size(-2) // k) * k), -1, -(-y.size(-1) // k) * k)
    mu, _ = model.hyper_synthesis(round_half_up(model.hyper_analysis(y)))
    return model.synthesis(round_half_up(y - mu) + mu)
