"""HiFiC (Mentzer et al. 2020), layer for layer as Justin Tan's PyTorch code.

The code is ``Justin-Tan/high-fidelity-generative-compression`` at commit ``7d4e9e78``
(``src/network/{encoder,generator,hyper,discriminator}.py``, ``src/hyperprior.py``,
``src/compression/hyperprior_model.py``, ``src/normalisation/channel.py``).
Module and parameter names are the original's (``Encoder``, ``Generator``, ``Hyperprior``,
``Discriminator``; ``conv_block1.1.weight``, ``resblock_0.norm1.gamma``, ``H_0`` ...), so
:class:`HiFiC`'s ``state_dict()`` is the original ``Model.state_dict()`` key for key and its
checkpoints load with ``strict=True``.

Preprocessing (the original's evaluation-mode ``Model.compression_forward``):

* ``x`` is [B, 3, H, W] in [0, 1] (``ToTensor``; ``normalize_input_image=False``, no [-1, 1]).
* ``x`` is reflect-padded on the bottom / right to multiples of 16 (``F.pad(x, (0, pW, 0, pH),
  mode='reflect')``), ``y = Encoder(x)`` is reflect-padded the same way to multiples of 4 (the
  hyper encoder downsamples twice); the generator output is cropped back to [:H, :W]. The
  model's ``forward`` does both; ``analysis`` / ``synthesis`` / ``hyper_*`` take already padded
  tensors.
* ``x_hat = Generator(y_hat)`` has no output ``tanh``; ``Model.forward`` then clamps it to [0, 1]
  (:meth:`HiFiC.reconstruct`).
* The bpp estimates divide by the pixels of the **padded** ``x`` (``spatial_shape=x.size()[2:]``
  after padding), the batch-mean bits per image.

Rounding rules (all ``floor(v + 0.5)``, never ``torch.round``'s half-to-even):

* ``z_hat = floor(z + 0.5)`` (no median offset);
* ``y_hat`` is the straight-through ``quantize_latents_st``: ``v = y - mu; v = v + (floor(v + 0.5)
  - v); y_hat = v + mu`` in that float order;
* the latent likelihood is evaluated at ``floor(y - mu + 0.5) + mu`` (``_quantize``), which can
  differ from ``y_hat`` in the last bit.

Probability model: ``z`` has the non-parametric density of Ballé 2018 §6.1 with filters
(1, 3, 3, 3, 1) whose ``tanh(a_k) * tanh(.)`` step is applied after **every** layer, the last
included (unlike :class:`imgcomp.nn.density.FactorizedDensity`); its likelihood uses ``-sign(u +
l)`` (0 when ``u + l == 0``). ``y`` is a discretised Gaussian ``N(mu, max(sigma, 0.11))`` with
``Phi(v) = erfc(-v / sqrt 2) / 2``. Both likelihoods are lower-bounded at 1e-9 and the bits are
``sum log(lik + 1e-9) / -log 2`` (so these are not :mod:`imgcomp.nn.density`'s models).

Original options implemented: ``model_type`` ``compression`` and ``compression_gan`` (the latter
adds the :class:`Discriminator`), ``use_channel_norm=True``, ``sample_noise=False``,
``likelihood_type='gaussian'``, ``use_latent_mixture_model=False``, hyperprior ``mode='large'``,
``normalize_input_image=False``. ``latent_channels`` (C), ``n_residual_blocks``, the hyperprior
width N and the encoder / generator filters are constructor parameters (original by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgcomp.errors import ImageError
from imgcomp.nn.channel_norm import ChannelNorm2D
from imgcomp.nn.gdn import lower_bound

__all__ = [
    "CONTEXT_CHANNELS",
    "DENSITY_FILTERS",
    "DISCRIMINATOR_FILTERS",
    "ENCODER_FILTERS",
    "HYPERLATENT_FILTERS",
    "HYPER_TRANSFORMS",
    "LATENT_CHANNELS",
    "LIKELIHOOD_BOUND",
    "RESIDUAL_BLOCKS",
    "SCALE_LOWER_BOUND",
    "Discriminator",
    "Encoder",
    "Generator",
    "HiFiC",
    "HiFiCOutput",
    "HyperAnalysis",
    "HyperSynthesis",
    "Hyperprior",
    "HyperpriorDensity",
    "HyperpriorOutput",
    "ResidualBlock",
    "estimate_bpp",
    "pad_to_multiple",
    "round_half_up",
]

#: The original widths: latent channels C, residual blocks, hyper-latent filters N ('large').
LATENT_CHANNELS = 220
RESIDUAL_BLOCKS = 9
HYPERLATENT_FILTERS = 320
#: Encoder filters, first to last (the generator uses them reversed: 960 ... 60).
ENCODER_FILTERS: tuple[int, ...] = (60, 120, 240, 480, 960)
#: The hyperprior's transforms, each with two hidden layers (:class:`Hyperprior`'s ``widths``).
HYPER_TRANSFORMS: tuple[str, ...] = ("analysis_net", "synthesis_mu", "synthesis_std")
#: Hidden filters of the hyper-latent density (layers 1 -> 3 -> 3 -> 3 -> 1).
DENSITY_FILTERS: tuple[int, ...] = (3, 3, 3)
DENSITY_INIT_SCALE = 10.0
#: Discriminator: conv filters and the channels of the upsampled latent context.
DISCRIMINATOR_FILTERS: tuple[int, ...] = (64, 128, 256, 512)
CONTEXT_CHANNELS = 12
#: Lower bound of the latent Gaussian's scale, and of both likelihoods.
SCALE_LOWER_BOUND = 0.11
LIKELIHOOD_BOUND = 1e-9
#: Added to each likelihood inside the log of the bit estimate.
ENTROPY_EPS = 1e-9


def round_half_up(v: Tensor) -> Tensor:
    """``floor(v + 0.5)``: the original's rounding (halves go up, unlike ``torch.round``)."""
    return torch.floor(v + 0.5)


