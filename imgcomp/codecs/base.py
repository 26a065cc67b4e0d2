"""The codec interface every benchmark case speaks, and a base class that handles the container.

A codec turns a uint8 HxWx3 RGB image into bytes and back. :class:`ContainerCodec` does the parts
every codec shares - input validation, the stream header, the fingerprint check - so a concrete
codec only writes its payload sections.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from imgcomp.bitstream import FINGERPRINT_SIZE, ParamValue, StreamHeader, pack, unpack
from imgcomp.errors import BitstreamError, CodecMismatchError
from imgcomp.images import validate_rgb8
from imgcomp.limits import check_pixels


@runtime_checkable
class Codec(Protocol):
    """Anything that encodes a uint8 HxWx3 image to bytes and decodes those bytes back."""

    name: str

    def encode(self, img: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


class ContainerCodec(ABC):
    """Base for imgcomp codecs: wraps payload sections in the checksummed stream container.

    Subclasses set ``name`` (the registry name), pass their creation parameters to ``__init__``
    and implement :meth:`encode_sections` / :meth:`decode_sections`. Streams carry the
    parameters and a fingerprint, so ``imgcomp.decode_stream`` can rebuild the codec and a
    stream from one model refuses to decode with another.
    """

    name: str = ""

    def __init__(self, **params: ParamValue) -> None:
        self._params = {k: v for k, v in params.items() if v is not None}

    @property
    def params(self) -> dict[str, ParamValue]:
        """Creation parameters: what ``create_codec(name, **params)`` needs to rebuild the codec."""
        return dict(self._params)

    @property
    def label(self) -> str:
        """Short readable identity, e.g. ``jpeg-quality=10``."""
        parts = [f"{k}={v}" for k, v in sorted(self._params.items())]
        return "-".join([self.name, *parts])

    def fingerprint_material(self) -> bytes:
        """Bytes that identify the model beyond name and params (weights, ops); none by default."""
        return b""

    @property
    def fingerprint(self) -> bytes:
        """8-byte digest of name, params and model material; written into and checked on streams."""
        h = hashlib.blake2b(digest_size=FINGERPRINT_SIZE)
        h.update(self.name.encode())
        h.update(repr(sorted(self._params.items())).encode())
        h.update(self.fingerprint_material())
        return h.digest()

    @abstractmethod
    def encode_sections(self, img: np.ndarray) -> list[bytes]:
        """Compress a validated uint8 HxWx3 image into payload sections."""

    @abstractmethod
    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        """Rebuild the image from payload sections; raise BitstreamError on malformed payloads."""

    def encode(self, img: np.ndarray) -> bytes:
        """Compress ``img`` (uint8 HxWx3) into a complete, self-describing stream."""
        img = validate_rgb8(img)
        header = StreamHeader(
            codec=self.name,
            fingerprint=self.fingerprint,
            height=img.shape[0],
            width=img.shape[1],
            params=self._params,
        )
        return pack(header, self.encode_sections(img))

    def decode(self, data: bytes, max_pixels: int | None = None) -> np.ndarray:
        """Decode a stream written by this codec (same name, params and model) to uint8 HxWx3;
        PixelBudgetError before any work when it declares more than ``max_pixels`` pixels
        (default: :func:`imgcomp.limits.max_pixels`)."""
        header, sections = unpack(data)
        self.check_header(header)
        check_pixels(header.height, header.width, max_pixels)
        img = self.decode_sections(sections, header)
        expected = (header.height, header.width, 3)
        if img.dtype != np.uint8 or img.shape != expected:
            raise BitstreamError(
                f"payload decoded to {img.dtype} {img.shape}, header says uint8 {expected}"
            )
        return img

    def check_header(self, header: StreamHeader) -> None:
        """Refuse a stream that another codec, parameter set or model wrote."""
        if header.codec != self.name:
            raise CodecMismatchError(
                f"stream was written by codec {header.codec!r}, not {self.name!r}; "
                "decode it with imgcomp.decode_stream or `imgcomp decode`"
            )
        if header.fingerprint != self.fingerprint:
            raise CodecMismatchError(
                f"stream was written by a different {self.name!r} model "
                f"(stream params {_fmt(header.params)}, fingerprint {header.fingerprint.hex()}; "
                f"this codec: params {_fmt(self._params)}, fingerprint {self.fingerprint.hex()}). "
                "Pruned or quantized models have their own fingerprint."
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"


def _fmt(params: Mapping[str, ParamValue]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "none"
