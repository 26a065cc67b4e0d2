"""imgcomp: what pruning and quantization do to learned image codecs, through real bitstreams."""

from imgcomp.errors import (
    BitstreamError,
    CheckpointError,
    ChecksumError,
    CodecMismatchError,
    DatasetError,
    ImageError,
    ImgcompError,
    UnknownCodecError,
)
from imgcomp.registry import create_codec, decode_stream, list_codecs, register_codec

__version__ = "0.1.0"


def load_codec(name: str, checkpoint: str, format: str = "imgcomp", device: str = "cpu"):
    """A learned codec from a checkpoint: ours (safetensors) or ``format="compressai"``."""
    from imgcomp.zoo import load_codec as _load

    return _load(name, checkpoint, format=format, device=device)


def prune(codec, encoder=0.0, decoder=0.0, entropy=0.0, **options):
    """Prune a learned codec per component; see :func:`imgcomp.ops.prune`."""
    from imgcomp.ops import prune as _prune

    return _prune(codec, encoder, decoder, entropy, **options)


def quantize(codec, mode: str, **options):
    """Quantize a learned codec (bf16, int8, w2..w8); see :func:`imgcomp.ops.quantize`."""
    from imgcomp.ops import quantize as _quantize

    return _quantize(codec, mode, **options)


def profile(codec, **options):
    """Parameters, non-zeros, sizes and MACs per component; see :func:`imgcomp.ops.profile`."""
    from imgcomp.ops import profile as _profile

    return _profile(codec, **options)


__all__ = [
    "BitstreamError",
    "CheckpointError",
    "ChecksumError",
    "CodecMismatchError",
    "DatasetError",
    "ImageError",
    "ImgcompError",
    "UnknownCodecError",
    "__version__",
    "create_codec",
    "decode_stream",
    "list_codecs",
    "load_codec",
    "profile",
    "prune",
    "quantize",
    "register_codec",
]
