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

__version__ = "0.1.0"

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
]
