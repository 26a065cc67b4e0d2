"""imgcomp: what pruning and quantization do to learned image codecs, through real bitstreams."""

import os as _os
from typing import TYPE_CHECKING

from imgcomp.errors import (
    BitstreamError,
    CheckpointError,
    ChecksumError,
    CodecMismatchError,
    DatasetError,
    ImageError,
    ImgcompError,
    PixelBudgetError,
    UnknownCodecError,
)
from imgcomp.progressive import stream_iterations, truncate
from imgcomp.registry import create_codec, decode_stream, list_codecs, register_codec
from imgcomp.version import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from imgcomp.codecs.learned import LearnedCodec


def load_codec(
    source: str | _os.PathLike[str],
    checkpoint: str | _os.PathLike[str] | None = None,
    format: str | None = None,
    device: str = "cpu",
    **params: object,
) -> "LearnedCodec":
    """A learned codec from a file: a saved codec, or a registered codec's weights.

    ``load_codec(path)`` (or ``format="imgcomp-codec"``) loads a codec written by
    :func:`save_codec`, with its pruning / quantization. ``load_codec(name, checkpoint)`` builds
    codec ``name`` on weights: ours (``format="imgcomp"``, the default: safetensors from
    ``imgcomp export``) or ``format="compressai"``; a saved codec given as ``checkpoint`` is
    loaded as such (its name must be ``name``). Further keyword ``params`` go to the codec
    (e.g. ``iterations=3`` of ``toderici2017``; its ``format="original"`` reads the original
    encoder / binarizer / decoder files).
    """
    from imgcomp.saved import LOAD_FORMAT, is_saved_codec, load_saved_codec

    if format not in (None, LOAD_FORMAT) and checkpoint is None:
        raise ImgcompError(
            f"format={format!r} needs a codec name and a checkpoint: load_codec(NAME, PATH, ...)"
        )
    if checkpoint is None and not _os.path.exists(source):
        raise CheckpointError(
            f"no such file: {_os.fspath(source)!r}; load_codec(PATH) loads a saved codec, "
            "create_codec(NAME, ...) builds a registered one, load_codec(NAME, CHECKPOINT) one "
            "on weights"
        )
    if (
        checkpoint is None
        or format == LOAD_FORMAT
        or (format is None and is_saved_codec(checkpoint))
    ):
        if params:
            raise ImgcompError(
                f"a saved codec carries its parameters; {sorted(params)} cannot be given"
            )
        codec = load_saved_codec(source if checkpoint is None else checkpoint, device=device)
        if checkpoint is not None:
            from imgcomp.registry import canonical_name

            if canonical_name(_os.fspath(source)) != codec.name:
                raise CheckpointError(
                    f"{_os.fspath(checkpoint)!r} holds a saved {codec.name} codec, not {source!r}"
                )
        return codec
    from imgcomp.zoo import load_codec as _load

    return _load(
        _os.fspath(source), checkpoint, format=format or "imgcomp", device=device, **params
    )


def save_codec(codec: "LearnedCodec", path: str | _os.PathLike[str]) -> "Path":
    """Save a learned codec, pruned / quantized or not, to ``path`` (safetensors); returns the
    path. :func:`load_codec` gives it back; see :mod:`imgcomp.saved`."""
    from imgcomp.saved import save_codec as _save

    return _save(codec, path)


def prune(codec, encoder=0.0, decoder=0.0, entropy=0.0, **options):
    """Prune a learned codec per component (``prune(codec, L1Prune({...}))`` or the keyword
    form); see :func:`imgcomp.ops.prune`."""
    from imgcomp.ops import prune as _prune

    return _prune(codec, encoder, decoder, entropy, **options)


def quantize(codec, mode, **options):
    """Quantize a learned codec (a config: Bf16(), Int8(), WeightOnly(bits); or bf16, int8,
    w2..w8); see :func:`imgcomp.ops.quantize`."""
    from imgcomp.ops import quantize as _quantize

    return _quantize(codec, mode, **options)


def profile(codec, **options):
    """Parameters, non-zeros, sizes and MACs per component; see :func:`imgcomp.ops.profile`."""
    from imgcomp.ops import profile as _profile

    return _profile(codec, **options)


#: The op configs, imported on first use (importing them imports torch).
_OP_CONFIGS = ("Bf16", "Int8", "L1Prune", "StructuredPrune", "WeightOnly")


def __getattr__(name: str):
    """The op configs of :mod:`imgcomp.ops.config`, loaded lazily."""
    if name in _OP_CONFIGS:
        from imgcomp.ops import config

        return getattr(config, name)
    raise AttributeError(f"module 'imgcomp' has no attribute {name!r}")


__all__ = [
    "Bf16",
    "BitstreamError",
    "CheckpointError",
    "ChecksumError",
    "CodecMismatchError",
    "DatasetError",
    "ImageError",
    "ImgcompError",
    "Int8",
    "L1Prune",
    "PixelBudgetError",
    "StructuredPrune",
    "UnknownCodecError",
    "WeightOnly",
    "__version__",
    "create_codec",
    "decode_stream",
    "list_codecs",
    "load_codec",
    "profile",
    "prune",
    "quantize",
    "register_codec",
    "save_codec",
    "stream_iterations",
    "truncate",
]
