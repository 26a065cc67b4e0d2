"""ANS stream framing, escape coding and per-group symbol coding shared by the coders.

Layout of one stream (constriction's ``AnsCoder`` is a stack; this is *decoding* order): the
groups' table indices (group by group, each with its own fixed model), then the escaped values'
payload (all signs, all lengths, all low mantissa chunks, all high chunks), then a 16-bit magic.
The bytes are the coder's uint32 words, little-endian. The decoder checks the magic and that the
coder is exactly empty afterwards, which catches empty, truncated, padded and (almost all)
random inputs; a bit flip may still decode to a different well-formed result, which the
container's CRC is there to catch.

Escapes: a value v outside its table's support [lo, hi] is coded as the escape index followed by
``below = v < lo``, the distance ``d = lo - v`` or ``v - hi`` (1 <= d < 2**32) as its bit length
n (1..32, fixed model ~ 2**-n, so Elias-gamma-like) and its n-1 low bits (uniform, in chunks of
<= 16 bits). Any int32 round-trips; nothing read from the stream can ask for more than 32 bits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import constriction
import numpy as np

from imgcomp.entropy.tables import categorical_model, quantize_pmf
from imgcomp.errors import BitstreamError

_AnsCoder = constriction.stream.stack.AnsCoder
_Uniform = constriction.stream.model.Uniform

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
#: Upper bound on the symbols one call codes; guards allocations driven by a caller's shape.
MAX_SYMBOLS = 1 << 28
#: Bits a coded payload may fall short of its symbols' information content: the ANS coder's
#: final state and word padding.
PAYLOAD_SLACK_BITS = 128

_MAGIC = 0xC0DE
_MAGIC_MODEL = _Uniform(1 << 16)
_SIGN_MODEL = _Uniform(2)
_UNIFORM_FAMILY = _Uniform()
_MAX_ESCAPE_BITS = 32
_CHUNK_BITS = 16
#: Table of (bit length of the escape distance) - 1, i.e. 0..31, with P(n) ~ 2**-n.
_LENGTH_FREQS = quantize_pmf(np.exp2(-np.arange(1, _MAX_ESCAPE_BITS + 1, dtype=np.float64)), 16)
_LENGTH_MODEL = categorical_model(_LENGTH_FREQS, 16)


def as_symbols(values: np.ndarray, name: str = "symbols") -> np.ndarray:
    """Validate integer symbols that fit in int32 and return them as an int64 array."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {arr.dtype}")
    if arr.size > MAX_SYMBOLS:
        raise ValueError(f"{name}: {arr.size} symbols exceed the limit {MAX_SYMBOLS}")
    if arr.size and (int(arr.min()) < INT32_MIN or int(arr.max()) > INT32_MAX):
        raise ValueError(f"{name} must fit in int32")  # checked before any cast can wrap
    return arr.astype(np.int64, copy=False)


def new_encoder() -> object:
    """An ``AnsCoder`` holding only the end-of-stream magic (decoded last)."""
    coder = _AnsCoder()
    coder.encode_reverse(np.array([_MAGIC], dtype=np.int32), _MAGIC_MODEL)
    return coder


def to_bytes(coder: object) -> bytes:
    """The coder's compressed words as little-endian bytes."""
    return coder.get_compressed().astype("<u4", copy=False).tobytes()


def open_decoder(data: bytes) -> object:
    """An ``AnsCoder`` over untrusted ``data``; BitstreamError if it cannot be ANS data."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) % 4:
        raise BitstreamError(f"entropy-coded payload of {len(raw)} bytes is not whole words")
    words = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    if words.size and words[-1] == 0:
        raise BitstreamError("entropy-coded payload ends in a zero word")
    try:
        return _AnsCoder(words)
    except Exception as exc:  # constriction's own validation
        raise BitstreamError(f"invalid entropy-coded payload: {exc}") from exc


def close_decoder(coder: object) -> None:
    """Check the magic and that every word was consumed; BitstreamError otherwise."""
    magic = int(coder.decode(_MAGIC_MODEL))
    if magic != _MAGIC or not coder.is_empty():
        raise BitstreamError("entropy-coded payload is corrupt, truncated or has trailing data")


def _bit_length(d: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values below 2**32, exactly (no float logs)."""
    n = np.zeros(d.shape, dtype=np.int64)
    for k in range(_MAX_ESCAPE_BITS):
        n += (d >> k) > 0
    return n


