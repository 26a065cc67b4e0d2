"""Static-Bernoulli bit coder (e.g. for the binarized codes of the Toderici RNN codec)."""

from __future__ import annotations

import numpy as np

from imgcomp.entropy.stream import (
    MAX_SYMBOLS,
    close_decoder,
    decoding_errors,
    new_encoder,
    open_decoder,
    to_bytes,
)
from imgcomp.entropy.tables import categorical_model
from imgcomp.errors import BitstreamError

_P_BITS = 16
_HEADER = 2  # bytes: P(bit = 1) * 2**16 as a little-endian uint16 in [1, 2**16 - 1]


class BinaryCoder:
    """Codes a bit vector with one static probability estimated from the bits themselves.

    The payload is ``q`` (uint16 LE, ``q = round(2**16 * ones / n)`` clamped to [1, 2**16 - 1])
    followed by an ANS stream of the bits under the exact table ``[2**16 - q, q]``.
    """

    @staticmethod
    def _model(q: int) -> object:
        return categorical_model(np.array([(1 << _P_BITS) - q, q], dtype=np.int64), _P_BITS)

    def encode(self, bits: np.ndarray) -> bytes:
        """Code a (flattened) array of 0/1 values (bool or any integer dtype)."""
        arr = np.asarray(bits).reshape(-1)
        if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"bits must be bool or integer, got {arr.dtype}")
        if arr.size > MAX_SYMBOLS:
            raise ValueError(f"{arr.size} bits exceed the limit {MAX_SYMBOLS}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 1):
            raise ValueError("bits must be 0 or 1")
        n = int(arr.size)
        ones = int(np.count_nonzero(arr))
        q = (2 * ones * (1 << _P_BITS) + n) // (2 * n) if n else 1 << (_P_BITS - 1)
        q = min(max(q, 1), (1 << _P_BITS) - 1)
        coder = new_encoder()
        if n:
            coder.encode_reverse(arr.astype(np.int32), self._model(q))
        return q.to_bytes(_HEADER, "little") + to_bytes(coder)

    def decode(self, data: bytes, n: int) -> np.ndarray:
        """Decode ``n`` bits as a uint8 array; BitstreamError on bad data."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_SYMBOLS:
            raise ValueError(f"n must be an int in [0, {MAX_SYMBOLS}], got {n!r}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        raw = bytes(data)
        if len(raw) < _HEADER:
            raise BitstreamError("binary payload shorter than its header")
        q = int.from_bytes(raw[:_HEADER], "little")
        if not 1 <= q < (1 << _P_BITS):
            raise BitstreamError(f"invalid bit probability {q}")
        coder = open_decoder(raw[_HEADER:])
        with decoding_errors():
            bits = coder.decode(self._model(q), int(n)) if n else np.zeros(0, np.int32)
            close_decoder(coder)
        return bits.astype(np.uint8)
