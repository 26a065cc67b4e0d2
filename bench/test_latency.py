"""Encode and decode latency of every case (pytest-benchmark; run with -n 0).

One benchmark round codes each of the first ``--timing-images`` images once (4 by default, all
with ``--timing-images all``); ``extra_info`` carries the number of images timed and the case's
quality over every selected image (mean ssim, psnr, ms_ssim, bpp, bytes) so a saved run holds
speed and quality side by side, and its peak encode and decode memory on the first timed image
(``peak_encode_mib``, ``peak_decode_mib``, ``memory_image``; :mod:`bench.memory`).
"""

from __future__ import annotations

import pytest

from bench.cases import Case
from bench.memory import case_peaks
from imgcomp.evaluate import summarize

_PROFILES: dict[str, dict] = {}


def _model_size(case: Case, codec, image_hw: tuple[int, int]) -> dict:
    """Parameters, non-zeros, serialized / zlib size and MACs of a learned codec's model."""
    if case.id not in _PROFILES:
        from imgcomp.ops.profile import profile_model

        total = profile_model(codec.model, input_hw=image_hw).total
        _PROFILES[case.id] = {
            "parameters": total.parameters,
            "nonzero_parameters": total.nonzero_parameters,
            "serialized_bytes": total.serialized_bytes,
            "compressed_bytes": total.compressed_bytes,
            "macs": total.macs,
        }
    return _PROFILES[case.id]


def _prepare(case: Case, benchmark, codec, case_results, timed, direction: str) -> None:
    if benchmark.disabled:
        pytest.skip("timings need pytest-benchmark enabled; run them with -n 0")
    results = case_results(case)
    summary = summarize(results)
    benchmark.group = f"{case.family} {direction}"
    benchmark.extra_info.update(
        case=case.id,
        images=len(timed),
        quality_images=len(results),
        **{k: summary[k] for k in ("ssim", "psnr", "ms_ssim", "bpp", "bytes")},
    )
    if hasattr(codec, "model"):
        benchmark.extra_info.update(_model_size(case, codec, timed[0][1].shape[:2]))
    benchmark.extra_info.update(case_peaks(case, codec, timed))


@pytest.mark.latency
def test_encode_latency(case: Case, benchmark, codec_for, case_results, timing_images) -> None:
    codec = codec_for(case)
    _prepare(case, benchmark, codec, case_results, timing_images, "encode")
    streams = benchmark(lambda: [codec.encode(img) for _, img in timing_images])
    assert len(streams) == len(timing_images)


@pytest.mark.latency
def test_decode_latency(case: Case, benchmark, codec_for, case_results, timing_images) -> None:
    codec = codec_for(case)
    _prepare(case, benchmark, codec, case_results, timing_images, "decode")
    streams = [codec.encode(img) for _, img in timing_images]
    decoded = benchmark(lambda: [codec.decode(s) for s in streams])
    assert [d.shape for d in decoded] == [img.shape for _, img in timing_images]
