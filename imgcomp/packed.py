"""Packed weights (``.imgw``): a safetensors file, its 16-bit tensors split into byte planes,
xz-compressed; unpacking gives back the exact bytes of the original file.

Float16 weights barely compress as they are (xz: about 10%); their high bytes (sign, exponent,
top of the mantissa) are highly repetitive once separated from the noisy low bytes, which is
what brings the shipped zoo under its size budget (about 16%) at no cost in precision. The file
starts with its own magic, so ``xz -d`` never yields a plausible safetensors file with scrambled
values. Unpacking is bounded: a file may not expand past ``max_bytes``.
"""

from __future__ import annotations

import json
import lzma
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from imgcomp.errors import CheckpointError

__all__ = [
    "MAGIC",
    "MAX_UNPACKED_BYTES",
    "SUFFIX",
    "WEIGHT_SUFFIXES",
    "is_weights_file",
    "pack",
    "read_safetensors_bytes",
    "safetensors_header",
    "unpack",
]

MAGIC = b"IMGCOMPW\x01"
SUFFIX = ".imgw"
#: The file names an exported weights file may have: plain safetensors, or packed.
WEIGHT_SUFFIXES = (".safetensors", SUFFIX)
#: The largest safetensors file an ``.imgw`` may unpack to (well above any codec we ship).
MAX_UNPACKED_BYTES = 1 << 31
_PLANED = {"F16", "BF16"}  # 2-byte float types, split into a high and a low byte plane


def is_weights_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named as an exported weights file (``.safetensors`` or ``.imgw``)."""
    return Path(path).suffix in WEIGHT_SUFFIXES


def safetensors_header(data: bytes) -> tuple[dict[str, dict[str, Any]], dict[str, str], int]:
    """``(tensors, metadata, data_start)`` of safetensors bytes: each tensor's dtype, shape and
    offsets (checked to lie inside the file), the string metadata, where the data begins."""
    if len(data) < 8:
        raise CheckpointError("not a safetensors file: shorter than its header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError("not a safetensors file: its header runs past the end")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"not a safetensors file: unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError("not a safetensors file: its header is not a mapping")
    meta = header.pop("__metadata__", None) or {}
    size = len(data) - 8 - n
    for name, info in header.items():
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            info["dtype"], list(info["shape"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"safetensors header: tensor {name!r} is malformed") from None
        if not 0 <= begin <= end <= size:
            raise CheckpointError(f"safetensors header: tensor {name!r} lies outside the file")
    return header, meta, 8 + n


def _planes(data: bytes, join: bool) -> bytes:
    """Split (or, with ``join``, rejoin) the byte planes of every 16-bit tensor's data."""
    tensors, _, start = safetensors_header(data)
    out = bytearray(data)
    for info in tensors.values():
        if info["dtype"] not in _PLANED:
            continue
        begin, end = (start + int(x) for x in info["data_offsets"])
        if (end - begin) % 2:
            raise CheckpointError("safetensors: a 16-bit tensor has an odd number of bytes")
        region = np.frombuffer(data, dtype=np.uint8, count=end - begin, offset=begin)
        half = (end - begin) // 2
        if join:  # [high plane | low plane] -> little-endian pairs
            pairs = np.stack([region[half:], region[:half]], axis=1)
            out[begin:end] = pairs.tobytes()
        else:
            pairs = region.reshape(-1, 2)
            out[begin:end] = pairs[:, 1].tobytes() + pairs[:, 0].tobytes()
    return bytes(out)


def pack(data: bytes) -> bytes:
    """The ``.imgw`` bytes of safetensors ``data`` (its 16-bit tensors byte-planed, then xz)."""
    return MAGIC + lzma.compress(_planes(data, join=False), preset=9)


def unpack(blob: bytes, max_bytes: int = MAX_UNPACKED_BYTES) -> bytes:
    """The safetensors bytes an ``.imgw`` holds; CheckpointError when it is not one, is cut
    short, or would unpack past ``max_bytes``."""
    if not blob.startswith(MAGIC):
        raise CheckpointError("not a packed imgcomp weights file (no .imgw magic)")
    inflater = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        data = inflater.decompress(blob[len(MAGIC) :], max_length=max_bytes + 1)
    except lzma.LZMAError as exc:
        raise CheckpointError(f"packed weights are corrupt: {exc}") from None
    if len(data) > max_bytes:
        raise CheckpointError(f"packed weights unpack past {max_bytes:,} bytes")
    if not inflater.eof:
        raise CheckpointError("packed weights are truncated")
    if inflater.unused_data:
        raise CheckpointError("packed weights carry bytes after their end")
    return _planes(data, join=True)


def read_safetensors_bytes(path: str | os.PathLike[str]) -> bytes:
    """The safetensors bytes of a weights file: read as is, or unpacked from an ``.imgw``
    (cached per file and modification time: loading reads a file several times)."""
    where = Path(path)
    try:
        stat = where.stat()
    except OSError as exc:
        raise CheckpointError(f"cannot read weights {os.fspath(path)!r}: {exc}") from None
    return _read(os.fspath(where), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _read(where: str, mtime_ns: int, size: int) -> bytes:
    try:
        blob = Path(where).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read weights {where!r}: {exc}") from None
    try:
        return unpack(blob) if blob.startswith(MAGIC) else blob
    except CheckpointError as exc:
        raise CheckpointError(f"{where!r}: {exc}") from None
