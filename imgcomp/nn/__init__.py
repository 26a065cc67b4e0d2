"""Neural building blocks and the learned codecs: GDN, likelihood models, Ballé / Minnen models."""

from imgcomp.nn.balle import (
    ARCHITECTURES,
    BalleModel,
    FactorizedPrior,
    MeanScaleHyperprior,
    ScaleHyperprior,
    build_model,
)
from imgcomp.nn.density import FactorizedDensity, GaussianConditional, PmfTable, scale_table
from imgcomp.nn.gdn import GDN, LowerBoundFunction, NonNegative, lower_bound

__all__ = [
    "ARCHITECTURES",
    "GDN",
    "BalleModel",
    "FactorizedDensity",
    "FactorizedPrior",
    "GaussianConditional",
    "LowerBoundFunction",
    "MeanScaleHyperprior",
    "NonNegative",
    "PmfTable",
    "ScaleHyperprior",
    "build_model",
    "lower_bound",
    "scale_table",
]
