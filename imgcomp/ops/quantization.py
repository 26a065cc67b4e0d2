"""Quantization ops (bf16, int8, wK); the implementation lives in :mod:`imgcomp.ops.quant`."""

from imgcomp.ops.quant import *  # noqa: F403  (one public surface, listed once)
from imgcomp.ops.quant import __all__  # noqa: F401
