"""Codec implementations; importing this package registers the built-in codecs."""

from imgcomp.codecs import classic  # noqa: F401  (registers jpeg, webp, jpeg2000, avif)
from imgcomp.codecs.base import Codec, ContainerCodec

__all__ = ["Codec", "ContainerCodec"]


def _register_learned() -> None:
    # The learned codecs register from imgcomp.zoo (torch is imported there).
    import imgcomp.zoo  # noqa: F401


_register_learned()
