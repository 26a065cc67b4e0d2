"""Conditional Gaussian entropy coder: one quantized table per entry of a scale table."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

from imgcomp.entropy.stream import (
    MAX_SYMBOLS,
    as_symbols,
    decode_grouped,
    encode_grouped,
    escape_bits,
)
from imgcomp.entropy.tables import categorical_model, min_code_bits, quantize_pmf, table_bits


def gaussian_pmf(scale: float, tail_mass: float) -> tuple[np.ndarray, int]:
    """Float64 pmf of a zero-mean Gaussian of std ``scale`` rounded to the integers -R..R, with
    ``R = ceil(scale * Phi^-1(1 - tail_mass / 2))``, followed by the escape mass (both tails).

    Each mass is evaluated on the lower tail (``Phi((0.5 - |k|) / s) - Phi((-0.5 - |k|) / s)``)
    so small probabilities keep full relative precision.
    """
    radius = math.ceil(scale * float(-ndtri(tail_mass / 2.0)))
    a = np.abs(np.arange(-radius, radius + 1, dtype=np.float64))
    pmf = ndtr((0.5 - a) / scale) - ndtr((-0.5 - a) / scale)
    tail = 2.0 * float(ndtr((-radius - 0.5) / scale))
    return np.append(pmf, tail), radius


class GaussianCoder:
    """Codes int symbols ``round(y - mean)`` given, per element, an index into ``scale_table``.

    Table i is the :func:`gaussian_pmf` of ``scale_table[i]`` quantized with
    :func:`quantize_pmf`; symbols are coded grouped by index (ascending index, then C-order
    position within the group), one fixed model per group. Out-of-support values are escaped.
    """

    def __init__(self, scale_table: np.ndarray, tail_mass: float = 1e-9, precision: int = 16):
        table = np.asarray(scale_table, dtype=np.float64)
        if table.ndim != 1 or table.size == 0 or table.size > np.iinfo(np.int16).max:
            raise ValueError("scale_table must be a non-empty 1-D array of at most 32767 scales")
        if not np.all(np.isfinite(table)) or np.any(table <= 0) or np.any(np.diff(table) <= 0):
            raise ValueError("scale_table must be finite, positive and strictly increasing")
        if not 0.0 < float(tail_mass) < 1.0:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        self.scale_table = table
        self.tail_mass = float(tail_mass)
        self.precision = int(precision)
        self.freqs: list[np.ndarray] = []
        radii = []
        for s in table:
            if s * float(-ndtri(self.tail_mass / 2.0)) >= (1 << (self.precision - 1)) - 1:
                raise ValueError(f"scale {s} needs a table wider than {self.precision} bits")
            pmf, radius = gaussian_pmf(float(s), self.tail_mass)
            self.freqs.append(quantize_pmf(pmf, self.precision))
            radii.append(radius)
        self.radii = np.array(radii, dtype=np.int64)
        self._lows = -self.radii
        self._lengths = 2 * self.radii + 1
        self._models = [categorical_model(f, self.precision) for f in self.freqs]
        self._min_bits = np.array([min_code_bits(f, self.precision) for f in self.freqs])

    def build_indexes(self, scales: np.ndarray) -> np.ndarray:
        """Per element, the index of the smallest table scale >= the scale, as int32.

        Scales at or below ``scale_table[0]`` give 0; scales above the last entry, +inf and NaN
        give the last index (as CompressAI's ``build_indexes``, whose lower bound maps to 0).
        """
        s = np.asarray(scales, dtype=np.float64)
        idx = np.searchsorted(self.scale_table, s, side="left")
        return np.minimum(idx, self.scale_table.size - 1).astype(np.int32)

    def _layout(self, indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.asarray(indexes)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indexes must have an integer dtype, got {idx.dtype}")
        if idx.size > MAX_SYMBOLS:
            raise ValueError(f"{idx.size} indexes exceed the limit {MAX_SYMBOLS}")
        flat = idx.reshape(-1)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= self.scale_table.size):
            raise ValueError(f"indexes must lie in [0, {self.scale_table.size - 1}]")
        flat = flat.astype(np.int16)  # stable int16 argsort is a radix sort: O(n)
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=self.scale_table.size)
        groups = np.flatnonzero(counts)
        return order, groups, counts[groups]

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """Entropy-code int ``symbols`` (any shape) with the tables picked by ``indexes``."""
        sym = as_symbols(symbols)
        if np.shape(indexes) != sym.shape:
            raise ValueError(f"indexes shape {np.shape(indexes)} != symbols shape {sym.shape}")
        order, groups, counts = self._layout(indexes)
        values = sym.reshape(-1)[order]
        return encode_grouped(self._models, self._lows, self._lengths, groups, counts, values)

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """Decode int32 symbols shaped like ``indexes``; BitstreamError on bad data."""
        order, groups, counts = self._layout(indexes)
        values = decode_grouped(
            data, self._models, self._lows, self._lengths, groups, counts, self._min_bits
        )
        out = np.empty(order.shape, dtype=np.int32)
        out[order] = values
        return out.reshape(np.shape(indexes))

    def estimated_bits(self, symbols: np.ndarray, indexes: np.ndarray) -> float:
        """Ideal code length (bits) under the quantized tables, escapes included."""
        sym = as_symbols(symbols).reshape(-1)
        idx = np.asarray(indexes).reshape(-1).astype(np.int64)
        if idx.shape != sym.shape:
            raise ValueError("indexes and symbols must have the same size")
        total = 0.0
        for g in np.unique(idx):
            vals = sym[idx == g]
            rel = vals + self.radii[g]
            esc = (rel < 0) | (rel >= self._lengths[g])
            rel = np.where(esc, self._lengths[g], rel)
            total += table_bits(self.freqs[g], rel, self.precision)
            total += escape_bits(vals[esc], -self.radii[g], self.radii[g])
        return total
