"""Peak encode and decode memory of each case, measured once per worker on the first image.

The quality pass (``bench/test_quality.py``) puts the values in the case's summary (the study
table, the quality JSON and the report read them from there), the latency tests in
``extra_info``. One image, the first of ``--images``, keeps it cheap (two forks and one encode
and one decode per case; Kodak's images are all 768x512, so the first stands for all of them).
Values are the increments of :func:`imgcomp.memory.codec_peaks` (the call's own memory above
the worker's RSS before it), in MiB; None where the measurement is unsupported (not Linux) or
failed (with a warning), which the tables show as ``n/a``.
"""

from __future__ import annotations

from typing import Any

from bench.case import Case
from imgcomp.memory import peak_fields

__all__ = ["KEYS", "TIMEOUT_S", "case_peaks"]

#: The keys a case's peaks add to its summary and ``extra_info``.
KEYS = ("peak_encode_mib", "peak_decode_mib", "memory_image")
#: Longest one measured call may take (HiFiC decodes a Kodak image in a few seconds).
TIMEOUT_S = 300.0
_PEAKS: dict[tuple[str, int], dict[str, Any]] = {}


def case_peaks(case: Case, codec: Any, images: list[tuple[str, Any]]) -> dict[str, Any]:
    """``peak_encode_mib``, ``peak_decode_mib`` (None: n/a) and ``memory_image`` (the image
    measured) of ``case`` with ``codec`` on the first of ``images``; cached per case and codec
    (a backend's codec differs from torch's; the suite keeps its codecs for the session), once
    per process. The codec must have run already (the quality pass): no warm-up here."""
    name, img = images[0]
    key = (case.id, id(codec))
    if key not in _PEAKS:
        peaks = peak_fields(case.id, codec, img, timeout_s=TIMEOUT_S)  # run already: no warm-up
        _PEAKS[key] = {**peaks, "memory_image": name}
    return dict(_PEAKS[key])
