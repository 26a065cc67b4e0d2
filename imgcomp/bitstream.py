"""The imgcomp stream container: a small, self-describing, checksummed wrapper of payloads.

Layout (all multi-byte integers are unsigned LEB128 varints of at most 5 bytes)::

    magic        4 bytes   b"IMGC"
    version      1 byte    FORMAT_VERSION
    codec        u8 length + ASCII name        (registry name, 1..64 chars of [a-z0-9._-])
    params       varint length + UTF-8 JSON    (canonical: sorted keys, no spaces; a flat object)
    fingerprint  8 bytes                       (model identity: architecture, weights, ops applied)
    height       varint                        (1..MAX_SIDE)
    width        varint                        (1..MAX_SIDE; height*width <= MAX_PIXELS)
    channels     1 byte                        (always 3: RGB)
    sections     u8 count, then one varint length per section
    payload      the sections, back to back
    crc32        4 bytes, big endian, over every byte before it

Every length and count is checked against the bytes actually present before it is used, so a
truncated, corrupted, foreign or wrong-version stream raises :class:`BitstreamError` in time and
memory bounded by the stream's own size. The CRC makes accidental corruption (a flipped bit, a
cut-off file) a clear error instead of silently wrong pixels.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from imgcomp.errors import BitstreamError

MAGIC = b"IMGC"
FORMAT_VERSION = 1
FINGERPRINT_SIZE = 8
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28
MAX_SECTIONS = 64
MAX_PARAMS_BYTES = 4096
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_CRC_SIZE = 4

ParamValue = str | int | float | bool | None


@dataclass(frozen=True)
class StreamHeader:
    """What a stream says about itself: who wrote it, with which model, for which image shape."""

    codec: str
    fingerprint: bytes
    height: int
    width: int
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    channels: int = 3

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.codec):
            raise BitstreamError(f"invalid codec name {self.codec!r}")
        if len(self.fingerprint) != FINGERPRINT_SIZE:
            raise BitstreamError(f"fingerprint must be {FINGERPRINT_SIZE} bytes")
        _check_shape(self.height, self.width, self.channels)
        object.__setattr__(self, "params", dict(self.params))


def canonical_params(params: Mapping[str, ParamValue]) -> bytes:
    """Serialise codec parameters deterministically (sorted keys, no whitespace)."""
    for key, value in params.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str | int | float)):
            raise BitstreamError(f"codec parameter {key!r}={value!r} is not a JSON scalar")
    try:
        text = json.dumps(dict(params), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise BitstreamError(f"codec parameters {dict(params)!r} are not finite JSON") from exc
    return text.encode()


def pack(header: StreamHeader, sections: Sequence[bytes]) -> bytes:
    """Build a complete stream from a header and the codec's payload sections."""
    if len(sections) > MAX_SECTIONS:
        raise BitstreamError(f"at most {MAX_SECTIONS} sections, got {len(sections)}")
    params = canonical_params(header.params)
    if len(params) > MAX_PARAMS_BYTES:
        raise BitstreamError(f"codec parameters exceed {MAX_PARAMS_BYTES} bytes")
    name = header.codec.encode("ascii")
    out = bytearray(MAGIC)
    out.append(FORMAT_VERSION)
    out.append(len(name))
    out += name
    out += _varint(len(params)) + params
    out += header.fingerprint
    out += _varint(header.height) + _varint(header.width)
    out.append(header.channels)
    out.append(len(sections))
    for section in sections:
        out += _varint(len(section))
    for section in sections:
        out += section
    out += zlib.crc32(out).to_bytes(_CRC_SIZE, "big")
    return bytes(out)


def unpack(data: bytes | bytearray | memoryview) -> tuple[StreamHeader, list[bytes]]:
    """Parse and verify a stream; return its header and payload sections.

    Raises BitstreamError for anything that is not a complete, intact stream of this format.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BitstreamError(f"a stream must be bytes, not {type(data).__name__}")
    data = bytes(data)
    reader = _Reader(data, len(data) - _CRC_SIZE)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not an imgcomp stream (bad magic bytes)")
    if len(data) < len(MAGIC) + 1 + _CRC_SIZE:
        raise BitstreamError("stream is truncated")
    reader.pos = len(MAGIC)
    version = reader.byte()
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported stream format version {version} (this imgcomp reads {FORMAT_VERSION})"
        )
    stored_crc = int.from_bytes(data[-_CRC_SIZE:], "big")
    if zlib.crc32(data[:-_CRC_SIZE]) != stored_crc:
        raise BitstreamError("stream is corrupted or truncated (CRC mismatch)")
    name = reader.take(reader.byte())
    try:
        codec = name.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BitstreamError("codec name is not ASCII") from exc
    params_len = reader.varint()
    if params_len > MAX_PARAMS_BYTES:
        raise BitstreamError("codec parameter block too large")
    params = _parse_params(reader.take(params_len))
    fingerprint = reader.take(FINGERPRINT_SIZE)
    height, width = reader.varint(), reader.varint()
    channels = reader.byte()
    _check_shape(height, width, channels)
    count = reader.byte()
    if count > MAX_SECTIONS:
        raise BitstreamError(f"stream declares {count} sections (at most {MAX_SECTIONS})")
    lengths = [reader.varint() for _ in range(count)]
    if sum(lengths) != reader.remaining:
        raise BitstreamError(
            f"section lengths add up to {sum(lengths)} bytes but {reader.remaining} are present"
        )
    sections = [reader.take(n) for n in lengths]
    header = StreamHeader(codec, fingerprint, height, width, params, channels)
    return header, sections


def read_header(data: bytes) -> StreamHeader:
    """Parse and verify a stream, returning only its header."""
    return unpack(data)[0]


def _parse_params(raw: bytes) -> dict[str, ParamValue]:
    try:
        params = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BitstreamError("codec parameter block is not valid JSON") from exc
    if not isinstance(params, dict) or any(isinstance(v, dict | list) for v in params.values()):
        raise BitstreamError("codec parameter block must be a flat JSON object")
    return params


def _check_shape(height: int, width: int, channels: int) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"image size {height}x{width} outside 1..{MAX_SIDE}")
    if height * width > MAX_PIXELS:
        raise BitstreamError(f"image of {height * width} pixels exceeds {MAX_PIXELS}")
    if channels != 3:
        raise BitstreamError(f"streams carry 3-channel RGB images, header says {channels}")


def _varint(value: int) -> bytes:
    if value < 0 or value >= 1 << 35:
        raise BitstreamError(f"value {value} cannot be stored as a varint")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


class _Reader:
    """Bounds-checked cursor over the stream body (everything before the CRC)."""

    def __init__(self, data: bytes, end: int) -> None:
        self.data, self.end, self.pos = data, end, 0

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def byte(self) -> int:
        return self.take(1)[0]

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise BitstreamError("stream is truncated (a field runs past the end)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise BitstreamError("malformed varint (longer than 5 bytes)")
