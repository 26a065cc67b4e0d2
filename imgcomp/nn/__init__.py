"""Neural building blocks shared by the model families: GDN, likelihood models, ConvLSTM cell,
ChannelNorm (the models themselves live in their families, :mod:`imgcomp.families`)."""

from imgcomp.nn.density import FactorizedDensity, GaussianConditional, PmfTable, scale_table
from imgcomp.nn.gdn import GDN, LowerBoundFunction, NonNegative, lower_bound

__all__ = [
    "GDN",
    "FactorizedDensity",
    "GaussianConditional",
    "LowerBoundFunction",
    "NonNegative",
    "PmfTable",
    "lower_bound",
    "scale_table",
]
