"""Progressive streams: keep the first iterations of a stream without re-encoding.

A progressive codec (the Toderici RNN: one stream section per iteration, registered with
``progressive=True``) writes streams whose first ``j`` sections are a complete stream of ``j``
iterations. :func:`truncate` rewrites the header's ``iterations`` and drops the later sections:
encode once at the highest rate, serve any lower one.
"""

from __future__ import annotations

from imgcomp.bitstream import StreamHeader, pack, unpack
from imgcomp.errors import BitstreamError, ImgcompError
from imgcomp.registry import is_progressive

__all__ = ["stream_iterations", "truncate"]


def stream_iterations(data: bytes) -> int:
    """How many iterations a progressive stream holds (BitstreamError for other streams)."""
    header, sections = unpack(data)
    _check_progressive(header, len(sections))
    return len(sections)


def truncate(data: bytes, iterations: int) -> bytes:
    """The stream of the first ``iterations`` iterations of the progressive stream ``data``.

    Decoding it gives exactly what encoding at that many iterations gives (the streams are
    byte-identical). ImgcompError when ``iterations`` is not in 1..(the stream's iterations);
    BitstreamError for a stream that is damaged or not progressive.
    """
    header, sections = unpack(data)
    _check_progressive(header, len(sections))
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise ImgcompError(f"iterations must be an integer, got {iterations!r}")
    if not 1 <= iterations <= len(sections):
        raise ImgcompError(
            f"iterations must be in 1..{len(sections)} (what the stream holds), got {iterations}"
        )
    params = {**header.params, "iterations": iterations}
    cut = StreamHeader(header.codec, header.fingerprint, header.height, header.width, params)
    return pack(cut, sections[:iterations])


def _check_progressive(header: StreamHeader, count: int) -> None:
    try:
        progressive = is_progressive(header.codec)
    except ImgcompError:  # UnknownCodecError
        progressive = False
    if not progressive:
        raise BitstreamError(
            f"a {header.codec!r} stream is not progressive: only streams of iterative codecs "
            "(e.g. toderici2017) can be truncated; re-encode at the lower rate instead"
        )
    if header.params.get("iterations") != count:
        raise BitstreamError(
            f"progressive stream says iterations={header.params.get('iterations')!r} but holds "
            f"{count} sections"
        )
