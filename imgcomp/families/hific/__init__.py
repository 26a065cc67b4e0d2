"""The HiFiC family (Mentzer et al. 2020, as Justin-Tan/high-fidelity-generative-compression):
importing it registers its declaration (:data:`imgcomp.families.hific.spec.HIFIC`), then the
``hific`` codec."""

from imgcomp.families.hific.spec import HIFIC, hific_padding
from imgcomp.registry import register_family

register_family(HIFIC)

from imgcomp.families.hific import codec  # noqa: E402  registers hific (needs the family)

__all__ = ["HIFIC", "codec", "hific_padding"]
