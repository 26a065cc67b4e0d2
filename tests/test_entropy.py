"""Entropy coders: exact tables, exact round trips (escapes included), efficiency, hostile input."""

from __future__ import annotations

import math

import constriction
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import ndtri

from imgcomp.entropy import (
    BinaryCoder,
    FactorizedCoder,
    GaussianCoder,
    categorical_model,
    gaussian_pmf,
    quantize_pmf,
    table_bits,
)
from imgcomp.entropy.stream import _MAGIC
from imgcomp.errors import BitstreamError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
EXTREMES = [INT32_MIN, INT32_MIN + 1, -(10**6), -1000, 1000, 10**6, INT32_MAX - 1, INT32_MAX]
CAI_SCALES = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))  # CompressAI's scale table
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pmf_strategy = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-12, 1.0), st.floats(0.0, 1e-9)), min_size=2, max_size=40
).filter(lambda p: sum(p) > 0)


def _slot_symbol(model: object, slot: int) -> int:
    """Decode one symbol from an ANS state whose low 24 bits (the quantile slot) are ``slot``."""
    coder = constriction.stream.stack.AnsCoder(np.array([slot, 1], dtype=np.uint32))
    return int(coder.decode(model))


def _random_freqs(rng: np.random.Generator, n: int, precision: int) -> np.ndarray:
    extra = rng.multinomial((1 << precision) - n, rng.dirichlet(np.full(n, rng.uniform(0.05, 2))))
    return (extra + 1).astype(np.int64)


def _extremes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Fixed extremes and full-range int32 values (dense bit patterns for the escape payload)."""
    pool = np.concatenate([EXTREMES, rng.integers(INT32_MIN, INT32_MAX, size=8, endpoint=True)])
    return rng.choice(pool, size=n)


def _random_factorized(rng: np.random.Generator, channels: int) -> FactorizedCoder:
    pmfs, offsets = [], []
    for _ in range(channels):
        length = int(rng.integers(1, 25))
        pmfs.append(rng.dirichlet(np.full(length, 0.7)) * (1 - 1e-4))
        offsets.append(int(rng.integers(-30, 5)))
    return FactorizedCoder.from_pmfs(pmfs, np.array(offsets), np.full(channels, 1e-4))


# ---------------------------------------------------------------- quantize_pmf and the tables


def test_quantize_pmf_worked_example() -> None:
    # free = 16 - 3 = 13 units: 6.5, 3.25, 3.25 -> floors 6, 3, 3 (+1 each = 15); the one
    # missing unit goes to the largest remainder (symbol 0).
    assert quantize_pmf(np.array([0.5, 0.25, 0.25]), precision=4).tolist() == [8, 4, 4]
    # equal remainders: the lower index wins
    assert quantize_pmf(np.array([1.0, 1.0, 1.0]), precision=2).tolist() == [2, 1, 1]


@SETTINGS
@given(pmf=pmf_strategy, precision=st.integers(6, 24))
def test_quantize_pmf_contract(pmf: list[float], precision: int) -> None:
    p = np.array(pmf)
    freqs = quantize_pmf(p, precision)
    assert freqs.dtype == np.int64 and freqs.shape == p.shape
    assert int(freqs.sum()) == 1 << precision
    assert int(freqs.min()) >= 1
    np.testing.assert_array_equal(freqs, quantize_pmf(p.copy(), precision))  # deterministic
    # floor-plus-largest-remainder: each symbol gets 1 + floor(share) or one unit more
    share = p / math.fsum(pmf) * ((1 << precision) - p.size)
    assert np.all((freqs - 1 == np.floor(share)) | (freqs - 1 == np.floor(share) + 1))


def test_quantize_pmf_rows_and_errors() -> None:
    rows = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(quantize_pmf(rows), np.stack([quantize_pmf(r) for r in rows]))
    for bad in ([0.5, -0.1], [np.nan, 1.0], [0.0, 0.0], [1.0], [[[1.0]]]):
        with pytest.raises(ValueError):
            quantize_pmf(np.array(bad))
    with pytest.raises(ValueError):
        quantize_pmf(np.ones(17), precision=4)  # 17 symbols cannot all get >= 1 of 16
    with pytest.raises(ValueError):
        quantize_pmf(np.ones(3), precision=25)


@pytest.mark.parametrize("precision", [8, 12, 16, 20, 24])
def test_constriction_model_reproduces_table_exactly(precision: int) -> None:
    """Every CDF boundary of the constriction model sits exactly at 2**(24-p) * cumsum(freqs)."""
    rng = np.random.default_rng(precision)
    for _ in range(15):
        n = int(rng.integers(2, min(1 << precision, 2000)))
        freqs = _random_freqs(rng, n, precision)
        model = categorical_model(freqs, precision)
        cdf = np.concatenate([[0], np.cumsum(freqs)]) << (24 - precision)
        for i in rng.choice(np.arange(1, n), size=min(n - 1, 40), replace=False):
            assert _slot_symbol(model, int(cdf[i]) - 1) == i - 1
            assert _slot_symbol(model, int(cdf[i])) == i
        assert _slot_symbol(model, 0) == 0 and _slot_symbol(model, (1 << 24) - 1) == n - 1


def test_coded_length_matches_table_information() -> None:
    """bytes*8 equals -sum log2(freq / 2**16) up to the coder's constant overhead (< 96 bits)."""
    rng = np.random.default_rng(3)
    freqs = _random_freqs(rng, 40, 16)
    coder = FactorizedCoder([freqs], np.array([-20]))
    idx = rng.choice(40, size=(1, 100, 100), p=freqs / freqs.sum())
    idx[idx == 39] = 0  # index 39 is the escape; keep the data in support
    data = coder.encode(idx - 20)
    ideal = table_bits(freqs, idx.ravel())
    assert ideal == pytest.approx(coder.estimated_bits(idx - 20))
    assert 0 <= len(data) * 8 - ideal < 96
    assert abs(len(data) * 8 - ideal) / ideal < 0.01


