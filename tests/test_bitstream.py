"""The stream container: layout, bounds checks and typed errors on hostile input."""

from __future__ import annotations

import contextlib
import tracemalloc
import zlib
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgcomp.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    MAX_PIXELS,
    StreamHeader,
    pack,
    read_header,
    unpack,
)
from imgcomp.errors import BitstreamError

HEADER = StreamHeader("jpeg", b"\x01" * 8, 512, 768, {"quality": 10})
SECTIONS = [b"payload-one", b"", b"\x00\xff" * 300]


def _recrc(body: bytes) -> bytes:
    """A stream body with a valid CRC: lets hostile headers reach the parser's bounds checks."""
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_round_trip_preserves_header_and_sections() -> None:
    header, sections = unpack(pack(HEADER, SECTIONS))
    assert header == HEADER
    assert sections == SECTIONS


def test_layout_starts_with_magic_and_version_and_is_compact() -> None:
    data = pack(HEADER, [b"x"])
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION
    # magic+version+name+params+fingerprint+shape+counts+crc: small next to any image payload
    assert len(data) - 1 <= 48


def test_pack_is_deterministic_and_params_canonical() -> None:
    a = StreamHeader("webp", b"\x02" * 8, 4, 5, {"b": 1, "a": 0.5})
    b = StreamHeader("webp", b"\x02" * 8, 4, 5, {"a": 0.5, "b": 1})
    assert pack(a, [b"z"]) == pack(b, [b"z"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"JUNK" + d[4:], "magic"),
        (lambda d: d[:4] + bytes([FORMAT_VERSION + 1]) + d[5:], "version"),
        (lambda d: d[:-1], "CRC"),
        (lambda d: d[:-5] + bytes([d[-5] ^ 1]) + d[-4:], "CRC"),
        (lambda d: b"", "magic"),
        (lambda d: d[:5], "truncated"),
    ],
)
def test_damaged_streams_raise_typed_errors(mutate, message) -> None:
    with pytest.raises(BitstreamError, match=message):
        unpack(mutate(pack(HEADER, SECTIONS)))


def test_absurd_lengths_are_rejected_before_use() -> None:
    body = bytearray(pack(HEADER, [b"abc"])[:-4])
    # last section length is the byte before the payload; claim 2**34 bytes (5-byte varint)
    idx = len(body) - 3 - 1
    huge = bytes([0x80, 0x80, 0x80, 0x80, 0x40])
    hostile = _recrc(bytes(body[:idx]) + huge + bytes(body[idx + 1 :]))
    with pytest.raises(BitstreamError, match="section lengths"):
        unpack(hostile)


def test_oversized_dimensions_are_rejected() -> None:
    with pytest.raises(BitstreamError):
        StreamHeader("jpeg", b"\x00" * 8, 1 << 16 + 1, 1, {})
    side = int(MAX_PIXELS**0.5) + 1
    with pytest.raises(BitstreamError):
        StreamHeader("jpeg", b"\x00" * 8, side, side, {})


def test_non_bytes_and_bad_params_are_typed_errors() -> None:
    with pytest.raises(BitstreamError):
        unpack("IMGC...")  # type: ignore[arg-type]
    with pytest.raises(BitstreamError):
        pack(StreamHeader("jpeg", b"\x00" * 8, 1, 1, {"q": float("nan")}), [])
    with pytest.raises(BitstreamError):
        StreamHeader("Bad Name!", b"\x00" * 8, 1, 1, {})


def test_params_must_be_a_flat_json_object() -> None:
    good = pack(StreamHeader("jpeg", b"\x00" * 8, 1, 1, {}), [])
    body = bytearray(good[:-4])
    # params length byte sits after magic, version, name length and name "jpeg"
    pos = 4 + 1 + 1 + 4
    assert body[pos] == 2 and body[pos + 1 : pos + 3] == b"{}"
    for params in (b"[1]", b'{"a":[1]}', b"\xff\xfe", b"{bad"):
        hostile = bytes(body[:pos]) + bytes([len(params)]) + params + bytes(body[pos + 3 :])
        with pytest.raises(BitstreamError):
            unpack(_recrc(hostile))


def test_read_header_checks_the_whole_stream() -> None:
    data = pack(HEADER, SECTIONS)
    assert read_header(data).codec == "jpeg"
    with pytest.raises(BitstreamError):
        read_header(data[:-10])


# The deadline guards against hangs (a parser loop that never ends), not speed.
_FAST = settings(
    max_examples=300, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow]
)


@_FAST
@given(st.binary(max_size=256))
def test_random_bytes_only_raise_bitstream_error(data: bytes) -> None:
    with contextlib.suppress(BitstreamError):
        unpack(data)


@_FAST
@given(st.binary(max_size=200), st.data())
def test_random_bodies_with_valid_crc_only_raise_bitstream_error(body: bytes, data) -> None:
    # Past the CRC, the parser's own bounds checks must hold on any content.
    prefix = data.draw(st.sampled_from([b"", MAGIC, MAGIC + bytes([FORMAT_VERSION])]))
    tracemalloc.start()
    with contextlib.suppress(BitstreamError):
        unpack(_recrc(prefix + body))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 1024, "parsing must not allocate memory a header merely claims"


@_FAST
@given(st.data())
def test_truncations_and_bit_flips_are_detected(data) -> None:
    stream = pack(HEADER, SECTIONS)
    cut = data.draw(st.integers(0, len(stream) - 1))
    with pytest.raises(BitstreamError):
        unpack(stream[:cut])
    bit = data.draw(st.integers(0, 8 * len(stream) - 1))
    flipped = bytearray(stream)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BitstreamError):
        unpack(bytes(flipped))


def test_varint_fields_longer_than_five_bytes_are_rejected() -> None:
    body = MAGIC + bytes([FORMAT_VERSION, 4]) + b"jpeg" + b"\xff" * 8
    with pytest.raises(BitstreamError, match="varint"):
        unpack(_recrc(body))
