"""Codec registry: every codec is created by name, like timm's ``create_model``.

This module imports no codec: codec modules import it to register themselves
(:func:`register_codec`), and the lookups load the built-in ones at first use by importing
:mod:`imgcomp.builtin` by name, so ``import imgcomp`` stays cheap (no torch) and the registry
sits below every codec in the import graph (no cycle through it).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from imgcomp.bitstream import read_header
from imgcomp.errors import ImgcompError, UnknownCodecError

if TYPE_CHECKING:  # codec modules import this one to register: only the type, never the module
    from imgcomp.codecs.base import Codec

F = TypeVar("F", bound=Callable[..., "Codec"])

#: The module whose import registers the built-in codecs (see :mod:`imgcomp.builtin`). Loaded by
#: name, so the registry never depends on what registers into it.
BUILTIN_MODULE = "imgcomp.builtin"

_FACTORIES: dict[str, Callable[..., Codec]] = {}
_ALIASES: dict[str, str] = {}


def register_codec(name: str, *aliases: str) -> Callable[[F], F]:
    """Decorator: make ``factory(**params)`` available as ``create_codec(name, **params)``."""

    def decorate(factory: F) -> F:
        for key in (name, *aliases):
            if key in _FACTORIES or key in _ALIASES:
                raise ValueError(f"codec name {key!r} is already registered")
        _FACTORIES[name] = factory
        for alias in aliases:
            _ALIASES[alias] = name
        return factory

    return decorate


def _ensure_builtin_codecs() -> None:
    """Register the built-in codecs once (the first lookup imports :mod:`imgcomp.builtin`)."""
    importlib.import_module(BUILTIN_MODULE)  # cached in sys.modules after the first call


def canonical_name(name: str) -> str:
    """Resolve an alias (e.g. ``bmshj2018-factorized``) to the registered name."""
    _ensure_builtin_codecs()
    name = _ALIASES.get(name, name)
    if name not in _FACTORIES:
        known = ", ".join(list_codecs(aliases=True))
        raise UnknownCodecError(f"unknown codec {name!r}; registered codecs: {known}")
    return name


def create_codec(name: str, **params: Any) -> Codec:
    """Create a registered codec by name (or alias) with its parameters, e.g. ``quality=75``."""
    factory = _FACTORIES[canonical_name(name)]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise ImgcompError(f"bad parameters for codec {name!r}: {exc}") from exc
    return factory(**params)


def list_codecs(aliases: bool = False) -> list[str]:
    """Names of all registered codecs (with their aliases if ``aliases``)."""
    _ensure_builtin_codecs()
    names = list(_FACTORIES)
    if aliases:
        names += list(_ALIASES)
    return sorted(names)


def codec_for_stream(data: bytes) -> Codec:
    """Rebuild the codec that wrote ``data`` from the stream header (name and parameters)."""
    header = read_header(data)
    return create_codec(header.codec, **header.params)


def decode_stream(data: bytes) -> np.ndarray:
    """Decode any imgcomp stream whose codec is registered; the header says which codec."""
    return codec_for_stream(data).decode(data)
