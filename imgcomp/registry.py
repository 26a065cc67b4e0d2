"""Codec and model-family registry: every codec is created by name, like timm's ``create_model``,
and every model family's declaration (:class:`imgcomp.families.spec.FamilySpec`) is found by
name or by model (:func:`get_family`, :func:`family_of`).

This module imports no codec and no family: codec and family modules import it to register
themselves (:func:`register_codec`, :func:`register_family`), and the lookups load the built-in ones
at first use by importing :mod:`imgcomp.builtin` by name, so ``import imgcomp`` stays cheap (no
torch) and the registry sits below every codec in the import graph (no cycle through it).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from imgcomp.bitstream import read_header
from imgcomp.errors import CodecMismatchError, ImgcompError, UnknownCodecError
from imgcomp.limits import check_pixels

if TYPE_CHECKING:  # codec modules import this one to register: only the type, never the module
    from imgcomp.codecs.base import Codec
    from imgcomp.families.spec import FamilySpec

F = TypeVar("F", bound=Callable[..., "Codec"])

#: The module whose import registers the built-in codecs (see :mod:`imgcomp.builtin`). Loaded by
#: name, so the registry never depends on what registers into it.
BUILTIN_MODULE = "imgcomp.builtin"

_FACTORIES: dict[str, Callable[..., Codec]] = {}
_ALIASES: dict[str, str] = {}
_FAMILIES: dict[str, FamilySpec] = {}
_PROGRESSIVE: set[str] = set()
_CODEC_FAMILY: dict[str, str] = {}
_STREAM_PARAMS: dict[str, frozenset[str]] = {}
_BACKENDS: dict[str, tuple[Callable[[Codec], Codec], Callable[[], None]]] = {}

#: Where a codec's transforms run by default: the model itself, in torch.
DEFAULT_BACKEND = "torch"
#: The module whose import registers the other backends (see :mod:`imgcomp.backends`), loaded
#: by name at the first request for one, like :data:`BUILTIN_MODULE`.
BACKENDS_MODULE = "imgcomp.backends"


def register_codec(
    name: str,
    *aliases: str,
    progressive: bool = False,
    family: str | None = None,
    stream_params: Collection[str] = (),
) -> Callable[[F], F]:
    """Decorator: make ``factory(**params)`` available as ``create_codec(name, **params)``.

    ``progressive``: the codec's streams hold one section per iteration and carry an
    ``iterations`` parameter, so :func:`imgcomp.progressive.truncate` may cut them.
    ``family``: the model family of a learned codec (:func:`codec_family`).
    ``stream_params``: the parameters a stream may ask :func:`decode_stream` to build the codec
    with (settings of what the package ships, e.g. ``quality``); a stream naming any other (a
    checkpoint, a device, random weights, widths) is refused (see :func:`codec_for_stream`).
    """

    def decorate(factory: F) -> F:
        for key in (name, *aliases):
            if key in _FACTORIES or key in _ALIASES:
                raise ValueError(f"codec name {key!r} is already registered")
        _FACTORIES[name] = factory
        _STREAM_PARAMS[name] = frozenset(stream_params)
        for alias in aliases:
            _ALIASES[alias] = name
        if progressive:
            _PROGRESSIVE.add(name)
        if family is not None:
            _CODEC_FAMILY[name] = family
        return factory

    return decorate


def unregister_codec(name: str) -> None:
    """Forget a registered codec and its aliases (tests that register a codec of their own)."""
    _FACTORIES.pop(name, None)
    for alias in [a for a, target in _ALIASES.items() if target == name]:
        del _ALIASES[alias]
    _PROGRESSIVE.discard(name)
    _CODEC_FAMILY.pop(name, None)
    _STREAM_PARAMS.pop(name, None)


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


def create_codec(name: str, backend: str = DEFAULT_BACKEND, **params: Any) -> Codec:
    """Create a registered codec by name (or alias) with its parameters, e.g. ``quality=75``.

    ``backend``: where a learned codec's transforms run, ``torch`` (the default) or
    ``onnxruntime`` (float32; :func:`imgcomp.backends.to_backend` gives int8 too). An unknown
    backend, or one whose packages are missing, is refused with ImgcompError before anything
    is built (the message says what to install)."""
    convert = None if backend == DEFAULT_BACKEND else backend_converter(backend)
    factory = _FACTORIES[canonical_name(name)]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise ImgcompError(f"bad parameters for codec {name!r}: {exc}") from exc
    codec = factory(**params)
    return codec if convert is None else convert(codec)


def register_backend(
    name: str, convert: Callable[[Codec], Codec], require: Callable[[], None] = lambda: None
) -> None:
    """Make ``create_codec(..., backend=name)`` give ``convert(codec)`` (a backend package
    calls it when imported); ``convert`` raises ImgcompError for a codec it cannot run, and
    ``require()`` raises ImgcompError, saying what to install, when the backend's packages
    are missing."""
    if name == DEFAULT_BACKEND or name in _BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    _BACKENDS[name] = (convert, require)


def list_backends() -> list[str]:
    """The backends ``create_codec`` accepts, the default first."""
    importlib.import_module(BACKENDS_MODULE)
    return [DEFAULT_BACKEND, *sorted(_BACKENDS)]


def backend_converter(backend: str) -> Callable[[Codec], Codec]:
    """What turns a torch codec into one on ``backend``; ImgcompError for an unknown backend or
    one whose packages are not installed (checked before any codec is built)."""
    known = list_backends()
    if backend not in _BACKENDS:
        raise ImgcompError(f"unknown backend {backend!r}; backends: {', '.join(known)}")
    convert, require = _BACKENDS[backend]
    require()
    return convert


def list_codecs(aliases: bool = False) -> list[str]:
    """Names of all registered codecs (with their aliases if ``aliases``)."""
    _ensure_builtin_codecs()
    names = list(_FACTORIES)
    if aliases:
        names += list(_ALIASES)
    return sorted(names)


def codec_family(name: str) -> str | None:
    """The model family of learned codec ``name`` (or alias); None for a classic codec."""
    return _CODEC_FAMILY.get(canonical_name(name))


def is_progressive(name: str) -> bool:
    """Whether codec ``name`` (or alias) writes progressive streams (see :func:`register_codec`)."""
    return canonical_name(name) in _PROGRESSIVE


def codec_for_stream(data: bytes, max_pixels: int | None = None) -> Codec:
    """Rebuild the codec that wrote ``data`` from its header: only a registered codec with the
    parameters its registration lets a stream choose (``stream_params``), so a stream never
    makes the decoder read a file, pick a device, build random weights or size a model.

    Refuses before building anything: a declared size over the pixel budget
    (PixelBudgetError), parameters a stream may not choose (CodecMismatchError: decode such a
    stream with the codec that wrote it, ``codec.decode(data)``), and values the factory
    rejects (CodecMismatchError).
    """
    header = read_header(data)
    check_pixels(header.height, header.width, max_pixels)
    name = canonical_name(header.codec)
    allowed = _STREAM_PARAMS.get(name, frozenset())
    refused = sorted(set(header.params) - allowed)
    if refused:
        named = ", ".join(f"{k}={header.params[k]!r}" for k in refused)
        choosable = ", ".join(sorted(allowed)) or "none"
        raise CodecMismatchError(
            f"the stream asks for a {name!r} codec with {named}: decode_stream builds only what "
            f"the package ships (parameters a stream may choose: {choosable}), never a "
            "checkpoint, device, random weights or widths a stream names. Decode it with the "
            "codec that wrote it: codec.decode(data), or `imgcomp decode --model PATH`"
        )
    try:
        return create_codec(name, **header.params)
    except ImgcompError as exc:
        raise CodecMismatchError(f"the stream's parameters make no {name!r} codec: {exc}") from None
    except Exception as exc:  # a trust boundary: the values came from the stream
        raise CodecMismatchError(
            f"the stream's parameters {dict(header.params)!r} make no {name!r} codec "
            f"({type(exc).__name__}: {exc})"
        ) from None


def decode_stream(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Decode any imgcomp stream of a registered codec at a setting the package ships (the
    header says which; see :func:`codec_for_stream`); ``max_pixels`` as in ``Codec.decode``."""
    return codec_for_stream(data, max_pixels).decode(data, max_pixels=max_pixels)


