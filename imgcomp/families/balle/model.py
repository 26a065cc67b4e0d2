"""The Ballé family's models: factorized prior, scale hyperprior (Ballé 2018), mean-scale
(Minnen 2018).

Layer shapes follow the published architectures (CompressAI's ``bmshj2018-factorized``,
``bmshj2018-hyperprior`` and ``mbt2018-mean``), so their checkpoints load through
:mod:`imgcomp.families.balle.compressai`. Besides the training ``forward`` each model exposes the
steps a bitstream codec needs: analysis, hyper analysis/synthesis, integer symbols and their
inverse.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imgcomp.errors import ImageError, UnknownCodecError
from imgcomp.nn.density import FactorizedDensity, GaussianConditional
from imgcomp.nn.determinism import single_cpu_thread
from imgcomp.nn.fast import PlanCache
from imgcomp.nn.gdn import GDN

__all__ = [
    "ARCHITECTURES",
    "ARCH_ALIASES",
    "BalleModel",
    "FactorizedPrior",
    "MeanScaleHyperprior",
    "ScaleHyperprior",
    "build_model",
    "resolve_arch",
]


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """'Same'-padded strided convolution (downsamples by ``stride``)."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that upsamples by exactly ``stride``."""
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


class BalleModel(nn.Module):
    """Shared part: ``g_a`` (4 strided 5x5 convs with GDN) and ``g_s`` (mirror with IGDN).

    Subclasses add the entropy model. ``forward`` follows ``self.training``: additive uniform
    noise in training, rounding around the model's offsets in eval. Without autograd, in eval
    mode, on float32 CPU tensors, ``analysis`` and ``synthesis`` run ``g_a`` / ``g_s`` through
    their fast inference plans (:mod:`imgcomp.nn.fast`; ``fast_inference = False`` runs the
    modules); the hyper transforms always run as modules, so the entropy parameters of existing
    streams are unchanged.
    """

    arch: ClassVar[str] = ""
    downsampling_factor: ClassVar[int] = 16
    #: Run g_a / g_s through :class:`~imgcomp.nn.fast.PlanCache` where it applies.
    fast_inference: bool = True

    def __init__(self, N: int = 128, M: int = 192) -> None:
        super().__init__()
        if N <= 0 or M <= 0:
            raise ValueError(f"N and M must be positive, got N={N}, M={M}")
        self.N, self.M = int(N), int(M)
        self.g_a = nn.Sequential(
            _conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N), _conv(N, M)
        )
        self.g_s = nn.Sequential(
            _deconv(M, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, 3),
        )
        self._plans = PlanCache()

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this model: ``build_model(**config)``."""
        return {"arch": self.arch, "N": self.N, "M": self.M}

    @property
    def components(self) -> dict[str, list[nn.Module]]:
        """Component name -> submodules: encoder (g_a), decoder (g_s), entropy (the rest)."""
        return {"encoder": [self.g_a], "decoder": [self.g_s], "entropy": self._entropy_modules()}

    def _entropy_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def _densities(self) -> list[FactorizedDensity]:
        return [m for m in self.modules() if isinstance(m, FactorizedDensity)]

    def aux_loss(self) -> Tensor:
        """Sum of the factorized densities' quantile losses (trains only ``quantiles``)."""
        return torch.stack([d.aux_loss() for d in self._densities()]).sum()

    def aux_parameters(self) -> list[nn.Parameter]:
        """The ``quantiles`` parameters (give them their own optimiser)."""
        return [d.quantiles for d in self._densities()]

    def main_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the ``quantiles``."""
        aux = {id(p) for p in self.aux_parameters()}
        return [p for p in self.parameters() if id(p) not in aux]

    def check_input(self, x: Tensor) -> None:
        """Raise ImageError unless ``x`` is [B,3,H,W] with H, W multiples of the downsampling."""
        f = self.downsampling_factor
        if x.dim() != 4 or x.size(1) != 3:
            raise ImageError(f"expected an image batch [B,3,H,W], got {list(x.shape)}")
        if x.size(2) % f or x.size(3) % f or x.size(2) == 0 or x.size(3) == 0:
            raise ImageError(f"height and width must be positive multiples of {f}; pad first")

    def analysis(self, x: Tensor) -> Tensor:
        """Latents ``y = g_a(x)`` for x in [0, 1], [B,3,H,W] -> [B,M,H/16,W/16] (NCHW)."""
        if not self.fast_inference:
            return self.g_a(x)
        return self._plans.run(self.g_a, x, contiguous_out=True)

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """Unclamped reconstruction ``g_s(y_hat)`` (NCHW or channels_last)."""
        return self.g_s(y_hat) if not self.fast_inference else self._plans.run(self.g_s, y_hat)


class FactorizedPrior(BalleModel):
    """Ballé et al. 2017/2018 factorized prior: one learned density per latent channel."""

    arch = "bmshj2018-factorized"
    downsampling_factor = 16

    def __init__(self, N: int = 128, M: int = 192) -> None:
        super().__init__(N, M)
        self.y_prior = FactorizedDensity(M)

    def _entropy_modules(self) -> list[nn.Module]:
        return [self.y_prior]

    def forward(self, x: Tensor) -> dict[str, Any]:
        """-> ``{"x_hat": g_s(y_hat), "likelihoods": {"y": ...}}`` (noise or rounding per mode)."""
        self.check_input(x)
        y = self.analysis(x)
        y_hat, y_lik = self.y_prior(y)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": y_lik}}

    @torch.no_grad()
    def quantize_latents(self, x: Tensor) -> dict[str, Tensor]:
        """Deterministic (eval) quantisation of ``x``, whatever the module mode; no autograd.

        Keys: ``y``, ``y_symbols`` (int32, ``round(y - median)``; code with
        ``y_prior.pmf_table()`` per channel), ``y_hat`` (``y_symbols + median``),
        ``y_likelihoods``.
        """
        self.check_input(x)
        y = self.analysis(x)
        y_hat, y_lik = self.y_prior(y, training=False)
        return {
            "y": y,
            "y_symbols": self.y_prior.symbols(y),
            "y_hat": y_hat,
            "y_likelihoods": y_lik,
        }

    @torch.no_grad()
    def decode_symbols(self, y_symbols: Tensor) -> Tensor:
        """Reconstruction (unclamped) from integer symbols: ``g_s(y_symbols + median)``."""
        return self.synthesis(self.y_prior.dequantize(y_symbols))


class _Hyperprior(BalleModel):
    """Hyperprior models: z = h_a(y) is coded with a factorized density, h_s(z_hat) gives y's
    Gaussian parameters. Subclasses define ``h_a``, ``h_s`` and how their outputs are read."""

    downsampling_factor = 64
    uses_means: ClassVar[bool] = False

    def __init__(self, N: int = 128, M: int = 192) -> None:
        super().__init__(N, M)
        self.z_prior = FactorizedDensity(N)
        self.y_conditional = GaussianConditional()

    def _entropy_modules(self) -> list[nn.Module]:
        return [self.h_a, self.h_s, self.z_prior, self.y_conditional]

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """Hyper-latents ``z`` [B,N,H/64,W/64] from ``y``."""
        raise NotImplementedError

    def hyper_synthesis(self, z_hat: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(scales, means)`` of y's Gaussian from ``z_hat``; means is None for scale-only.
        Scales are returned before the 0.11 lower bound (the conditional applies it)."""
        raise NotImplementedError

    def entropy_parameters(self, z_hat: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`hyper_synthesis` as the coder needs it: on one CPU thread, so the encoder and
        the decoder get bit-identical scales whatever their thread counts
        (:mod:`imgcomp.nn.determinism`)."""
        with single_cpu_thread(z_hat.device):  # one layout too: oneDNN's sums follow it
            return self.hyper_synthesis(z_hat.contiguous())

    def forward(self, x: Tensor) -> dict[str, Any]:
        """-> ``{"x_hat", "likelihoods": {"y", "z"}}`` (noise in training, rounding in eval)."""
        self.check_input(x)
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_hat, z_lik = self.z_prior(z)
        scales, means = self.hyper_synthesis(z_hat)
        y_hat, y_lik = self.y_conditional(y, scales, means)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": y_lik, "z": z_lik}}

    @torch.no_grad()
    def quantize_latents(self, x: Tensor) -> dict[str, Tensor]:
        """Deterministic (eval) quantisation of ``x``, whatever the module mode; no autograd.

        Keys: ``y``, ``z``, ``z_symbols`` (int32 ``round(z - median)``, coded with
        ``z_prior.pmf_table()``), ``z_hat``, ``z_likelihoods``, ``scales`` (unbounded h_s
        output), ``means`` (mean-scale only), ``indexes`` (int32 scale-table level per element:
        which table of ``GaussianCoder(y_conditional.scale_table)`` codes it), ``y_symbols``
        (int32 ``round(y - means)``, or ``round(y)``), ``y_hat`` (``y_symbols + means``),
        ``y_likelihoods``.
        """
        self.check_input(x)
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_hat, z_lik = self.z_prior(z, training=False)
        scales, means = self.entropy_parameters(z_hat)
        y_hat, y_lik = self.y_conditional(y, scales, means, training=False)
        out = {
            "y": y,
            "z": z,
            "z_symbols": self.z_prior.symbols(z),
            "z_hat": z_hat,
            "z_likelihoods": z_lik,
            "scales": scales,
            "indexes": self.y_conditional.build_indexes(scales),
            "y_symbols": self.y_conditional.symbols(y, means),
            "y_hat": y_hat,
            "y_likelihoods": y_lik,
        }
        if means is not None:
            out["means"] = means
        return out

    @torch.no_grad()
    def hyper_decode(self, z_symbols: Tensor) -> dict[str, Tensor]:
        """Decoder step 1: ``z_hat``, ``scales``, (``means``) and ``indexes`` from z symbols."""
        z_hat = self.z_prior.dequantize(z_symbols)
        scales, means = self.entropy_parameters(z_hat)
        out = {
            "z_hat": z_hat,
            "scales": scales,
            "indexes": self.y_conditional.build_indexes(scales),
        }
        if means is not None:
            out["means"] = means
        return out

    @torch.no_grad()
    def decode_symbols(self, y_symbols: Tensor, means: Tensor | None = None) -> Tensor:
        """Decoder side, step 2: unclamped ``g_s(y_symbols + means)``."""
        if self.uses_means and means is None:
            raise ValueError(f"{self.arch} needs the means from hyper_decode()")
        return self.synthesis(self.y_conditional.dequantize(y_symbols, means))


class ScaleHyperprior(_Hyperprior):
    """Ballé et al. 2018 scale hyperprior: zero-mean Gaussian with scales from h_s (ReLU)."""

    arch = "bmshj2018-hyperprior"

    def __init__(self, N: int = 128, M: int = 192) -> None:
        super().__init__(N, M)
        self.h_a = nn.Sequential(
            _conv(M, N, kernel=3, stride=1),
            nn.ReLU(),
            _conv(N, N),
            nn.ReLU(),
            _conv(N, N),
        )
        self.h_s = nn.Sequential(
            _deconv(N, N),
            nn.ReLU(),
            _deconv(N, N),
            nn.ReLU(),
            _conv(N, M, kernel=3, stride=1),
            nn.ReLU(),
        )

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return self.h_a(torch.abs(y))

    def hyper_synthesis(self, z_hat: Tensor) -> tuple[Tensor, None]:
        return self.h_s(z_hat), None


class MeanScaleHyperprior(_Hyperprior):
    """Minnen et al. 2018 mean-scale hyperprior (no context model): h_s gives [scales; means]."""

    arch = "mbt2018-mean"
    uses_means = True

    def __init__(self, N: int = 128, M: int = 192) -> None:
        super().__init__(N, M)
        self.h_a = nn.Sequential(
            _conv(M, N, kernel=3, stride=1),
            nn.LeakyReLU(),
            _conv(N, N),
            nn.LeakyReLU(),
            _conv(N, N),
        )
        self.h_s = nn.Sequential(
            _deconv(N, M),
            nn.LeakyReLU(),
            _deconv(M, M * 3 // 2),
            nn.LeakyReLU(),
            _conv(M * 3 // 2, M * 2, kernel=3, stride=1),
        )

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return self.h_a(y)

    def hyper_synthesis(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        return scales, means


#: Architecture name (CompressAI zoo naming) -> model class.
ARCHITECTURES: dict[str, type[BalleModel]] = {
    cls.arch: cls for cls in (FactorizedPrior, ScaleHyperprior, MeanScaleHyperprior)
}


#: Short names accepted wherever an architecture is named (canonical names are CompressAI's).
ARCH_ALIASES: dict[str, str] = {
    "factorized": "bmshj2018-factorized",
    "hyperprior": "bmshj2018-hyperprior",
    "scale-hyperprior": "bmshj2018-hyperprior",
    "mean-scale": "mbt2018-mean",
    "mean-scale-hyperprior": "mbt2018-mean",
}


def resolve_arch(name: str) -> str:
    """Canonical architecture name of ``name`` (a key of ARCHITECTURES or an alias)."""
    key = str(name).strip()
    key = ARCH_ALIASES.get(key.lower(), key)
    if key not in ARCHITECTURES:
        known = sorted(ARCHITECTURES) + sorted(ARCH_ALIASES)
        raise UnknownCodecError(f"unknown architecture {name!r}; known: {', '.join(known)}")
    return key


def build_model(arch: str, N: int = 128, M: int = 192) -> BalleModel:
    """Freshly initialised model of architecture ``arch`` (see :data:`ARCHITECTURES`)."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise UnknownCodecError(
            f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return cls(N, M)