# ---------------------------------------------------------------- FactorizedCoder


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    channels=st.integers(1, 5),
    h=st.integers(0, 7),
    w=st.integers(0, 7),
    extreme_rate=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_factorized_round_trip(
    seed: int, channels: int, h: int, w: int, extreme_rate: float
) -> None:
    rng = np.random.default_rng(seed)
    coder = _random_factorized(rng, channels)
    sym = np.stack(
        [
            coder.offsets[c] + rng.integers(-3, coder.lengths[c] + 3, size=(h, w))
            for c in range(channels)
        ]
    ).reshape(channels, h, w)
    mask = rng.random(sym.shape) < extreme_rate
    sym[mask] = _extremes(rng, int(mask.sum()))
    sym = sym.astype(np.int32)
    data = coder.encode(sym)
    assert data == coder.encode(sym.copy())  # deterministic bytes
    out = coder.decode(data, sym.shape)
    assert out.dtype == np.int32 and out.shape == sym.shape
    np.testing.assert_array_equal(out, sym)
    # a decoder rebuilt from the same float pmfs gets the identical tables
    twin = FactorizedCoder(coder.freqs, coder.offsets)
    np.testing.assert_array_equal(twin.decode(data, sym.shape), sym)


def test_factorized_support_edges_and_escape_cost() -> None:
    coder = FactorizedCoder.from_pmfs([np.full(5, 0.2)], np.array([-2]), np.array([1e-3]))
    edges = np.array([[[-2, 2, -3, 3, INT32_MIN, INT32_MAX]]], dtype=np.int32)
    np.testing.assert_array_equal(coder.decode(coder.encode(edges), edges.shape), edges)
    inside = coder.estimated_bits(np.array([[[2]]]))
    outside = coder.estimated_bits(np.array([[[3]]]))
    far = coder.estimated_bits(np.array([[[INT32_MAX]]]))
    assert inside < 3 < outside < far  # escape costs the escape symbol plus its payload
    assert 31 < far - outside < 64  # 31 more mantissa bits plus a longer length code


