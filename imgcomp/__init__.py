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
    "register_codec",
]