def pad_to_multiple(x: Tensor, factor: int) -> Tensor:
    """Reflect-pad [B, C, H, W] bottom / right to multiples of ``factor`` (``pad_factor``)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (factor - h % factor) % factor, (factor - w % factor) % factor
    if pad_h == 0 and pad_w == 0:
        return x
    if pad_h >= h or pad_w >= w:
        raise ImageError(
            f"cannot reflect-pad a {h}x{w} map to a multiple of {factor}: each side must be "
            f"longer than its padding ({pad_h}, {pad_w})"
        )
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")


def estimate_bpp(likelihood: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """Bits per pixel of ``likelihood`` [B, ...]: ``sum log(lik + 1e-9) / (B * -log 2) / (H*W)``."""
    if len(spatial_shape) != 2:
        raise ValueError(f"spatial_shape must be (H, W), got {tuple(spatial_shape)}")
    n_pixels = int(spatial_shape[0]) * int(spatial_shape[1])
    n_bits = torch.sum(torch.log(likelihood + ENTROPY_EPS)) / (likelihood.size(0) * -math.log(2.0))
    return n_bits / n_pixels


def _widths(widths: Sequence[int], n: int, what: str) -> tuple[int, ...]:
    out = tuple(int(w) for w in widths)
    if len(out) != n or any(w <= 0 for w in out):
        raise ValueError(f"{what} needs {n} positive widths, got {list(widths)}")
    return out


def _positive(value: int, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- encoder / generator ---------------------------------------------------------------------
class Encoder(nn.Module):
    """E: 7x7 conv, four stride-2 3x3 convs (asymmetric reflect pad), 3x3 conv to C channels.

    Every conv but the last is followed by ChannelNorm and ReLU; the convs themselves have no
    padding (``ReflectionPad2d(3)``, ``(0, 1, 1, 0)`` = left 0 right 1 top 1 bottom 0, and
    ``(1)``). [B, 3, H, W] -> [B, C, H/16, W/16] for H, W multiples of 16.
    """

    n_downsampling_layers: ClassVar[int] = 4

    def __init__(
        self,
        latent_channels: int = LATENT_CHANNELS,
        filters: Sequence[int] = ENCODER_FILTERS,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        f = _widths(filters, 5, "encoder filters")
        c = _positive(latent_channels, "latent_channels")
        self.conv_block1 = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(image_channels, f[0], kernel_size=7, stride=1),
            ChannelNorm2D(f[0]),
            nn.ReLU(),
        )
        for i in range(1, 5):
            block = nn.Sequential(
                nn.ReflectionPad2d((0, 1, 1, 0)),
                nn.Conv2d(f[i - 1], f[i], kernel_size=3, stride=2),
                ChannelNorm2D(f[i]),
                nn.ReLU(),
            )
            self.add_module(f"conv_block{i + 1}", block)
        self.conv_block_out = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(f[4], c, kernel_size=3, stride=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv_block{i}")(x)
        return self.conv_block_out(x)


class ResidualBlock(nn.Module):
    """``x + norm2(conv2(pad(relu(norm1(conv1(pad(x)))))))`` with reflect padding, 3x3 convs."""

    def __init__(self, channels: int, kernel_size: int = 3, hidden: int | None = None) -> None:
        super().__init__()
        h = channels if hidden is None else _positive(hidden, "residual hidden channels")
        self.pad = nn.ReflectionPad2d((kernel_size - 1) // 2)
        self.conv1 = nn.Conv2d(channels, h, kernel_size, stride=1)
        self.conv2 = nn.Conv2d(h, channels, kernel_size, stride=1)
        self.norm1 = ChannelNorm2D(h)
        self.norm2 = ChannelNorm2D(channels)

    def forward(self, x: Tensor) -> Tensor:
        res = F.relu(self.norm1(self.conv1(self.pad(x))))
        res = self.norm2(self.conv2(self.pad(res)))
        return torch.add(res, x)


class Generator(nn.Module):
    """G: ChannelNorm, 3x3 conv to 960, ChannelNorm (``head``); residual blocks; ``+ head``; four
    stride-2 3x3 transposed convs with ChannelNorm + ReLU; reflect-padded 7x7 conv to 3 channels.

    No output activation. [B, C, h, w] -> [B, 3, 16h, 16w]. ``residual_widths``: each residual
    block's hidden width (its conv1 outputs; default ``filters[0]``, the original).
    """

    def __init__(
        self,
        latent_channels: int = LATENT_CHANNELS,
        filters: Sequence[int] = tuple(reversed(ENCODER_FILTERS)),
        n_residual_blocks: int = RESIDUAL_BLOCKS,
        residual_widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        f = _widths(filters, 5, "generator filters")
        c = _positive(latent_channels, "latent_channels")
        self.n_residual_blocks = _positive(n_residual_blocks, "n_residual_blocks")
        hidden = (
            (f[0],) * self.n_residual_blocks
            if residual_widths is None
            else _widths(residual_widths, self.n_residual_blocks, "residual widths")
        )
        self.conv_block_init = nn.Sequential(
            ChannelNorm2D(c),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, f[0], kernel_size=3, stride=1),
            ChannelNorm2D(f[0]),
        )
        for m in range(self.n_residual_blocks):
            self.add_module(f"resblock_{m}", ResidualBlock(f[0], hidden=hidden[m]))
        for i in range(4):
            block = nn.Sequential(
                nn.ConvTranspose2d(f[i], f[i + 1], 3, stride=2, padding=1, output_padding=1),
                ChannelNorm2D(f[i + 1]),
                nn.ReLU(),
            )
            self.add_module(f"upconv_block{i + 1}", block)
        self.conv_block_out = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(f[4], 3, kernel_size=7, stride=1)
        )

    def forward(self, y: Tensor) -> Tensor:
        head = self.conv_block_init(y)
        x = head
        for m in range(self.n_residual_blocks):
            x = getattr(self, f"resblock_{m}")(x)
        x = x + head
        for i in range(1, 5):
            x = getattr(self, f"upconv_block{i}")(x)
        return self.conv_block_out(x)


# -- hyperprior -------------------------------------------------------------------------------
class HyperAnalysis(nn.Module):
    """h_a: 3x3 conv (zero pad), ReLU, two 5x5 stride-2 convs (reflect pad 2), ReLU between.

    No ``abs`` of the input. [B, C, h, w] -> [B, N, h/4, w/4]; needs h, w >= 5 (reflect
    padding of 2 on the second conv's output), so images with a side of 64 or less fail, in the
    original too.
    """

    n_downsampling_layers: ClassVar[int] = 2

    def __init__(
        self,
        latent_channels: int = LATENT_CHANNELS,
        filters: int = HYPERLATENT_FILTERS,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        c, n = latent_channels, filters
        w1, w2 = (n, n) if widths is None else _widths(widths, 2, "hyper analysis widths")
        self.conv1 = nn.Conv2d(c, w1, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(w1, w2, kernel_size=5, stride=2, padding=2, padding_mode="reflect")
        self.conv3 = nn.Conv2d(w2, n, kernel_size=5, stride=2, padding=2, padding_mode="reflect")

    @staticmethod
    def check_input(y: Tensor) -> None:
        """ImageError unless ``y`` has 5 or more per side (kept out of ``forward``: FX traces
        it for int8)."""
        if min(y.shape[-2:]) < 5:
            raise ImageError(
                f"the hyper encoder needs latents of 5 or more per side (its reflect padding; "
                f"image sides longer than 64 pixels), got {list(y.shape)}"
            )

    def forward(self, y: Tensor) -> Tensor:
        x = F.relu(self.conv1(y))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


class HyperSynthesis(nn.Module):
    """h_s (one each for mu and sigma): two 5x5 stride-2 transposed convs with ReLU, then a 3x3
    transposed conv to C channels, no final activation. [B, N, h, w] -> [B, C, 4h, 4w].
    ``widths``: the outputs of the first two (default N, N: the original)."""

    def __init__(
        self,
        latent_channels: int = LATENT_CHANNELS,
        filters: int = HYPERLATENT_FILTERS,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        c, n = latent_channels, filters
        w1, w2 = (n, n) if widths is None else _widths(widths, 2, "hyper synthesis widths")
        self.conv1 = nn.ConvTranspose2d(n, w1, 5, stride=2, padding=2, output_padding=1)
        self.conv2 = nn.ConvTranspose2d(w1, w2, 5, stride=2, padding=2, output_padding=1)
        self.conv3 = nn.ConvTranspose2d(w2, c, 3, stride=1, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = F.relu(self.conv1(z))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


class HyperpriorDensity(nn.Module):
    """Per-channel learned CDF of the hyper-latents (Ballé 2018 §6.1), the original's variant.

    Layer k: ``l = softplus(H_k) @ l + b_k; l = l + tanh(a_k) * tanh(l)`` for **every** layer,
    the last included. ``H_k`` [N, f_out, f_in], ``a_k`` / ``b_k`` [N, f_out, 1] with filters
    (1, 3, 3, 3, 1). The likelihood of the unit interval around v is computed on the side where
    the CDF is small (``-sign(upper + lower)``) and lower-bounded at 1e-9.
    """

    def __init__(
        self,
        channels: int = HYPERLATENT_FILTERS,
        filters: Sequence[int] = DENSITY_FILTERS,
        init_scale: float = DENSITY_INIT_SCALE,
        likelihood_bound: float = LIKELIHOOD_BOUND,
    ) -> None:
        super().__init__()
        self.channels = _positive(channels, "density channels")
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.likelihood_bound = float(likelihood_bound)
        dims = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        for k in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            shape = (self.channels, dims[k + 1], dims[k])
            self.register_parameter(f"H_{k}", nn.Parameter(torch.full(shape, init)))
            a = torch.zeros(self.channels, dims[k + 1], 1)
            self.register_parameter(f"a_{k}", nn.Parameter(a))
            b = torch.rand(self.channels, dims[k + 1], 1) - 0.5
            self.register_parameter(f"b_{k}", nn.Parameter(b))

    @property
    def n_layers(self) -> int:
        """Number of (H, a, b) layers: ``len(filters) + 1``."""
        return len(self.filters) + 1

    def cdf_logits(self, x: Tensor) -> Tensor:
        """Logit of the cumulative at ``x`` [N, 1, M] (channel-major), same shape out."""
        logits = x
        for k in range(self.n_layers):
            h, a, b = (getattr(self, f"{p}_{k}") for p in "Hab")
            logits = torch.bmm(F.softplus(h), logits)
            logits = logits + b
            logits = logits + torch.tanh(a) * torch.tanh(logits)
        return logits

    def likelihood(self, v: Tensor) -> Tensor:
        """P[v - 0.5 < Z < v + 0.5] per element of ``v`` [B, N, ...], at least 1e-9."""
        if v.dim() < 2 or v.size(1) != self.channels:
            raise ValueError(f"expected [B, {self.channels}, ...], got {list(v.shape)}")
        perm = (1, 0, *range(2, v.dim()))
        vp = v.permute(*perm)
        shape = vp.shape
        x = torch.reshape(vp, (shape[0], 1, -1))
        upper = self.cdf_logits(x + 0.5)
        lower = self.cdf_logits(x - 0.5)
        sign = -torch.sign(upper + lower).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lower_bound(lik, self.likelihood_bound)
        return torch.reshape(lik, shape).permute(*perm)

    def forward(self, v: Tensor) -> Tensor:
        return self.likelihood(v)

    def extra_repr(self) -> str:
        return f"{self.channels}, filters={self.filters}, init_scale={self.init_scale}"


def _gaussian_cdf(v: Tensor) -> Tensor:
    """Standard normal CDF as the original: ``0.5 * erfc(v * (-1 / sqrt 2))``."""
    return 0.5 * torch.erfc(v * (-1.0 / math.sqrt(2.0)))


@dataclass
class HyperpriorOutput:
    """What :meth:`Hyperprior.forward` computes for latents ``y`` (the original's ``HyperInfo``).

    ``z_hat`` is what h_s was fed (``floor(z + 0.5)`` in eval, ``z + U(-.5, .5)`` in training);
    ``y_hat`` the straight-through latents the generator decodes; the likelihoods and ``q_bpp_*``
    are of the rounded values, ``n_bpp_*`` (training only, else None) of the noisy ones.
    """

    z: Tensor
    z_hat: Tensor
    mu: Tensor
    sigma: Tensor
    y_hat: Tensor
    z_likelihood: Tensor
    y_likelihood: Tensor
    q_bpp_latent: Tensor
    q_bpp_hyperlatent: Tensor
    q_bpp_total: Tensor
    n_bpp_latent: Tensor | None = None
    n_bpp_hyperlatent: Tensor | None = None
    n_bpp_total: Tensor | None = None


class Hyperprior(nn.Module):
    """Mean-scale hyperprior: ``analysis_net`` (h_a), ``synthesis_mu`` / ``synthesis_std`` (h_s)
    and the hyper-latent density ``hyperlatent_likelihood``; Gaussian latent likelihood.
    ``widths`` maps ``analysis_net`` / ``synthesis_mu`` / ``synthesis_std`` to the widths of
    their two hidden layers (default N, N each: the original)."""

    def __init__(
        self,
        latent_channels: int = LATENT_CHANNELS,
        hyperlatent_filters: int = HYPERLATENT_FILTERS,
        scale_lower_bound: float = SCALE_LOWER_BOUND,
        likelihood_bound: float = LIKELIHOOD_BOUND,
        widths: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        c = _positive(latent_channels, "latent_channels")
        n = _positive(hyperlatent_filters, "hyperlatent_filters")
        self.latent_channels, self.hyperlatent_filters = c, n
        self.scale_lower_bound = float(scale_lower_bound)
        self.likelihood_bound = float(likelihood_bound)
        widths = dict(widths or {})
        unknown = sorted(set(widths) - set(HYPER_TRANSFORMS))
        if unknown:
            raise ValueError(f"unknown hyper transforms in widths: {unknown}")
        self.analysis_net = HyperAnalysis(c, n, widths.get("analysis_net"))
        self.synthesis_mu = HyperSynthesis(c, n, widths.get("synthesis_mu"))
        self.synthesis_std = HyperSynthesis(c, n, widths.get("synthesis_std"))
        self.hyperlatent_likelihood = HyperpriorDensity(n, likelihood_bound=likelihood_bound)

    def synthesis(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, max(sigma, 0.11))`` of the latents from decoded hyper-latents."""
        mu = self.synthesis_mu(z_hat)
        sigma = lower_bound(self.synthesis_std(z_hat), self.scale_lower_bound)
        return mu, sigma

    def latent_likelihood(self, y_q: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        """P[|Y - mu| within 0.5 of |y_q - mu|] under N(0, sigma), at least 1e-9."""
        v = torch.abs(y_q - mu)
        upper = _gaussian_cdf((0.5 - v) / sigma)
        lower = _gaussian_cdf(-(0.5 + v) / sigma)
        return lower_bound(upper - lower, self.likelihood_bound)

    @staticmethod
    def quantize_latents(y: Tensor, mu: Tensor) -> Tensor:
        """Straight-through ``floor(y - mu + 0.5) + mu`` (``quantize_latents_st``, float order
        kept: the value the generator decodes)."""
        v = y - mu
        v = v + (round_half_up(v) - v).detach()
        return v + mu

    @staticmethod
    def round_latents(y: Tensor, mu: Tensor) -> Tensor:
        """``floor(y - mu + 0.5) + mu`` (``_quantize``): where the latent likelihood is taken."""
        return round_half_up(y - mu) + mu

    def forward(self, y: Tensor, spatial_shape: Sequence[int]) -> HyperpriorOutput:
        """Hyper-latents, latent statistics, quantised latents, likelihoods and bpp of ``y``."""
        HyperAnalysis.check_input(y)
        z = self.analysis_net(y)
        z_round = round_half_up(z)
        z_likelihood = self.hyperlatent_likelihood(z_round)
        z_noisy = z + (torch.rand_like(z) - 0.5) if self.training else None
        z_hat = z_noisy if z_noisy is not None else z_round
        mu, sigma = self.synthesis(z_hat)
        y_likelihood = self.latent_likelihood(self.round_latents(y, mu), mu, sigma)
        q_lat = estimate_bpp(y_likelihood, spatial_shape)
        q_hyp = estimate_bpp(z_likelihood, spatial_shape)
        out = HyperpriorOutput(
            z=z,
            z_hat=z_hat,
            mu=mu,
            sigma=sigma,
            y_hat=self.quantize_latents(y, mu),
            z_likelihood=z_likelihood,
            y_likelihood=y_likelihood,
            q_bpp_latent=q_lat,
            q_bpp_hyperlatent=q_hyp,
            q_bpp_total=q_lat + q_hyp,
        )
        if z_noisy is not None:
            y_noisy = y + (torch.rand_like(y) - 0.5)
            n_lat = estimate_bpp(self.latent_likelihood(y_noisy, mu, sigma), spatial_shape)
            n_hyp = estimate_bpp(self.hyperlatent_likelihood(z_noisy), spatial_shape)
            out.n_bpp_latent, out.n_bpp_hyperlatent = n_lat, n_hyp
            out.n_bpp_total = n_lat + n_hyp
        return out


# -- discriminator ----------------------------------------------------------------------------
class Discriminator(nn.Module):
    """Conditional PatchGAN D(x, y): ``y`` -> 3x3 conv to 12 channels, LeakyReLU(0.2), nearest
    x16 upsampling, concatenated with the image; four spectral-normed 4x4 stride-2 convs
    (reflect pad 1) with LeakyReLU(0.2); 1x1 conv to one logit per patch.

    Keys are the original's (``conv1.weight_orig`` / ``weight_u`` / ``weight_v``: torch's
    ``spectral_norm``). Returns ``(sigmoid(logits), logits)``, each [B * patches, 1].
    """

    def __init__(
        self,
        latent_channels: int = LATENT_CHANNELS,
        image_channels: int = 3,
        filters: Sequence[int] = DISCRIMINATOR_FILTERS,
        context_channels: int = CONTEXT_CHANNELS,
    ) -> None:
        super().__init__()
        f = _widths(filters, 4, "discriminator filters")
        k = _positive(context_channels, "context_channels")
        sn = nn.utils.spectral_norm
        self.context_conv = nn.Conv2d(
            _positive(latent_channels, "latent_channels"),
            k,
            kernel_size=3,
            padding=1,
            padding_mode="reflect",
        )
        self.context_upsample = nn.Upsample(scale_factor=16, mode="nearest")
        conv = {"kernel_size": 4, "stride": 2, "padding": 1, "padding_mode": "reflect"}
        self.conv1 = sn(nn.Conv2d(image_channels + k, f[0], **conv))
        self.conv2 = sn(nn.Conv2d(f[0], f[1], **conv))
        self.conv3 = sn(nn.Conv2d(f[1], f[2], **conv))
        self.conv4 = sn(nn.Conv2d(f[2], f[3], **conv))
        self.conv_out = nn.Conv2d(f[3], 1, kernel_size=1, stride=1)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` images [B, 3, 16h, 16w], ``y`` quantised latents [B, C, h, w]."""
        ctx = self.context_upsample(F.leaky_relu(self.context_conv(y), 0.2))
        h = torch.cat((x, ctx), dim=1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            h = F.leaky_relu(conv(h), 0.2)
        logits = self.conv_out(h).view(-1, 1)
        return torch.sigmoid(logits), logits


# -- the model --------------------------------------------------------------------------------
@dataclass
class HiFiCOutput(HyperpriorOutput):
    """:class:`HyperpriorOutput` plus ``y`` (padded to 4), ``x_hat`` (cropped, unclamped) and
    ``padded_shape`` (the (H, W) the encoder saw, whose pixels the bpp are per)."""

    y: Tensor | None = None
    x_hat: Tensor | None = None
    padded_shape: tuple[int, int] = (0, 0)


class HiFiC(nn.Module):
    """Encoder, Generator, Hyperprior (and, for ``compression_gan`` checkpoints, Discriminator).

    ``state_dict()`` is the original ``Model.state_dict()`` (training-mode layout). See the
    module docstring for the preprocessing and rounding that :meth:`forward` reproduces.
    """

    family: ClassVar[str] = "hific"
    downsampling_factor: ClassVar[int] = 16
    latent_multiple: ClassVar[int] = 4

    def __init__(
        self,
        latent_channels: int = LATENT_CHANNELS,
        n_residual_blocks: int = RESIDUAL_BLOCKS,
        hyperlatent_filters: int = HYPERLATENT_FILTERS,
        filters: Sequence[int] = ENCODER_FILTERS,
        discriminator: bool = True,
        generator_filters: Sequence[int] | None = None,
        residual_widths: Sequence[int] | None = None,
        hyper_widths: Mapping[str, Sequence[int]] | None = None,
        discriminator_filters: Sequence[int] = DISCRIMINATOR_FILTERS,
    ) -> None:
        super().__init__()
        self.discriminator_filters = _widths(discriminator_filters, 4, "discriminator filters")
        self.latent_channels = _positive(latent_channels, "latent_channels")
        self.n_residual_blocks = _positive(n_residual_blocks, "n_residual_blocks")
        self.hyperlatent_filters = _positive(hyperlatent_filters, "hyperlatent_filters")
        self.filters = _widths(filters, 5, "encoder filters")
        self.generator_filters = (
            tuple(reversed(self.filters))
            if generator_filters is None
            else _widths(generator_filters, 5, "generator filters")
        )
        self.residual_widths = (
            (self.generator_filters[0],) * self.n_residual_blocks
            if residual_widths is None
            else _widths(residual_widths, self.n_residual_blocks, "residual widths")
        )
        n = self.hyperlatent_filters
        given = dict(hyper_widths or {})
        self.hyper_widths = {
            k: _widths(given[k], 2, f"{k} widths") if k in given else (n, n)
            for k in HYPER_TRANSFORMS
        }
        self.has_discriminator = bool(discriminator)
        c = self.latent_channels
        self.Encoder = Encoder(c, self.filters)
        self.Generator = Generator(
            c, self.generator_filters, self.n_residual_blocks, self.residual_widths
        )
        self.Hyperprior = Hyperprior(c, n, widths=self.hyper_widths)
        if self.has_discriminator:
            self.Discriminator = Discriminator(c, filters=self.discriminator_filters)

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this model: ``HiFiC(**config)``. The widths structured pruning makes
        independent (``generator_filters``, ``residual_widths``, ``hyper_widths``) are listed
        only where they differ from the original's rule (so unpruned configs are unchanged)."""
        config: dict[str, Any] = {
            "latent_channels": self.latent_channels,
            "n_residual_blocks": self.n_residual_blocks,
            "hyperlatent_filters": self.hyperlatent_filters,
            "filters": list(self.filters),
            "discriminator": self.has_discriminator,
        }
        if self.generator_filters != tuple(reversed(self.filters)):
            config["generator_filters"] = list(self.generator_filters)
        if self.residual_widths != (self.generator_filters[0],) * self.n_residual_blocks:
            config["residual_widths"] = list(self.residual_widths)
        n = self.hyperlatent_filters
        if any(w != (n, n) for w in self.hyper_widths.values()):
            config["hyper_widths"] = {k: list(w) for k, w in self.hyper_widths.items()}
        if self.has_discriminator and self.discriminator_filters != DISCRIMINATOR_FILTERS:
            config["discriminator_filters"] = list(self.discriminator_filters)
        return config

    def main_parameters(self) -> list[nn.Parameter]:
        """What the compression loss trains: every parameter but the discriminator's (the
        hyper-latent density included: it trains on the same loss, as in the original)."""
        return [p for n, p in self.named_parameters() if not n.startswith("Discriminator.")]

    def adversary_parameters(self) -> list[nn.Parameter]:
        """The discriminator's parameters (trained on its own loss), empty without one."""
        return list(self.Discriminator.parameters()) if self.has_discriminator else []

    @property
    def components(self) -> dict[str, list[nn.Module]]:
        """Component name -> submodules: encoder, generator, probability (the hyperprior's)."""
        hp = self.Hyperprior
        return {
            "encoder": [self.Encoder],
            "generator": [self.Generator],
            "probability": [
                hp.analysis_net,
                hp.synthesis_mu,
                hp.synthesis_std,
                hp.hyperlatent_likelihood,
            ],
        }

    def check_input(self, x: Tensor, multiple: int = 1) -> None:
        """Refuse inputs that are not [B, 3, H, W] floats with H, W multiples of ``multiple``."""
        if x.dim() != 4 or x.size(1) != 3 or not x.is_floating_point():
            raise ImageError(f"HiFiC input must be a float [B, 3, H, W], got {list(x.shape)}")
        if x.size(2) % multiple or x.size(3) % multiple:
            raise ImageError(
                f"HiFiC input sides must be multiples of {multiple} here (pad it first, as "
                f"forward does), got {list(x.shape)}"
            )

    # -- stages (inputs already padded) ---------------------------------------------------------
    def analysis(self, x: Tensor) -> Tensor:
        """``y = Encoder(x)`` for ``x`` [B, 3, H, W] in [0, 1], H and W multiples of 16."""
        self.check_input(x, self.downsampling_factor)
        return self.Encoder(x)

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """``x_hat = Generator(y_hat)``, unclamped and uncropped (no output tanh)."""
        return self.Generator(y_hat)

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """``z = h_a(y)`` for ``y`` with sides multiples of 4 (no ``abs``)."""
        HyperAnalysis.check_input(y)
        return self.Hyperprior.analysis_net(y)

    def hyper_synthesis(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, sigma)`` of the latents, ``sigma`` already ``max(., 0.11)``."""
        return self.Hyperprior.synthesis(z_hat)

    @staticmethod
    def quantize_hyperlatents(z: Tensor) -> Tensor:
        """``z_hat = floor(z + 0.5)``."""
        return round_half_up(z)

    @staticmethod
    def quantize_latents(y: Tensor, mu: Tensor) -> Tensor:
        """``y_hat``: mean-offset straight-through rounding (``quantize_latents_st``)."""
        return Hyperprior.quantize_latents(y, mu)

    def likelihoods(self, y: Tensor, z_hat: Tensor, mu: Tensor, sigma: Tensor) -> dict[str, Tensor]:
        """``{"y": P(floor(y - mu + 0.5) + mu), "z": P(z_hat)}``, each at least 1e-9."""
        hp = self.Hyperprior
        return {
            "y": hp.latent_likelihood(hp.round_latents(y, mu), mu, sigma),
            "z": hp.hyperlatent_likelihood(z_hat),
        }

    # -- the original's evaluation path ---------------------------------------------------------
    def forward(self, x: Tensor, spatial_shape: Sequence[int] | None = None) -> HiFiCOutput:
        """``compression_forward`` in eval mode: pad x to 16, encode, pad y to 4, hyperprior,
        generate, crop. bpp are per pixel of ``spatial_shape`` (default: the padded x's)."""
        self.check_input(x)
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.downsampling_factor)
        y = pad_to_multiple(self.Encoder(xp), self.latent_multiple)
        shape = tuple(xp.shape[-2:]) if spatial_shape is None else tuple(spatial_shape)
        hyper = self.Hyperprior(y, shape)
        x_hat = self.Generator(hyper.y_hat)[:, :, :h, :w]
        return HiFiCOutput(**vars(hyper), y=y, x_hat=x_hat, padded_shape=tuple(xp.shape[-2:]))

    def reconstruct(self, x: Tensor) -> Tensor:
        """``clamp(x_hat, 0, 1)`` as the original ``Model.forward`` returns in evaluation mode."""
        return torch.clamp(self.forward(x).x_hat, 0.0, 1.0)
