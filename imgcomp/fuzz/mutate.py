"""Stream mutators: from one valid stream and a seeded generator, a hostile variant and a line
saying what was done to it.

Raw edits (bit flips, byte edits, truncation, extension, random bytes) mostly test the CRC.
The structure-aware kinds re-pack a valid container with :func:`imgcomp.bitstream.pack`, so the
CRC is right and the edit reaches the codec: header sizes, parameters, codec name, fingerprint,
payload sections. ``crc-fixed`` edits raw bytes and then recomputes the CRC, to reach the
container parser itself. Every choice comes from the generator: same stream, same seed, same
mutant.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imgcomp.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    MAX_PIXELS,
    MAX_SECTIONS,
    MAX_SIDE,
    ParamValue,
    StreamHeader,
    pack,
    unpack,
)
from imgcomp.codecs.base import ContainerCodec
from imgcomp.errors import BitstreamError

__all__ = [
    "ADDED_PARAMS",
    "HOSTILE_VALUES",
    "KINDS",
    "RAW_KINDS",
    "STRUCTURED_KINDS",
    "mutate",
]

#: Kinds whose mutants are valid containers (``unpack`` succeeds on them), with their weights.
STRUCTURED_KINDS: dict[str, float] = {
    "header-size": 0.14,
    "params": 0.24,
    "codec-name": 0.06,
    "fingerprint": 0.05,
    "section": 0.26,
}
#: Kinds that edit raw bytes (the CRC refuses most of them; ``crc-fixed`` recomputes it).
RAW_KINDS: dict[str, float] = {
    "bit-flip": 0.05,
    "byte-edit": 0.04,
    "truncate": 0.04,
    "extend": 0.03,
    "random-bytes": 0.03,
    "crc-fixed": 0.06,
}
KINDS: tuple[str, ...] = (*STRUCTURED_KINDS, *RAW_KINDS)

#: Values an existing parameter is set to: wrong types, zero, negative, out of range, huge.
HOSTILE_VALUES: tuple[ParamValue, ...] = (
    0, -1, 1, 99, 4096, 2**31, -(2**40), 3.5, -0.0, 1e300, "x", "", "3", True, False, None,
)  # fmt: skip
#: Parameters a header may gain, each with the values it is given.
ADDED_PARAMS: dict[str, tuple[ParamValue, ...]] = {
    "checkpoint": (
        "/dev/stdin", "/dev/zero", "/etc/passwd", "/nonexistent/model.safetensors",
        "../../../../etc/hostname", ".", "",
    ),
    "device": ("cuda", "cuda:7", "bogus", "meta", "mps", "cpu"),
    "pretrained": (False, True, "no", 0),
    "format": ("compressai", "original", "imgcomp-codec", "imgcomp", "bogus", ""),
    "N": (-5, 0, 1, 4096), "M": (-5, 0, 1, 4096),
    "width": (-5, 0, 0.01, 3.5, 4096),
    "channels": (-5, 0, 1, 4096), "blocks": (-1, 0, 64), "hyper_channels": (-5, 0, 4096),
    "seed": (-1, 2**40, 3.5, "x"),
    "quality": (0, -1, 9, 99, 3.5, "x", True, None),
    "iterations": (0, -1, 17, 99, 3.5, "x", True, None),
    "bpp": (0, -1, 1e9, "x"),
    "unknown_key": (1, "x"),
}  # fmt: skip
_HUGE = ((16384, 16384), (65536, 4096), (4096, 65536), (65536, 1), (1, 65536), (8192, 8192))
_TINY = ((1, 1), (2, 2), (3, 5), (1, None), (None, 1))
_SIZES = ("N", "M", "width", "channels", "blocks", "hyper_channels")
_UNKNOWN_NAMES = ("nope", "x" * 64, "0")

Mutation = Callable[[bytes, np.random.Generator, "_Context"], tuple[bytes, str]]
Edit = Callable[[StreamHeader, list[bytes], np.random.Generator, "_Context"], tuple[bytes, str]]


@dataclass(frozen=True)
class _Context:
    codec_names: tuple[str, ...]
    donors: tuple[StreamHeader, ...]


def mutate(
    stream: bytes,
    rng: np.random.Generator,
    *,
    codec_names: Sequence[str] = (),
    donors: Sequence[StreamHeader] = (),
    kinds: Sequence[str] | None = None,
    max_stack: int = 3,
) -> tuple[bytes, str]:
    """A mutant of ``stream`` and its description (``"; "``-joined, one part per mutation).

    1..``max_stack`` mutations of ``kinds`` (default: all, weighted), structure-aware ones
    first so each re-packs a valid container. ``codec_names`` are names a header may switch to;
    ``donors`` are headers of other valid streams whose codec, params and fingerprint a
    mutant may borrow (so it passes a fingerprint check and reaches another decoder).
    """
    weights = {**STRUCTURED_KINDS, **RAW_KINDS}
    chosen = list(weights) if kinds is None else list(kinds)
    for kind in chosen:
        if kind not in weights:
            raise ValueError(f"unknown mutation kind {kind!r}; kinds are {', '.join(KINDS)}")
    if not chosen or max_stack < 1:
        raise ValueError("mutate needs at least one kind and max_stack >= 1")
    p = np.array([weights[k] for k in chosen])
    stack = 1 + _pick(rng, [0, 1, 2][:max_stack], [0.6, 0.3, 0.1][:max_stack])
    picks = [chosen[int(i)] for i in rng.choice(len(chosen), size=stack, p=p / p.sum())]
    picks.sort(key=lambda k: k in RAW_KINDS)  # stable: structured edits before raw ones
    ctx = _Context(tuple(codec_names), tuple(donors))
    data, parts = bytes(stream), []
    for kind in picks:
        data, what = _MUTATIONS[kind](data, rng, ctx)
        parts.append(what)
    return data, "; ".join(parts)


# -- helpers -----------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, options: Sequence, p: Sequence[float] | None = None):
    """One of ``options`` (any Python objects: no numpy conversion of the chosen value)."""
    if p is not None:
        weights = np.asarray(p, dtype=float)
        return options[int(rng.choice(len(options), p=weights / weights.sum()))]
    return options[int(rng.integers(len(options)))]


def _int(rng: np.random.Generator, low: int, high: int) -> int:
    """A Python int in [low, high] (inclusive)."""
    return int(rng.integers(low, high + 1))


def _random_bytes(rng: np.random.Generator, n: int) -> bytes:
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def _show(value: ParamValue) -> str:
    return json.dumps(value)


def _repack(
    header: StreamHeader,
    sections: Sequence[bytes],
    *,
    codec: str | None = None,
    fingerprint: bytes | None = None,
    height: int | None = None,
    width: int | None = None,
    params: dict[str, ParamValue] | None = None,
) -> bytes:
    """A valid stream: ``header`` with the given fields replaced, and ``sections``."""
    new = StreamHeader(
        codec=header.codec if codec is None else codec,
        fingerprint=header.fingerprint if fingerprint is None else fingerprint,
        height=header.height if height is None else height,
        width=header.width if width is None else width,
        params=header.params if params is None else params,
    )
    return pack(new, sections)


def _structured(
    edit: Callable[[StreamHeader, list[bytes], np.random.Generator, _Context], tuple[bytes, str]],
) -> Mutation:
    """A structure-aware mutation; on a stream that is no container, a raw bit flip instead."""

    def run(data: bytes, rng: np.random.Generator, ctx: _Context) -> tuple[bytes, str]:
        try:
            header, sections = unpack(data)
        except BitstreamError:
            return _bit_flip(data, rng, ctx)
        try:
            return edit(header, sections, rng, ctx)
        except BitstreamError:  # an edit the container cannot hold (stacked sizes, counts)
            return _bit_flip(data, rng, ctx)

    run.__name__ = edit.__name__
    return run


class _Forger(ContainerCodec):
    """Computes the fingerprint a weightless ContainerCodec (a classic one) of a name and params
    would have, with the real formula of :class:`ContainerCodec`."""

    def __init__(self, name: str, params: dict[str, ParamValue]) -> None:
        super().__init__(**params)
        self.name = name

    def encode_sections(self, img: np.ndarray) -> list[bytes]:  # pragma: no cover - unused
        raise NotImplementedError

    def decode_sections(self, sections, header):  # pragma: no cover - unused
        raise NotImplementedError


# -- structure-aware mutations -----------------------------------------------------------------
@_structured
def _header_size(header, sections, rng, ctx) -> tuple[bytes, str]:
    h, w = header.height, header.width
    how = _pick(rng, ["huge", "tiny", "swap", "off-by-one", "scaled", "random"])
    if how == "huge":
        h, w = _pick(rng, _HUGE)
    elif how == "tiny":
        th, tw = _pick(rng, _TINY)
        h, w = th or h, tw or w
    elif how == "swap":
        h, w = w, h
    elif how == "off-by-one":
        h = min(MAX_SIDE, max(1, h + _pick(rng, [-1, 0, 1])))
        w = min(MAX_SIDE, max(1, w + _pick(rng, [-1, 1])))
    elif how == "scaled":
        f = _pick(rng, [2, 16, 0.5])
        h, w = max(1, min(MAX_SIDE, int(h * f))), max(1, min(MAX_SIDE, int(w * f)))
    else:
        h, w = _int(rng, 1, MAX_SIDE), _int(rng, 1, MAX_SIDE)
    w = min(w, MAX_PIXELS // h)
    return _repack(header, sections, height=h, width=w), f"header height={h} width={w}"


@_structured
def _params(header, sections, rng, ctx) -> tuple[bytes, str]:
    params = dict(header.params)
    how = _pick(rng, ["set", "set", "add", "add", "add", "weights", "drop", "clear", "donor"])
    if how == "set" and params:
        key = _pick(rng, sorted(params))
        params[key] = _pick(rng, HOSTILE_VALUES)
        what = f"params {key}={_show(params[key])}"
    elif how == "drop" and params:
        key = _pick(rng, sorted(params))
        del params[key]
        what = f"params -{key}"
    elif how == "weights":  # random weights of a size the stream names: past "pretrained"
        key = _pick(rng, _SIZES)
        params |= {"pretrained": False, key: _pick(rng, ADDED_PARAMS[key])}
        what = f"params +pretrained=false +{key}={_show(params[key])}"
    elif how == "clear":
        params, what = {}, "params {}"
    elif how == "donor" and ctx.donors:
        params = dict(_pick(rng, ctx.donors).params)
        what = f"params of another stream {json.dumps(params, sort_keys=True)}"
    else:
        key = _pick(rng, sorted(ADDED_PARAMS))
        params[key] = _pick(rng, ADDED_PARAMS[key])
        what = f"params +{key}={_show(params[key])}"
    return _repack(header, sections, params=params), what


@_structured
def _codec_name(header, sections, rng, ctx) -> tuple[bytes, str]:
    how = _pick(rng, ["registered", "registered", "unknown", "donor"])
    if how == "donor" and ctx.donors:
        donor = _pick(rng, ctx.donors)
        stream = _repack(
            header, sections, codec=donor.codec, fingerprint=donor.fingerprint,
            params=dict(donor.params),
        )  # fmt: skip
        return stream, f"header of a {donor.codec} stream ({_fmt(donor.params)})"
    others = [n for n in ctx.codec_names if n != header.codec]
    name = _pick(rng, others) if how == "registered" and others else _pick(rng, _UNKNOWN_NAMES)
    return _repack(header, sections, codec=name), f"codec {name}"


@_structured
def _fingerprint(header, sections, rng, ctx) -> tuple[bytes, str]:
    how = _pick(rng, ["flip", "random", "zeros", "forged", "donor"])
    fp = bytearray(header.fingerprint)
    if how == "flip":
        i, bit = _int(rng, 0, len(fp) - 1), _int(rng, 0, 7)
        fp[i] ^= 1 << bit
        what = f"fingerprint flip byte {i} bit {bit}"
    elif how == "random":
        fp, what = bytearray(_random_bytes(rng, len(fp))), "fingerprint random"
    elif how == "zeros":
        fp, what = bytearray(len(fp)), "fingerprint zeros"
    elif how == "donor" and ctx.donors:
        donor = _pick(rng, ctx.donors)
        fp, what = bytearray(donor.fingerprint), f"fingerprint of a {donor.codec} stream"
    else:  # what a weightless codec of this name and params would write: passes its check
        fp = bytearray(_Forger(header.codec, dict(header.params)).fingerprint)
        what = "fingerprint forged (weightless formula)"
    return _repack(header, sections, fingerprint=bytes(fp)), what


@_structured
def _section(header, sections, rng, ctx) -> tuple[bytes, str]:
    secs = list(sections)
    n = len(secs)
    hows = ["add-random", "add-empty"]
    if n:
        hows += ["truncate", "flip", "flip-many", "byte", "random", "zeros", "ones"]
        hows += ["extend", "drop", "duplicate", "split", "many", "drop-all"]
    if n >= 2:
        hows += ["swap", "merge", "reverse"]
    how = _pick(rng, hows)
    i = _int(rng, 0, n - 1) if n else 0
    sec = bytearray(secs[i]) if n else bytearray()
    what = f"section {i}/{n} {how}"
    if how == "truncate":
        k = _int(rng, 0, max(len(sec) - 1, 0))
        what = f"section {i}/{n} truncate {len(sec)}->{k}"
        secs[i] = bytes(sec[:k])
    elif how in ("flip", "flip-many"):
        flips = 1 if how == "flip" else _int(rng, 2, 16)
        spots = []
        for _ in range(flips if sec else 0):
            j, bit = _int(rng, 0, len(sec) - 1), _int(rng, 0, 7)
            sec[j] ^= 1 << bit
            spots.append(f"{j}.{bit}")
        secs[i] = bytes(sec)
        what = f"section {i}/{n} flip bits {','.join(spots) or 'none (empty)'}"
    elif how == "byte":
        if sec:
            j, v = _int(rng, 0, min(len(sec) - 1, 15)), _pick(rng, [0, 255, _int(rng, 0, 255)])
            sec[j] = v
            what = f"section {i}/{n} byte {j}=0x{v:02x}"
        secs[i] = bytes(sec)
    elif how == "random":
        k = _int(rng, 0, 2 * len(sec) + 8)
        secs[i] = _random_bytes(rng, k)
        what = f"section {i}/{n} random {k} bytes"
    elif how in ("zeros", "ones"):
        secs[i] = bytes([0 if how == "zeros" else 255]) * len(sec)
    elif how == "extend":
        k = _int(rng, 1, 64)
        secs[i] = bytes(sec) + _random_bytes(rng, k)
        what = f"section {i}/{n} extend +{k} random bytes"
    elif how == "drop":
        del secs[i]
    elif how == "duplicate":
        secs.insert(i, bytes(sec))
    elif how == "split":
        k = _int(rng, 0, len(sec))
        secs[i : i + 1] = [bytes(sec[:k]), bytes(sec[k:])]
        what = f"section {i}/{n} split at {k}"
    elif how == "many":
        k = _int(rng, min(n + 1, MAX_SECTIONS), MAX_SECTIONS)  # a full stream stays full
        secs += [_pick(rng, [b"", bytes(sec)]) for _ in range(k - n)]
        what = f"sections {n}->{k} (empty or copies of {i})"
    elif how == "drop-all":
        secs, what = [], f"sections {n}->0"
    elif how == "add-random":
        k = _int(rng, 0, 64)
        secs.insert(_int(rng, 0, n), _random_bytes(rng, k))
        what = f"sections {n}->{n + 1} (+ random {k} bytes)"
    elif how == "add-empty":
        secs.append(b"")
        what = f"sections {n}->{n + 1} (+ empty)"
    elif how == "swap":
        j = (i + _int(rng, 1, n - 1)) % n
        secs[i], secs[j] = secs[j], secs[i]
        what = f"sections swap {i}<->{j}"
    elif how == "merge":
        i = min(i, n - 2)
        secs[i : i + 2] = [secs[i] + secs[i + 1]]
        what = f"sections merge {i}+{i + 1}"
    elif how == "reverse":
        secs.reverse()
        what = f"sections reversed ({n})"
    return _repack(header, secs[:MAX_SECTIONS]), what


# -- raw mutations -----------------------------------------------------------------------------
def _bit_flip(data: bytes, rng: np.random.Generator, ctx: _Context) -> tuple[bytes, str]:
    if not data:
        return b"\x00", "empty stream -> 1 zero byte"
    out = bytearray(data)
    parts = []
    for _ in range(_pick(rng, [1, 1, 2, 4])):
        i, bit = _int(rng, 0, len(out) - 1), _int(rng, 0, 7)
        out[i] ^= 1 << bit
        parts.append(f"flip byte {i} bit {bit}")
    return bytes(out), ", ".join(parts)


def _byte_edit(data: bytes, rng: np.random.Generator, ctx: _Context) -> tuple[bytes, str]:
    if not data:
        return b"\xff", "empty stream -> 1 0xff byte"
    out = bytearray(data)
    i, v = _int(rng, 0, len(out) - 1), _pick(rng, [0, 255, 0x80, _int(rng, 0, 255)])
    out[i] = v
    return bytes(out), f"byte {i}=0x{v:02x}"


def _truncate(data: bytes, rng: np.random.Generator, ctx: _Context) -> tuple[bytes, str]:
    k = _int(rng, 0, max(len(data) - 1, 0))
    return data[:k], f"truncate {len(data)}->{k}"


def _extend(data: bytes, rng: np.random.Generator, ctx: _Context) -> tuple[bytes, str]:
    k = _int(rng, 1, 256)
    return data + _random_bytes(rng, k), f"extend +{k} random bytes"


def _random(data: bytes, rng: np.random.Generator, ctx: _Context) -> tuple[bytes, str]:
    k = _int(rng, 0, 2 * len(data) + 16)
    out = _random_bytes(rng, k)
    if rng.random() < 0.5:
        out = MAGIC + bytes([FORMAT_VERSION]) + out
        return out, f"random {k} bytes after magic+version"
    return out, f"random {k} bytes"


def _crc_fixed(data: bytes, rng: np.random.Generator, ctx: _Context) -> tuple[bytes, str]:
    """A byte edit before the CRC, then the CRC recomputed: the parser sees the damage."""
    if len(data) < 5:
        return _byte_edit(data, rng, ctx)
    body = bytearray(data[:-4])
    i = _int(rng, 0, min(len(body) - 1, _pick(rng, [63, len(body) - 1])))  # mostly the header
    v = _pick(rng, [0, 255, 0x80, 0x7F, body[i] ^ (1 << _int(rng, 0, 7)), _int(rng, 0, 255)])
    body[i] = v
    return bytes(body) + zlib.crc32(body).to_bytes(4, "big"), f"crc-fixed byte {i}=0x{v:02x}"


def _fmt(params) -> str:
    return ",".join(f"{k}={_show(v)}" for k, v in sorted(params.items())) or "no params"


_MUTATIONS: dict[str, Mutation] = {
    "header-size": _header_size,
    "params": _params,
    "codec-name": _codec_name,
    "fingerprint": _fingerprint,
    "section": _section,
    "bit-flip": _bit_flip,
    "byte-edit": _byte_edit,
    "truncate": _truncate,
    "extend": _extend,
    "random-bytes": _random,
    "crc-fixed": _crc_fixed,
}
