"""What a campaign fuzzes: :class:`Target`, a valid stream and the decode path it goes through;
its own module so that the campaign, the worker and the report all import it without a cycle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgcomp.codecs.base import Codec
from imgcomp.registry import decode_stream

__all__ = ["DECODE_PATHS", "Target"]

DECODE_PATHS = ("codec", "decode_stream")


@dataclass
class Target:
    """One thing to fuzz: a valid stream and how to decode it.

    ``decode="codec"`` calls ``codec.decode`` (``codec``, or the codec ``build()`` returns,
    built once in the parent); ``decode="decode_stream"`` calls :func:`imgcomp.decode_stream`,
    which rebuilds a codec from whatever the mutant's header says.
    """

    label: str
    stream: bytes
    decode: str = "codec"
    codec: Codec | None = None
    build: Callable[[], Codec] | None = None

    def __post_init__(self) -> None:
        if self.decode not in DECODE_PATHS:
            raise ValueError(f"decode must be one of {DECODE_PATHS}, got {self.decode!r}")
        if self.decode == "codec" and self.codec is None and self.build is None:
            raise ValueError(f"target {self.label!r}: decode='codec' needs a codec or a build")

    def decoder(self) -> Callable[[bytes], Any]:
        """The decode call (builds the codec here, once: call it before forking workers)."""
        if self.decode == "decode_stream":
            return decode_stream
        if self.codec is None:
            assert self.build is not None
            self.codec = self.build()
        return self.codec.decode