def test_factorized_escape_distances_up_to_32_bits() -> None:
    """Supports at the int32 ends, values at the opposite end: escape distances near 2**32."""
    rng = np.random.default_rng(2)
    coder = FactorizedCoder.from_pmfs(
        [np.full(10, 0.1)] * 2, np.array([INT32_MAX - 9, INT32_MIN]), np.array([0.5, 0.5])
    )
    sym = np.stack(
        [
            _extremes(rng, 400).reshape(20, 20),
            rng.integers(INT32_MIN, INT32_MAX, size=(20, 20), endpoint=True),
        ]
    ).astype(np.int32)
    sym[0, 0, :3] = [INT32_MIN, INT32_MIN + 1, INT32_MAX - 10]
    sym[1, 0, :3] = [INT32_MAX, INT32_MAX - 1, INT32_MIN + 10]
    np.testing.assert_array_equal(coder.decode(coder.encode(sym), sym.shape), sym)


def test_factorized_latent_size_and_efficiency() -> None:
    rng = np.random.default_rng(7)
    coder = _random_factorized(rng, 128)
    sym = np.stack(
        [
            coder.offsets[c]
            + rng.choice(coder.lengths[c] + 1, size=(8, 12), p=coder.freqs[c] / 2**16)
            for c in range(128)
        ]
    ).astype(np.int32)
    data = coder.encode(sym)
    np.testing.assert_array_equal(coder.decode(data, sym.shape), sym)
    ideal = coder.estimated_bits(sym)
    assert abs(len(data) * 8 - ideal) / ideal < 0.01


def test_factorized_rejects_bad_arguments() -> None:
    coder = FactorizedCoder.from_pmfs([np.full(4, 0.25)] * 2, np.array([0, 0]))
    with pytest.raises(ValueError):
        coder.encode(np.zeros((3, 2, 2), np.int32))  # wrong channel count
    with pytest.raises(ValueError):
        coder.encode(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError):
        coder.encode(np.full((2, 1, 1), 2**40))  # not int32
    with pytest.raises(ValueError):
        coder.encode(np.full((2, 1, 1), 2**64 - 1, dtype=np.uint64))  # would wrap to -1
    with pytest.raises(ValueError):
        coder.decode(b"", (2, 1 << 15, 1 << 15))  # absurd shape, before any allocation
    with pytest.raises(ValueError):
        FactorizedCoder([np.array([1, 2])], np.array([0]))  # does not sum to 2**16
    with pytest.raises(ValueError):
        FactorizedCoder.from_pmfs([np.full(4, 0.25)], np.array([INT32_MAX - 1]))


# ---------------------------------------------------------------- GaussianCoder