def _encode_escapes(coder: object, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    below = values < lo
    dist = np.where(below, lo - values, values - hi)
    nbits = _bit_length(dist)
    mant = dist - (np.int64(1) << (nbits - 1))
    lo_bits = np.minimum(nbits - 1, _CHUNK_BITS)
    hi_bits = nbits - 1 - lo_bits
    lo_part = mant & ((np.int64(1) << lo_bits) - 1)
    hi_part = mant >> lo_bits
    # Reverse of decoding order: high chunks, low chunks, lengths, signs.
    for part, bits in ((hi_part, hi_bits), (lo_part, lo_bits)):
        keep = bits > 0
        if np.any(keep):
            sizes = (np.int64(1) << bits[keep]).astype(np.int32)
            coder.encode_reverse(part[keep].astype(np.int32), _UNIFORM_FAMILY, sizes)
    coder.encode_reverse((nbits - 1).astype(np.int32), _LENGTH_MODEL)
    coder.encode_reverse(below.astype(np.int32), _SIGN_MODEL)


def _decode_escapes(coder: object, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    k = lo.shape[0]
    below = coder.decode(_SIGN_MODEL, k).astype(bool)
    nbits = coder.decode(_LENGTH_MODEL, k).astype(np.int64) + 1  # 1..32 by construction
    lo_bits = np.minimum(nbits - 1, _CHUNK_BITS)
    hi_bits = nbits - 1 - lo_bits
    parts = []
    for bits in (lo_bits, hi_bits):
        part = np.zeros(k, dtype=np.int64)
        keep = bits > 0
        if np.any(keep):
            sizes = (np.int64(1) << bits[keep]).astype(np.int32)
            part[keep] = coder.decode(_UNIFORM_FAMILY, sizes)
        parts.append(part)
    dist = (np.int64(1) << (nbits - 1)) + (parts[1] << lo_bits) + parts[0]
    values = np.where(below, lo - dist, hi + dist)
    if k and (int(values.min()) < INT32_MIN or int(values.max()) > INT32_MAX):
        raise BitstreamError("escaped value outside int32")
    return values


def encode_grouped(
    models: Sequence[object],
    lows: np.ndarray,
    lengths: np.ndarray,
    groups: np.ndarray,
    counts: np.ndarray,
    values: np.ndarray,
) -> bytes:
    """Code ``values`` (int64, group after group) with model ``models[g]`` per group.

    Model g covers ``lows[g] .. lows[g] + lengths[g] - 1`` with table indices 0..lengths[g]-1
    and escape index ``lengths[g]``. ``groups``/``counts`` list the groups in decoding order.
    """
    elem_lo = np.repeat(lows[groups], counts)
    elem_len = np.repeat(lengths[groups], counts)
    idx = values - elem_lo
    esc = (idx < 0) | (idx >= elem_len)
    idx = np.where(esc, elem_len, idx).astype(np.int32)
    coder = new_encoder()
    if np.any(esc):
        lo_e = elem_lo[esc]
        _encode_escapes(coder, values[esc], lo_e, lo_e + elem_len[esc] - 1)
    ends = np.cumsum(counts)
    for g, end, count in zip(groups[::-1], ends[::-1], counts[::-1], strict=True):
        coder.encode_reverse(idx[end - count : end], models[g])
    return to_bytes(coder)


@contextmanager
def decoding_errors() -> Iterator[None]:
    """Whatever constriction raises on hostile data becomes a BitstreamError (ours pass)."""
    try:
        yield
    except BitstreamError:
        raise
    except Exception as exc:
        raise BitstreamError(f"entropy decoding failed: {exc}") from exc


def decode_grouped(
    data: bytes,
    models: Sequence[object],
    lows: np.ndarray,
    lengths: np.ndarray,
    groups: np.ndarray,
    counts: np.ndarray,
    min_bits: np.ndarray | None = None,
) -> np.ndarray:
    """Inverse of :func:`encode_grouped`; BitstreamError on any inconsistency.

    ``min_bits[g]`` (:func:`imgcomp.entropy.tables.min_code_bits` of model g) bounds what the
    symbols cost: a payload too short to hold them is refused before anything is decoded or
    allocated (a few bytes declaring a huge latent)."""
    if min_bits is not None and len(groups):
        need = float(np.dot(np.asarray(counts, np.float64), min_bits[groups]))
        if 8 * len(data) + PAYLOAD_SLACK_BITS < need:
            raise BitstreamError(
                f"an entropy-coded section of {len(data)} bytes cannot hold its "
                f"{int(np.sum(counts)):,} symbols: under the model's tables they need at least "
                f"{need / 8:,.0f} bytes"
            )
    coder = open_decoder(data)
    with decoding_errors():
        parts = [coder.decode(models[g], int(c)) for g, c in zip(groups, counts, strict=True)]
        idx = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        elem_lo = np.repeat(lows[groups], counts)
        elem_len = np.repeat(lengths[groups], counts)
        values = idx + elem_lo
        esc = idx == elem_len
        if np.any(esc):
            lo_e = elem_lo[esc]
            values[esc] = _decode_escapes(coder, lo_e, lo_e + elem_len[esc] - 1)
        close_decoder(coder)
    return values


def escape_bits(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Ideal bits of the escape payload of out-of-support ``values`` (sign, length, mantissa)."""
    if values.size == 0:
        return 0.0
    dist = np.where(values < lo, lo - values, values - hi)
    nbits = _bit_length(dist)
    len_freqs = _LENGTH_FREQS[nbits - 1].astype(np.float64)
    return float(np.sum(1.0 + (16.0 - np.log2(len_freqs)) + (nbits - 1)))
