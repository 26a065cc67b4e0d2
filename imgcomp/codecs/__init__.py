"""Codec implementations: the base protocol here; importing this package registers nothing.

The built-in codecs register when :mod:`imgcomp.builtin` is imported (the registry does it at
first lookup): ``classic`` (Pillow) and the learned ones of :mod:`imgcomp.zoo`.
"""

from imgcomp.codecs.base import Codec, ContainerCodec

__all__ = ["Codec", "ContainerCodec"]
