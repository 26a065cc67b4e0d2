"""Likelihood models for quantised latents: a learned factorized density and a Gaussian conditional.

``FactorizedDensity`` is Ballé et al. 2018's non-parametric per-channel cumulative (appendix 6.1);
``GaussianConditional`` is the discretised normal used by scale / mean-scale hyperpriors. Both
give the probability of the unit interval around each value. ``FactorizedDensity.pmf_table()``
is the per-channel integer support and symbol probabilities an entropy coder quantises; the
Gaussian's per-scale tables are :class:`imgcomp.entropy.GaussianCoder`'s, built from
``scale_table`` and ``tail_mass``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgcomp.nn.gdn import lower_bound

__all__ = [
    "LIKELIHOOD_BOUND",
    "MAX_SUPPORT",
    "SCALE_BOUND",
    "TAIL_MASS",
    "FactorizedDensity",
    "GaussianConditional",
    "PmfTable",
    "scale_table",
]

#: Smallest likelihood reported (keeps -log2 finite for the rate term).
LIKELIHOOD_BOUND: float = 1e-9
#: Probability mass left outside the coded range, split over both tails.
TAIL_MASS: float = 1e-9
#: Smallest Gaussian scale used by the conditional model.
SCALE_BOUND: float = 0.11
#: Widest symbol range a pmf table may have (a 16-bit coder cannot give more symbols a frequency).
MAX_SUPPORT: int = 1 << 16


@dataclass(frozen=True)
class PmfTable:
    """Integer support and probabilities of each row (channel, or scale index) of a density.

    Row ``r`` codes symbols ``s`` in ``[lo[r], hi[r]]``; ``pmf[r, s - lo[r]]`` is the probability
    of symbol ``s`` (columns past ``length[r]`` are 0) and ``tail_mass[r]`` is the mass outside
    that range (an entropy coder uses it for an escape / overflow symbol). ``pmf[r].sum() +
    tail_mass[r] == 1`` up to float64 rounding. In CompressAI's table terms: ``_offset == lo``
    and ``_cdf_length == length + 2``.
    """

    lo: np.ndarray  # int64 [R]
    hi: np.ndarray  # int64 [R]
    pmf: np.ndarray  # float64 [R, max(length)]
    tail_mass: np.ndarray  # float64 [R]

    @property
    def length(self) -> np.ndarray:
        """Number of in-range symbols per row (``hi - lo + 1``)."""
        return self.hi - self.lo + 1


def _uniform_noise(v: Tensor) -> Tensor:
    """``v`` plus U(-0.5, 0.5) noise: the differentiable training proxy for rounding."""
    return v + (torch.rand_like(v) - 0.5)


class FactorizedDensity(nn.Module):
    """Per-channel learned cumulative density c(x) = sigmoid(f_K(...f_1(x))) (Ballé 2018).

    Each layer ``k`` is ``f_k(x) = softplus(M_k) x + b_k`` followed (except the last) by
    ``x + tanh(a_k) * tanh(x)``. Parameters: ``matrices.k`` [C, f_out, f_in], ``biases.k``
    [C, f_out, 1], ``factors.k`` [C, f_out, 1] and ``quantiles`` [C, 1, 3] = (lower, median,
    upper). The median is the quantisation offset; lower/upper are fitted by :meth:`aux_loss` to
    the ``tail_mass / 2`` quantiles and bound the coded symbol range.
    """

    def __init__(
        self,
        channels: int,
        filters: Sequence[int] = (3, 3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = TAIL_MASS,
        likelihood_bound: float = LIKELIHOOD_BOUND,
    ) -> None:
        super().__init__()
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.tail_mass = float(tail_mass)
        self.likelihood_bound_value = float(likelihood_bound)

        dims = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(self.filters) + 1):
            # every column of softplus(M_k) sums to 1/scale: the initial logit slope is 1/init_scale
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

        q = torch.tensor([-self.init_scale, 0.0, self.init_scale])
        self.quantiles = nn.Parameter(q.repeat(channels, 1, 1))
        t = math.log(2.0 / self.tail_mass - 1.0)
        self.register_buffer("target", torch.tensor([-t, 0.0, t]), persistent=False)
        self.register_buffer(
            "likelihood_bound", torch.tensor([self.likelihood_bound_value]), persistent=False
        )

    # -- density -------------------------------------------------------------------------------
    @property
    def medians(self) -> Tensor:
        """Per-channel quantisation offset [C] (the middle quantile)."""
        return self.quantiles[:, 0, 1]

    def logits_cdf(self, x: Tensor, stop_gradient: bool = False) -> Tensor:
        """Logit of the cumulative at ``x`` of shape [C, 1, N] (channel-major layout).

        Computed in ``x``'s dtype (parameters are cast), so float64 inputs give a float64 CDF.
        ``stop_gradient`` detaches the density parameters (gradients then reach only ``x``).
        """
        if x.dim() != 3 or x.size(0) != self.channels or x.size(1) != 1:
            raise ValueError(f"logits_cdf expects [{self.channels},1,N], got {list(x.shape)}")
        logits = x
        for k in range(len(self.matrices)):
            matrix, bias = self.matrices[k], self.biases[k]
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix.to(x.dtype)), logits) + bias.to(x.dtype)
            if k < len(self.factors):
                factor = self.factors[k].detach() if stop_gradient else self.factors[k]
                logits = logits + torch.tanh(factor.to(x.dtype)) * torch.tanh(logits)
        return logits

    def _interval(self, x: Tensor, stop_gradient: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(P[x-0.5 < X < x+0.5], lower logits, upper logits) for x in [C, 1, N], unbounded."""
        lower = self.logits_cdf(x - 0.5, stop_gradient)
        upper = self.logits_cdf(x + 0.5, stop_gradient)
        # Evaluate on the side where the CDF is small: sigmoid(u)-sigmoid(l) loses all precision
        # in the upper tail, sigmoid(-l)-sigmoid(-u) does not. Never 0, unlike -sign(l+u).
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(x.dtype).detach()
        prob = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return prob, lower, upper

    def _to_cn(self, v: Tensor) -> tuple[Tensor, torch.Size, tuple[int, ...]]:
        """[B, C, *S] -> ([C, 1, B*prod(S)], permuted shape, inverse permutation)."""
        if v.dim() < 2 or v.size(1) != self.channels:
            raise ValueError(f"expected [B,{self.channels},...], got {list(v.shape)}")
        perm = (1, 0, *range(2, v.dim()))
        vp = v.permute(*perm).contiguous()
        return vp.reshape(self.channels, 1, -1), vp.shape, perm

    @staticmethod
    def _from_cn(t: Tensor, shape: torch.Size, perm: tuple[int, ...]) -> Tensor:
        return t.reshape(shape).permute(*perm).contiguous()  # perm (1,0,...) is its own inverse

    def likelihood(self, v: Tensor) -> Tensor:
        """Probability of the unit interval around each value of ``v`` [B, C, ...], >= 1e-9."""
        x, shape, perm = self._to_cn(v)
        prob, _, _ = self._interval(x)
        return self._from_cn(lower_bound(prob, self.likelihood_bound), shape, perm)

    # -- quantisation --------------------------------------------------------------------------
    def _median_view(self, v: Tensor) -> Tensor:
        return self.medians.reshape(1, -1, *([1] * (v.dim() - 2)))

    def quantize(self, v: Tensor, noise: bool) -> Tensor:
        """Training proxy ``v + U(-.5,.5)`` if ``noise``, else ``round(v - median) + median``."""
        if noise:
            return _uniform_noise(v)
        m = self._median_view(v)
        return torch.round(v - m) + m

    def symbols(self, v: Tensor) -> Tensor:
        """Integer symbols ``round(v - median)`` (int32) of ``v`` [B, C, ...]."""
        return torch.round(v - self._median_view(v)).to(torch.int32)

    def dequantize(self, symbols: Tensor) -> Tensor:
        """Inverse of :meth:`symbols`: ``symbols + median`` (float32)."""
        m = self._median_view(symbols)
        return symbols.to(m.dtype) + m

    def forward(self, v: Tensor, training: bool | None = None) -> tuple[Tensor, Tensor]:
        """Quantise ``v`` [B, C, ...] (noise in training, rounding in eval) -> (v_hat, lik)."""
        if training is None:
            training = self.training
        v_hat = self.quantize(v, noise=training)
        return v_hat, self.likelihood(v_hat)

    # -- training of the quantiles -------------------------------------------------------------
    def aux_loss(self) -> Tensor:
        """L1 distance of the CDF logits at the quantiles to ``(-t, 0, t)``, t = log(2/tail - 1).

        Gradients reach only ``quantiles`` (the density is detached), so a separate optimiser
        can fit the coded range without disturbing the rate-distortion training.
        """
        logits = self.logits_cdf(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    # -- entropy-coder tables ------------------------------------------------------------------
    @torch.no_grad()
    def pmf_table(self) -> PmfTable:
        """Symbol range and probabilities per channel, computed in float64.

        With ``(lower, median, upper) = quantiles[c, 0]``: ``lo = -max(ceil(median - lower), 0)``
        and ``hi = max(ceil(upper - median), 0)`` (CompressAI's ``update()``: minima / maxima,
        ``_offset = lo``). Symbol ``s`` stands for the value ``median + s`` and gets
        ``P[median+s-0.5 < X < median+s+0.5]``; ``tail_mass = cdf(median+lo-0.5) +
        1 - cdf(median+hi+0.5)``. Unlike CompressAI, the upper tail is taken at each channel's
        own ``hi`` (CompressAI uses the longest channel's last sample), so each row sums to 1.
        """
        # ceil of the differences in the parameters' dtype, as CompressAI does: same support
        q32 = self.quantiles.detach()[:, 0, :]
        if not bool(torch.isfinite(q32).all()):
            raise ValueError("quantiles are not finite")
        median = q32[:, 1].to(torch.float64)
        minima = torch.clamp(torch.ceil(q32[:, 1] - q32[:, 0]), min=0).to(torch.int64)
        maxima = torch.clamp(torch.ceil(q32[:, 2] - q32[:, 1]), min=0).to(torch.int64)
        lengths = minima + maxima + 1
        width = int(lengths.max())
        if width > MAX_SUPPORT:
            raise ValueError(f"quantile range spans {width} symbols (> {MAX_SUPPORT})")
        k = torch.arange(width, dtype=torch.float64, device=median.device)
        samples = (median - minima.to(torch.float64))[:, None] + k[None, :]
        prob, lower, upper = self._interval(samples[:, None, :])
        prob, lower, upper = prob[:, 0, :], lower[:, 0, :], upper[:, 0, :]
        valid = k[None, :] < lengths[:, None]
        pmf = torch.where(valid, prob, torch.zeros_like(prob))
        last = upper.gather(1, (lengths - 1)[:, None])[:, 0]
        tail = torch.sigmoid(lower[:, 0]) + torch.sigmoid(-last)
        return PmfTable(
            lo=(-minima).cpu().numpy(),
            hi=maxima.cpu().numpy(),
            pmf=pmf.cpu().numpy(),
            tail_mass=tail.cpu().numpy(),
        )

    def extra_repr(self) -> str:
        return f"{self.channels}, filters={self.filters}, init_scale={self.init_scale}"


def scale_table(min: float = SCALE_BOUND, max: float = 256.0, levels: int = 64) -> Tensor:
    """Log-spaced Gaussian scales ``exp(linspace(log min, log max, levels))`` (float32)."""
    if not (0 < min < max) or levels < 2:
        raise ValueError(f"need 0 < min < max and levels >= 2, got {min}, {max}, {levels}")
    return torch.exp(torch.linspace(math.log(min), math.log(max), levels, device="cpu"))


def _std_normal_cdf(x: Tensor) -> Tensor:
    """Phi(x) via erfc, accurate in the lower tail where 1 - erf would cancel."""
    return 0.5 * torch.erfc(x * -(2.0**-0.5))


class GaussianConditional(nn.Module):
    """Discretised normal N(mean, scale) likelihood of latents given hyperprior scales (and means).

    Scales are lower-bounded at ``scale_bound`` (0.11). ``scale_table`` is the persistent buffer
    of the coder's scale levels (:class:`imgcomp.entropy.GaussianCoder` builds one table per
    level); :meth:`build_indexes` maps each scale to a level. Its length is the file's: a
    checkpoint may carry any number of levels (``sized_by_file``).
    """

    #: Buffers whose shape a loaded file sets (weight loaders check their rank, not their size).
    sized_by_file: tuple[str, ...] = ("scale_table",)

    def __init__(
        self,
        scales: Tensor | Sequence[float] | None = None,
        scale_bound: float = SCALE_BOUND,
        tail_mass: float = TAIL_MASS,
        likelihood_bound: float = LIKELIHOOD_BOUND,
    ) -> None:
        super().__init__()
        table = scale_table() if scales is None else torch.as_tensor(scales, dtype=torch.float32)
        self._check_table(table)
        self.scale_bound_value = float(scale_bound)
        self.tail_mass = float(tail_mass)
        self.likelihood_bound_value = float(likelihood_bound)
        self.register_buffer("scale_table", table.clone())
        self.register_buffer(
            "scale_bound", torch.tensor([self.scale_bound_value]), persistent=False
        )
        self.register_buffer(
            "likelihood_bound", torch.tensor([self.likelihood_bound_value]), persistent=False
        )

    @staticmethod
    def _check_table(table: Tensor) -> None:
        if table.dim() != 1 or table.numel() < 2:
            raise ValueError(f"scale table must be 1-D with >= 2 levels, got {list(table.shape)}")
        if not bool(torch.all(table > 0)) or not bool(torch.all(table[1:] > table[:-1])):
            raise ValueError("scale table must be positive and strictly increasing")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # a checkpoint may carry a scale table with another number of levels: adopt its size
        key = prefix + "scale_table"
        if key in state_dict and state_dict[key].shape != self.scale_table.shape:
            self._check_table(state_dict[key])
            shape = state_dict[key].shape
            self.scale_table = torch.empty(shape, device=self.scale_table.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def lower_bound_scale(self, scales: Tensor) -> Tensor:
        """``max(scales, 0.11)`` with the gradient-passing lower bound."""
        return lower_bound(scales, self.scale_bound)

    def likelihood(self, v: Tensor, scales: Tensor, means: Tensor | None = None) -> Tensor:
        """P[|V - mean| within 0.5 of |v - mean|] under N(0, max(scale, 0.11)), >= 1e-9."""
        values = torch.abs(v - means if means is not None else v)
        s = self.lower_bound_scale(scales)
        upper = _std_normal_cdf((0.5 - values) / s)
        lower = _std_normal_cdf((-0.5 - values) / s)
        return lower_bound(upper - lower, self.likelihood_bound)

    def quantize(self, v: Tensor, means: Tensor | None = None, noise: bool = False) -> Tensor:
        """Training proxy ``v + U(-.5,.5)`` if ``noise``, else ``round(v - means) + means``."""
        if noise:
            return _uniform_noise(v)
        if means is None:
            return torch.round(v)
        return torch.round(v - means) + means

    def symbols(self, v: Tensor, means: Tensor | None = None) -> Tensor:
        """Integer symbols ``round(v - means)`` (``round(v)`` without means), int32."""
        return torch.round(v if means is None else v - means).to(torch.int32)

    def dequantize(self, symbols: Tensor, means: Tensor | None = None) -> Tensor:
        """Inverse of :meth:`symbols`: ``symbols + means`` (float32)."""
        out = symbols.to(torch.float32 if means is None else means.dtype)
        return out if means is None else out + means

    def forward(
        self,
        v: Tensor,
        scales: Tensor,
        means: Tensor | None = None,
        training: bool | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Quantise ``v`` (noise in training, rounding in eval) -> (v_hat, likelihood)."""
        if training is None:
            training = self.training
        v_hat = self.quantize(v, means, noise=training)
        return v_hat, self.likelihood(v_hat, scales, means)

    def build_indexes(self, scales: Tensor) -> Tensor:
        """Index (int32) of the first scale-table level >= max(scale, 0.11), clamped to the last.

        Same as CompressAI's ``build_indexes`` (``levels-1 - #{table[:-1] >= scale}``).
        """
        s = torch.maximum(scales.detach(), self.scale_bound.to(scales.dtype)).contiguous()
        table = self.scale_table.to(s.dtype)
        idx = torch.searchsorted(table, s, right=False)
        return torch.clamp(idx, max=table.numel() - 1).to(torch.int32)
