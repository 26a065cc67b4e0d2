"""The targets a campaign fuzzes by default: a valid stream of every registered codec, of the
shipped learned codecs and of their pruned / quantized variants, each through both decode
paths (``codec.decode`` and :func:`imgcomp.decode_stream`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from imgcomp.codecs.base import Codec
from imgcomp.fuzz.target import DECODE_PATHS, Target
from imgcomp.registry import canonical_name, codec_family, create_codec, get_family, list_codecs

__all__ = ["CLASSIC", "OPS", "OP_BASES", "SHIPPED", "SMALL", "default_targets"]

#: Classic codecs: label -> (name, params).
CLASSIC: dict[str, tuple[str, dict]] = {
    "jpeg-q50": ("jpeg", {"quality": 50}),
    "webp-q50": ("webp", {"quality": 50}),
    "avif-q50": ("avif", {"quality": 50}),
    "jpeg2000-q35": ("jpeg2000", {"quality": 35}),
}
#: The shipped (pretrained) learned codecs.
SHIPPED: dict[str, tuple[str, dict]] = {
    "mbt2018-mean-q3": ("mbt2018-mean", {"quality": 3}),
    "bmshj2018-factorized-q3": ("bmshj2018-factorized", {"quality": 3}),
    "toderici2017-i3": ("toderici2017", {"iterations": 3}),
    "hific": ("hific", {}),
}
#: Small seeded learned codecs (no shipped weights).
SMALL: dict[str, tuple[str, dict]] = {
    "scale-hyperprior-N16M24": ("scale-hyperprior", {"pretrained": False, "N": 16, "M": 24}),
}
#: The shipped codecs whose op variants are fuzzed (the variants: :data:`OPS`).
OP_BASES = ("mbt2018-mean-q3", "toderici2017-i3", "hific")


def fuzz_image(height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """A small smooth-plus-noise uint8 image whose streams the campaigns mutate (noise alone
    would be all rate and no structure)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / 7.0), np.cos(yy / 5.0), np.sin((xx + yy) / 9.0)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 8, (height, width, 3))
    return np.clip(127.5 + 90 * base + noise, 0, 255).astype(np.uint8)


def _int8(codec: Codec) -> Codec:
    import imgcomp

    return imgcomp.quantize(codec, "int8")


def _bf16(codec: Codec) -> Codec:
    import imgcomp

    return imgcomp.quantize(codec, "bf16")


def _w4(codec: Codec) -> Codec:
    import imgcomp

    return imgcomp.quantize(codec, "w4")


def _l1(codec: Codec) -> Codec:
    import imgcomp
    from imgcomp.ops.config import L1Prune

    return imgcomp.prune(codec, L1Prune({_synthesis(codec): 0.3}))


def _structured(codec: Codec) -> Codec:
    import imgcomp
    from imgcomp.ops.config import StructuredPrune

    return imgcomp.prune(codec, StructuredPrune({_synthesis(codec): 0.3}, recover_steps=0))


def _synthesis(codec: Codec) -> str:
    """The family's decoder-side component: ``decoder``, or HiFiC's ``generator``."""
    family = codec_family(codec.name)
    components = get_family(family).components if family is not None else {}
    return next((c for c in ("decoder", "generator") if c in components), "decoder")


#: Op variants: label suffix -> the op (pruning of the synthesis side, no recovery training).
OPS: dict[str, Callable[[Codec], Codec]] = {
    "int8": _int8,
    "bf16": _bf16,
    "w4": _w4,
    "l1-dec0.3": _l1,
    "structured-dec0.3": _structured,
}


def default_targets(image: np.ndarray, quick: bool = False) -> list[Target]:
    """Targets with valid streams of ``image`` (uint8 HxWx3; small, e.g. 32x48, keeps it fast).

    Every codec appears with both decode paths, its op variants with ``codec.decode``.
    ``quick``: one classic codec, the shipped learned ones and int8 mbt2018-mean (for CI). A
    codec that cannot be built or cannot encode here (e.g. Pillow without its plugin) is
    skipped with a warning.
    """
    specs: dict[str, tuple[str, dict]] = {}
    if quick:
        specs["jpeg-q50"] = CLASSIC["jpeg-q50"]
        specs |= SHIPPED
        ops = {"mbt2018-mean-q3": ("int8",)}
    else:
        specs |= CLASSIC | SHIPPED | SMALL
        specs |= _unlisted(specs)
        ops = dict.fromkeys(OP_BASES, tuple(OPS))
    out: list[Target] = []
    for label, (name, params) in specs.items():
        codec = _build(label, lambda name=name, params=params: create_codec(name, **params))
        if codec is None:
            continue
        variants = [(label, codec)]
        for op in ops.get(label, ()):
            made = _build(f"{label}+{op}", lambda op=op, codec=codec: OPS[op](codec))
            if made is not None:
                variants.append((f"{label}+{op}", made))
        for var_label, var in variants:
            stream = _encode(var_label, var, image)
            if stream is None:
                continue
            # an op variant's header names its base codec, whose stream path is fuzzed already:
            # through decode_stream its mutants only meet the fingerprint check
            paths = DECODE_PATHS if var is codec else ("codec",)
            for path in paths:
                suffix = ":codec" if path == "codec" else ":stream"
                own = var if path == "codec" else None
                out.append(Target(var_label + suffix, stream, path, codec=own))
    return out


def _unlisted(listed: dict[str, tuple[str, dict]]) -> dict[str, tuple[str, dict]]:
    """Registered codecs none of the lists covers: their family's example, else defaults."""
    covered = {canonical_name(name) for name, _ in listed.values()}
    out: dict[str, tuple[str, dict]] = {}
    for name in list_codecs():
        if name in covered:
            continue
        family = codec_family(name)
        example = get_family(family).example if family is not None else None
        out[name] = example if example is not None and example[0] == name else (name, {})
    return out


def _build(label: str, make: Callable[[], Codec]) -> Codec | None:
    try:
        return make()
    except Exception as exc:  # a missing plugin, weights or op support: skip, say why
        warnings.warn(f"fuzz: skipping {label}: {type(exc).__name__}: {exc}", stacklevel=3)
        return None


def _encode(label: str, codec: Codec, image: np.ndarray) -> bytes | None:
    try:
        return codec.encode(image)
    except Exception as exc:
        warnings.warn(f"fuzz: skipping {label}: cannot encode: {exc}", stacklevel=3)
        return None