# -- model families ------------------------------------------------------------------------------
def register_family(spec: FamilySpec) -> FamilySpec:
    """Make a model family's declaration known to the engines (a family's ``__init__`` calls it)."""
    if spec.name in _FAMILIES:
        raise ValueError(f"model family {spec.name!r} is already registered")
    _FAMILIES[spec.name] = spec
    return spec


def unregister_family(name: str) -> None:
    """Forget a registered family (tests that register a family of their own)."""
    _FAMILIES.pop(name, None)


def get_family(name: str) -> FamilySpec:
    """The declaration of the registered family ``name``."""
    _ensure_builtin_codecs()
    try:
        return _FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(_FAMILIES))
        raise UnknownCodecError(f"unknown model family {name!r}; registered: {known}") from None


def find_family(model: object) -> FamilySpec | None:
    """The family whose model types ``model`` is an instance of, or None (an ad-hoc model)."""
    _ensure_builtin_codecs()
    for spec in _FAMILIES.values():
        if spec.owns(model):
            return spec
    return None


def family_of(model: object) -> FamilySpec:
    """The family whose model types ``model`` is an instance of; UnknownCodecError if none."""
    spec = find_family(model)
    if spec is not None:
        return spec
    known = ", ".join(sorted(_FAMILIES))
    raise UnknownCodecError(
        f"{type(model).__name__} belongs to no registered model family (registered: {known})"
    )


def list_families() -> list[str]:
    """Names of the registered model families."""
    _ensure_builtin_codecs()
    return sorted(_FAMILIES)
