"""Integer frequency tables: the exact contract between an entropy encoder and its decoder.

A table is an int64 array of frequencies that sums to exactly ``2**precision`` with every entry
>= 1; the last entry is the escape symbol. ``categorical_model`` turns a table into a constriction
model whose fixed-point CDF is *exactly* the table's (scaled to constriction's 24 bits), so the
decoder, rebuilding the same table from data both sides have, sees the identical model.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

#: Fixed-point precision of every model the Python ``AnsCoder`` uses (``DefaultAnsCoder``: u32
#: words, 24-bit probabilities). Our tables use ``precision <= ANS_PRECISION`` bits.
ANS_PRECISION = 24

_Categorical = constriction.stream.model.Categorical


def _check_precision(precision: int) -> int:
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
        raise TypeError(f"precision must be an int, got {type(precision).__name__}")
    if not 2 <= int(precision) <= ANS_PRECISION:
        raise ValueError(f"precision must be in [2, {ANS_PRECISION}], got {precision}")
    return int(precision)


def _quantize_row(pmf: np.ndarray, precision: int) -> np.ndarray:
    n = pmf.shape[0]
    if n < 2:
        raise ValueError("a pmf needs at least 2 entries (symbols plus escape)")
    if n > (1 << precision) or n >= (1 << ANS_PRECISION) - 1:
        raise ValueError(f"{n} symbols do not fit {precision}-bit frequencies")
    if not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
        raise ValueError("pmf entries must be finite and non-negative")
    total = math.fsum(pmf.tolist())  # exactly rounded, so identical on every platform
    if not total > 0.0:
        raise ValueError("pmf must have positive mass")
    free = (1 << precision) - n  # every symbol first gets frequency 1
    scaled = (pmf / total) * float(free)
    base = np.floor(scaled)
    freqs = base.astype(np.int64) + 1
    missing = (1 << precision) - int(freqs.sum())
    if missing < 0 or missing >= n:  # cannot happen for IEEE arithmetic; keep the guarantee loud
        raise AssertionError("largest-remainder fix-up out of range")
    if missing:
        remainder = scaled - base
        order = np.argsort(-remainder, kind="stable")  # ties -> lower index first
        freqs[order[:missing]] += 1
    return freqs


def quantize_pmf(pmf: np.ndarray, precision: int = 16) -> np.ndarray:
    """Quantize float probabilities (last entry = escape mass) to int64 frequencies.

    Rule: each of the n symbols gets 1, the other ``2**precision - n`` units are split in
    proportion to ``pmf / fsum(pmf)`` by floor plus largest remainder (ties to the lower index).
    The result sums to exactly ``2**precision``, is >= 1 everywhere and is bit-identical on any
    IEEE-754 platform. A 2-D input is quantized row by row.
    """
    precision = _check_precision(precision)
    arr = np.asarray(pmf, dtype=np.float64)
    if arr.ndim == 1:
        return _quantize_row(arr, precision)
    if arr.ndim == 2:
        if arr.shape[0] == 0:
            return np.zeros((0, arr.shape[1]), dtype=np.int64)
        return np.stack([_quantize_row(row, precision) for row in arr])
    raise ValueError(f"pmf must be 1-D or 2-D, got shape {arr.shape}")


def check_freqs(freqs: np.ndarray, precision: int) -> np.ndarray:
    """Validate a quantized table (1-D ints, each >= 1, sum == 2**precision); return int64 copy."""
    precision = _check_precision(precision)
    arr = np.asarray(freqs)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("a frequency table must be a 1-D integer array")
    arr = arr.astype(np.int64)
    if arr.shape[0] < 2 or arr.shape[0] >= (1 << ANS_PRECISION) - 1:
        raise ValueError(f"a frequency table needs 2 .. 2**24-2 entries, got {arr.shape[0]}")
    if np.any(arr < 1) or int(arr.sum()) != (1 << precision):
        raise ValueError(f"frequencies must be >= 1 and sum to exactly 2**{precision}")
    return arr


def categorical_model(freqs: np.ndarray, precision: int = 16) -> object:
    """A concrete constriction model whose 24-bit CDF is exactly ``freqs * 2**(24 - precision)``.

    constriction's fast quantizer maps weights w to CDF ``floor(W_i * s) + i`` with
    ``s = (2**24 - n) / sum(w)``. Passing ``w_i = f_i * 2**(24 - precision) - 1`` (integers, so
    every partial sum is exact in float32/float64) makes ``s == 1.0`` exactly and the CDF
    ``2**(24 - precision) * F_i``: the table itself, with no rounding anywhere. (Passing
    ``f / 2**precision`` instead is *not* exact; ``tests/test_entropy.py`` checks both.)
    """
    arr = check_freqs(freqs, precision)
    weights = (arr << (ANS_PRECISION - precision)) - 1
    return _Categorical(weights.astype(np.float64), perfect=False)


def min_code_bits(freqs: np.ndarray, precision: int = 16) -> float:
    """The fewest bits any symbol costs under ``freqs``: ``precision - log2(max freq)``."""
    return float(precision - np.log2(float(np.max(freqs))))


def table_bits(freqs: np.ndarray, idx: np.ndarray, precision: int = 16) -> float:
    """Ideal code length in bits, ``-sum log2(freqs[idx] / 2**precision)``, of table indices."""
    arr = np.asarray(freqs, dtype=np.float64)
    sel = arr[np.asarray(idx, dtype=np.int64)]
    return float(np.sum(precision - np.log2(sel)))
