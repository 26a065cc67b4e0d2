"""The built-in model families and codecs: importing this module registers each of them, once.

The one list of modules that register families and codecs with :mod:`imgcomp.registry` (timm's
split: the registry imports no family or codec; this list imports them all). The registry imports
it by name at the first lookup. A new model family adds one import line here (its folder under
:mod:`imgcomp.families`), before the codecs that use it.
"""

import imgcomp.codecs.classic  # jpeg, webp, avif, jpeg2000 (Pillow)
import imgcomp.families.balle  # the Ballé family: factorized prior, (mean-)scale hyperprior
import imgcomp.families.hific  # HiFiC (Mentzer et al. 2020), Justin Tan's PyTorch code
import imgcomp.families.rnn  # the Toderici 2017 RNN codec
import imgcomp.zoo  # the learned codecs and their CompressAI aliases (imports torch)

#: The built-in model families (their modules are imported above).
BUILTIN_FAMILIES: tuple[str, ...] = (
    imgcomp.families.balle.__name__,
    imgcomp.families.hific.__name__,
    imgcomp.families.rnn.__name__,
)

#: The modules imported above, in registration order.
BUILTIN_MODULES: tuple[str, ...] = (
    imgcomp.codecs.classic.__name__,
    *BUILTIN_FAMILIES,
    imgcomp.zoo.__name__,
)

__all__ = ["BUILTIN_FAMILIES", "BUILTIN_MODULES"]
