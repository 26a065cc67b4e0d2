"""Typed errors: every failure a user can cause surfaces as one of these, never a crash."""

from __future__ import annotations


class ImgcompError(Exception):
    """Base class of every error imgcomp raises on purpose."""


class BitstreamError(ImgcompError, ValueError):
    """A stream is truncated, corrupted, foreign, of an unknown version or otherwise unparsable."""


class PixelBudgetError(BitstreamError):
    """A stream declares an image larger than the decode pixel budget (:mod:`imgcomp.limits`)."""


class CodecMismatchError(BitstreamError):
    """A well-formed stream was handed to a codec or model other than the one that wrote it."""


class ImageError(ImgcompError, ValueError):
    """An image is unreadable, empty, or not in a form a codec accepts."""


class DatasetError(ImgcompError):
    """A dataset cannot be located, downloaded or listed."""


class ChecksumError(DatasetError):
    """A data file's sha256 differs from the published digest; the file is never used."""


class CheckpointError(ImgcompError):
    """A checkpoint is unreadable, carries code, or does not match the model's layout."""


class UnknownCodecError(ImgcompError, KeyError):
    """No codec is registered under the requested name."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown codec"
