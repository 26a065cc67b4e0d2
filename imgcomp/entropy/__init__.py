"""Exact, deterministic entropy coders on constriction's ANS: factorized, Gaussian and binary.

Every model is an integer frequency table (``quantize_pmf``) fed to constriction so that it is
reproduced exactly; decoders take untrusted bytes and raise ``BitstreamError`` on bad input.
"""

from imgcomp.entropy.binary import BinaryCoder
from imgcomp.entropy.factorized import FactorizedCoder
from imgcomp.entropy.gaussian import GaussianCoder, gaussian_pmf
from imgcomp.entropy.stream import MAX_SYMBOLS
from imgcomp.entropy.tables import ANS_PRECISION, categorical_model, quantize_pmf, table_bits

__all__ = [
    "ANS_PRECISION",
    "MAX_SYMBOLS",
    "BinaryCoder",
    "FactorizedCoder",
    "GaussianCoder",
    "categorical_model",
    "gaussian_pmf",
    "quantize_pmf",
    "table_bits",
]