def test_build_indexes_semantics() -> None:
    coder = GaussianCoder(np.array([1.0, 2.0, 4.0]))
    scales = np.array([1e-3, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 4.5, 1e9, np.inf, np.nan])
    np.testing.assert_array_equal(coder.build_indexes(scales), [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    assert coder.build_indexes(np.ones((2, 3))).shape == (2, 3)
    # the chosen entry is the smallest table scale >= the scale
    cai = GaussianCoder(CAI_SCALES)
    s = np.exp(np.random.default_rng(0).uniform(np.log(0.2), np.log(250), 1000))
    idx = cai.build_indexes(s)
    assert np.all(CAI_SCALES[idx] >= s)
    assert np.all(CAI_SCALES[idx[idx > 0] - 1] < s[idx > 0])


def test_gaussian_tables() -> None:
    coder = GaussianCoder(CAI_SCALES, tail_mass=1e-9)
    multiplier = -ndtri(0.5e-9)
    np.testing.assert_array_equal(coder.radii, np.ceil(CAI_SCALES * multiplier).astype(int))
    for f, r in zip(coder.freqs, coder.radii, strict=True):
        assert f.shape == (2 * r + 2,) and int(f.sum()) == 2**16 and f.min() >= 1
        # symmetric up to the largest-remainder tie-break (ties go to the lower index)
        assert np.abs(f[: 2 * r + 1] - f[2 * r :: -1]).max() <= 1
        assert f[r] == f[:-1].max()
    pmf, radius = gaussian_pmf(1.0, 1e-9)
    assert radius == 7 and pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert pmf[-1] == pytest.approx(2 * 0.5 * math.erfc(7.5 / math.sqrt(2)), rel=1e-9)
    with pytest.raises(ValueError):
        GaussianCoder(np.array([2.0, 1.0]))
    with pytest.raises(ValueError):
        GaussianCoder(np.array([1e6]))  # table wider than 16-bit frequencies allow


def test_gaussian_latent_round_trip_rare_escapes_and_efficiency() -> None:
    rng = np.random.default_rng(11)
    coder = GaussianCoder(CAI_SCALES)
    scales = np.exp(rng.uniform(np.log(0.11), np.log(60), size=(192, 32, 48)))
    idx = coder.build_indexes(scales)
    sym = np.round(rng.normal(0.0, scales)).astype(np.int32)
    assert int(np.sum(np.abs(sym) > coder.radii[idx])) == 0  # in-model data: no escapes
    data = coder.encode(sym, idx)
    out = coder.decode(data, idx)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, sym)
    ideal = coder.estimated_bits(sym, idx)
    assert abs(len(data) * 8 - ideal) / ideal < 0.01
    # the 16-bit tables cost < 1% over the float64 Gaussian model itself
    float_bits = 0.0
    for g in np.unique(idx):
        pmf, r = gaussian_pmf(float(CAI_SCALES[g]), 1e-9)
        float_bits -= np.log2(pmf[sym[idx == g] + r]).sum()
    assert ideal / float_bits < 1.01


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple),
    extreme_rate=st.sampled_from([0.0, 0.2, 1.0]),
)
def test_gaussian_round_trip(seed: int, shape: tuple[int, ...], extreme_rate: float) -> None:
    rng = np.random.default_rng(seed)
    table = np.sort(rng.uniform(0.05, 30, size=int(rng.integers(1, 8))))
    table = np.unique(table)
    coder = GaussianCoder(table, tail_mass=float(rng.choice([1e-9, 1e-3, 0.2])))
    idx = rng.integers(0, table.size, size=shape)
    sym = np.round(rng.normal(0, table[idx] * 1.5)).astype(np.int64)
    mask = rng.random(shape) < extreme_rate
    sym[mask] = _extremes(rng, int(mask.sum()))
    data = coder.encode(sym, idx)
    assert data == coder.encode(sym, idx)
    np.testing.assert_array_equal(coder.decode(data, idx), sym)


# ---------------------------------------------------------------- BinaryCoder


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 3000), p=st.floats(0.0, 1.0))
def test_binary_round_trip(seed: int, n: int, p: float) -> None:
    bits = np.random.default_rng(seed).random(n) < p
    coder = BinaryCoder()
    data = coder.encode(bits)
    assert data == coder.encode(bits.astype(np.uint8))
    out = coder.decode(data, n)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, bits)


def test_binary_header_and_efficiency() -> None:
    bits = np.zeros(20000, np.uint8)
    bits[:5000] = 1
    data = BinaryCoder().encode(bits)
    assert int.from_bytes(data[:2], "little") == 2**14  # P(1) = 1/4 in 16 bits
    entropy = 20000 * -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert abs(len(data) * 8 - entropy) / entropy < 0.01
    assert len(BinaryCoder().encode(np.zeros(10000, bool))) < 16  # p clamps to 1/2**16
    with pytest.raises(ValueError):
        BinaryCoder().encode(np.array([0, 2]))


# ---------------------------------------------------------------- untrusted input


