"""Factorized (per-channel, i.i.d.) entropy coder, the counterpart of an entropy bottleneck."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imgcomp.entropy.stream import (
    INT32_MAX,
    INT32_MIN,
    MAX_SYMBOLS,
    as_symbols,
    decode_grouped,
    encode_grouped,
    escape_bits,
)
from imgcomp.entropy.tables import (
    categorical_model,
    check_freqs,
    min_code_bits,
    quantize_pmf,
    table_bits,
)


class FactorizedCoder:
    """Codes a [C, H, W] int latent with one fixed table per channel; exact, escapes included.

    Channel c's table covers the integers ``offsets[c] .. offsets[c] + len(freqs[c]) - 2``; its
    last entry is the escape, after which an out-of-support value is coded exactly (never
    clipped). The quantized ``freqs`` are the encoder/decoder contract.
    """

    def __init__(
        self, freqs: Sequence[np.ndarray], offsets: np.ndarray, precision: int = 16
    ) -> None:
        self.precision = int(precision)
        self.freqs = [check_freqs(f, self.precision) for f in freqs]
        if not self.freqs:
            raise ValueError("a FactorizedCoder needs at least one channel")
        offs = np.asarray(offsets)
        if offs.shape != (len(self.freqs),) or not np.issubdtype(offs.dtype, np.integer):
            raise ValueError(f"offsets must be {len(self.freqs)} integers, got {offs!r}")
        self.offsets = offs.astype(np.int64)
        self.lengths = np.array([f.shape[0] - 1 for f in self.freqs], dtype=np.int64)
        if np.any(self.offsets < INT32_MIN) or np.any(self.offsets + self.lengths - 1 > INT32_MAX):
            raise ValueError("every channel's support must lie within int32")
        self._models = [categorical_model(f, self.precision) for f in self.freqs]
        self._min_bits = np.array([min_code_bits(f, self.precision) for f in self.freqs])

    @classmethod
    def from_pmfs(
        cls,
        pmfs: Sequence[np.ndarray],
        offsets: np.ndarray,
        tail_mass: np.ndarray | None = None,
        precision: int = 16,
    ) -> FactorizedCoder:
        """Quantize per-channel float pmfs (escape mass = ``tail_mass[c]``, or else
        ``max(0, 1 - sum(pmf))``) with :func:`quantize_pmf` and build the coder."""
        tails = None if tail_mass is None else np.asarray(tail_mass, dtype=np.float64)
        if tails is not None and tails.shape != (len(pmfs),):
            raise ValueError(f"tail_mass must have shape ({len(pmfs)},), got {tails.shape}")
        freqs = []
        for c, pmf in enumerate(pmfs):
            p = np.asarray(pmf, dtype=np.float64)
            if p.ndim != 1 or p.shape[0] < 1:
                raise ValueError(f"pmf of channel {c} must be a non-empty 1-D array")
            tail = max(0.0, 1.0 - float(p.sum())) if tails is None else float(tails[c])
            freqs.append(quantize_pmf(np.append(p, tail), precision))
        return cls(freqs, offsets, precision)

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return len(self.freqs)

    def _layout(self, hw: int) -> tuple[np.ndarray, np.ndarray]:
        groups = np.arange(self.channels if hw else 0, dtype=np.int64)
        return groups, np.full(groups.shape, hw, dtype=np.int64)

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        dims = tuple(int(d) for d in shape)
        if len(dims) != 3 or dims[0] != self.channels or min(dims) < 0:
            raise ValueError(f"shape must be ({self.channels}, H, W), got {tuple(shape)}")
        if dims[1] * dims[2] * dims[0] > MAX_SYMBOLS:
            raise ValueError(f"shape {dims} exceeds {MAX_SYMBOLS} symbols")
        return dims

    def encode(self, symbols: np.ndarray) -> bytes:
        """Entropy-code int symbols of shape [C, H, W] (medians already removed)."""
        sym = as_symbols(symbols)
        _, h, w = self._check_shape(sym.shape)
        groups, counts = self._layout(h * w)
        return encode_grouped(
            self._models, self.offsets, self.lengths, groups, counts, sym.reshape(-1)
        )

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Decode ``data`` to int32 symbols of ``shape``; BitstreamError on bad data."""
        c, h, w = self._check_shape(shape)
        groups, counts = self._layout(h * w)
        vals = decode_grouped(
            data, self._models, self.offsets, self.lengths, groups, counts, self._min_bits
        )
        return vals.astype(np.int32).reshape(c, h, w)

    def estimated_bits(self, symbols: np.ndarray) -> float:
        """Ideal code length (bits) of ``symbols`` under the quantized tables, escapes included."""
        sym = as_symbols(symbols)
        _, h, w = self._check_shape(sym.shape)
        flat = sym.reshape(self.channels, h * w)
        total = 0.0
        for c in range(self.channels):
            idx = flat[c] - self.offsets[c]
            esc = (idx < 0) | (idx >= self.lengths[c])
            total += table_bits(self.freqs[c], np.where(esc, self.lengths[c], idx), self.precision)
            lo = self.offsets[c]
            total += escape_bits(flat[c][esc], lo, lo + self.lengths[c] - 1)
        return total
