"""Hostile payload sections inside a valid container, for every learned codec: each decode
ends in pixels of the header's size or a BitstreamError, never another exception."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgcomp
from imgcomp.bitstream import StreamHeader, pack, unpack
from imgcomp.errors import BitstreamError
from imgcomp.registry import get_family, is_progressive, list_families

#: Small seeded codecs: the three Ballé architectures and every family's example.
_SPECS = {
    name: (name, {"pretrained": False, "N": 16, "M": 24})
    for name in ("factorized-prior", "scale-hyperprior", "mean-scale-hyperprior")
}
_SPECS |= {
    get_family(f).example[0]: get_family(f).example
    for f in list_families()
    if get_family(f).example is not None and f != "balle"
}
_H, _W = 37, 50
_IMG = np.random.default_rng(2).integers(0, 256, (_H, _W, 3), dtype=np.uint8)
_CODECS = {key: imgcomp.create_codec(name, **params) for key, (name, params) in _SPECS.items()}
_STREAMS = {key: c.encode(_IMG) for key, c in _CODECS.items()}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(_CODECS)), data=st.data())
def test_hostile_sections_only_raise_bitstream_error(key: str, data: st.DataObject) -> None:
    """Truncated, flipped, random, dropped or repeated sections."""
    codec = _CODECS[key]
    header, sections = unpack(_STREAMS[key])
    i = data.draw(st.integers(0, len(sections) - 1))
    sec = bytearray(sections[i])
    kind = data.draw(st.sampled_from(["truncate", "flip", "random", "drop", "add"]))
    if kind == "truncate":
        sec = sec[: data.draw(st.integers(0, max(len(sec) - 1, 0)))]
    elif kind == "flip" and sec:
        j = data.draw(st.integers(0, len(sec) - 1))
        sec[j] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "random":
        sec = bytearray(data.draw(st.binary(max_size=300)))
    sections = list(sections)
    if kind == "drop":
        sections.pop(i)
    elif kind == "add":
        sections.insert(i, bytes(sec))
    else:
        sections[i] = bytes(sec)
    params = dict(header.params)
    if is_progressive(header.codec) and data.draw(st.booleans()):
        params["iterations"] = len(sections)  # a consistent header: only the payload lies
    stream = pack(StreamHeader(header.codec, header.fingerprint, _H, _W, params), sections)
    try:
        img = codec.decode(stream)
    except BitstreamError:
        return
    assert img.shape == (_H, _W, 3) and img.dtype == np.uint8