def _decoders() -> list:
    rng = np.random.default_rng(5)
    fact = _random_factorized(rng, 3)
    gauss = GaussianCoder(CAI_SCALES[::8])
    gidx = rng.integers(0, 8, size=(4, 5, 6))
    fsym = np.stack([fact.offsets[c] + rng.integers(0, fact.lengths[c], (5, 6)) for c in range(3)])
    fsym[0, 0, 0] = 10**6
    gsym = np.round(rng.normal(0, CAI_SCALES[::8][gidx]))
    gsym[1, 1, 1] = INT32_MIN
    bits = rng.random(300) < 0.3
    return [
        (fact.encode(fsym), lambda d: fact.decode(d, fsym.shape)),
        (gauss.encode(gsym.astype(np.int32), gidx), lambda d: gauss.decode(d, gidx)),
        (BinaryCoder().encode(bits), lambda d: BinaryCoder().decode(d, 300)),
    ]


DECODERS = _decoders()


def _bad_or_wellformed(decode, data: bytes) -> None:
    try:
        out = decode(data)
    except BitstreamError:
        return
    assert isinstance(out, np.ndarray)  # undetectable corruption: well-formed, CRC's job


@pytest.mark.parametrize("case", range(len(DECODERS)))
def test_truncated_padded_and_empty_streams_raise(case: int) -> None:
    data, decode = DECODERS[case]
    decode(data)  # the intact stream decodes
    for cut in range(len(data)):
        for broken in (data[:cut], data[len(data) - cut :]):
            with pytest.raises(BitstreamError):
                decode(broken)
    for extra in (b"\x01\x00\x00\x00", b"\x07", b"\x00\x00\x00\x00"):
        with pytest.raises(BitstreamError):
            decode(data + extra)
    with pytest.raises(BitstreamError):
        decode(data[:2] + b"\x05\x00\x00\x00" + data[2:] if case == 2 else b"\x05\0\0\0" + data)


@pytest.mark.parametrize("case", range(len(DECODERS)))
def test_bit_flips_raise_or_stay_well_formed(case: int) -> None:
    data, decode = DECODERS[case]
    raised = 0
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            out = decode(bytes(flipped))
        except BitstreamError:
            raised += 1
        else:
            assert isinstance(out, np.ndarray)
    assert raised > 0


@settings(max_examples=150, deadline=None)
@given(case=st.integers(0, len(DECODERS) - 1), data=st.binary(max_size=200))
def test_random_bytes_never_crash(case: int, data: bytes) -> None:
    _bad_or_wellformed(DECODERS[case][1], data)


def test_forged_leading_word_is_rejected() -> None:
    """A word prepended to a stream whose decoding refills it just before the end magic (so the
    magic itself decodes correctly) must still fail: the coder is not empty afterwards."""
    coder = FactorizedCoder.from_pmfs([np.full(4, 0.25)], np.array([0]))
    forged = (_MAGIC << 8).to_bytes(4, "little")
    rng = np.random.default_rng(1)
    for n in range(1, 60):
        sym = rng.integers(0, 4, (1, 1, n))
        data = coder.encode(sym)
        np.testing.assert_array_equal(coder.decode(data, sym.shape), sym)
        with pytest.raises(BitstreamError):
            coder.decode(forged + data, sym.shape)


def test_escaped_value_beyond_int32_raises() -> None:
    """A stream whose escape payload decodes to a value outside int32 is rejected."""
    pmf, tail = [np.full(5, 0.2)], np.array([0.01])
    writer = FactorizedCoder.from_pmfs(pmf, np.array([0]), tail)
    reader = FactorizedCoder.from_pmfs(pmf, np.array([INT32_MAX - 10]), tail)
    data = writer.encode(np.array([[[2**30]]], dtype=np.int32))
    np.testing.assert_array_equal(writer.decode(data, (1, 1, 1)), [[[2**30]]])
    with pytest.raises(BitstreamError):
        reader.decode(data, (1, 1, 1))
