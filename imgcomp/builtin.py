"""The built-in codecs: importing this module registers each of them, once.

The one list of modules that register codecs with :mod:`imgcomp.registry` (timm's split: the
registry imports no codec; this list imports them all). The registry imports it by name at the
first lookup. A new codec family adds one import line here.
"""

import imgcomp.codecs.classic  # jpeg, webp, avif, jpeg2000 (Pillow)
import imgcomp.zoo  # the learned codecs and their CompressAI aliases (imports torch)

#: The modules imported above, in registration order.
BUILTIN_MODULES: tuple[str, ...] = (imgcomp.codecs.classic.__name__, imgcomp.zoo.__name__)

__all__ = ["BUILTIN_MODULES"]
