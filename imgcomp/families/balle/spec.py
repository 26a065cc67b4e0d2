"""The Ballé family's declaration: factorized prior, scale and mean-scale hyperprior.

Components (the study's tables): encoder (``g_a``), decoder (``g_s``) and probability model
(``entropy``: the hyper transforms and the densities). The factorized prior codes ``y`` with a
:class:`~imgcomp.codecs.latent.FactorizedLatent`, the hyperpriors ``z`` and ``y`` with a
:class:`~imgcomp.codecs.latent.HyperpriorLatent`; images are edge-padded to the architecture's
downsampling factor (16 or 64). Quantization replaces the transforms (``g_a``, ``g_s``, ``h_a``,
``h_s``, int8 included); the entropy densities stay float32.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from imgcomp.codecs.latent import FactorizedLatent, HyperpriorLatent, LatentCodec
from imgcomp.families.spec import Component, FamilySpec, Padding
from imgcomp.families.weights import shipped_weights_path
from imgcomp.nn.balle import ARCHITECTURES, BalleModel, FactorizedPrior, build_model

__all__ = ["BALLE", "balle_latent", "balle_padding"]


def balle_latent(model: nn.Module) -> LatentCodec:
    """The latent codec of a Ballé model: factorized prior -> :class:`FactorizedLatent`,
    (mean-)scale hyperprior -> :class:`HyperpriorLatent` (the one place that tells them apart)."""
    if isinstance(model, FactorizedPrior):
        return FactorizedLatent(model.y_prior, stride=16)
    if isinstance(model, BalleModel):
        return HyperpriorLatent(
            model.hyper_analysis,
            model.z_prior,
            model.entropy_parameters,
            model.y_conditional,
            stride=16,
            hyper_stride=4,
        )
    raise TypeError(f"no latent codec for {type(model).__name__}; pass latent=")


def balle_padding(model: nn.Module) -> Padding:
    """Edge replication to the architecture's downsampling factor (16, or 64 with a hyperprior)."""
    return Padding(int(model.downsampling_factor), "replicate")


#: The Ballé family (registered by :mod:`imgcomp.families.balle`).
BALLE = FamilySpec(
    name="balle",
    components={
        "encoder": Component("encoder", "encoder", ("g_a",)),
        "decoder": Component("decoder", "decoder", ("g_s",)),
        "entropy": Component(
            "entropy", "probability model", ("h_a", "h_s", "y_prior", "z_prior", "y_conditional")
        ),
    },
    model_types=(BalleModel,),
    latent=balle_latent,
    padding=balle_padding,
    objective="rd",
    checkpoint_formats=("imgcomp", "compressai"),
    architectures={arch: partial(build_model, arch) for arch in ARCHITECTURES},
    shipped=shipped_weights_path,
    quant_units={"encoder": ("g_a",), "decoder": ("g_s",), "entropy": ("h_a", "h_s")},
    int8_units=("g_a", "g_s", "h_a", "h_s"),
)
