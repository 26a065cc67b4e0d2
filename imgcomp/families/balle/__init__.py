"""The Ballé family (factorized prior, scale / mean-scale hyperprior): importing it registers
its declaration (:data:`imgcomp.families.balle.spec.BALLE`)."""

from imgcomp.families.balle.spec import BALLE, balle_latent, balle_padding
from imgcomp.registry import register_family

register_family(BALLE)

__all__ = ["BALLE", "balle_latent", "balle_padding"]
