"""Encode and decode latency of every case (pytest-benchmark; run with -n 0).

One benchmark round codes every selected image once; ``extra_info`` carries the case's quality
(mean ssim, psnr, ms_ssim, bpp, bytes) so a saved run holds speed and quality side by side.
"""

from __future__ import annotations

import pytest

from bench.cases import Case
from imgcomp.evaluate import summarize


def _prepare(case: Case, benchmark, case_results, bench_images, direction: str) -> None:
    if benchmark.disabled:
        pytest.skip("timings need pytest-benchmark enabled; run them with -n 0")
    results = case_results(case)
    summary = summarize(results)
    benchmark.group = f"{case.family} {direction}"
    benchmark.extra_info.update(
        case=case.id,
        images=len(results),
        **{k: summary[k] for k in ("ssim", "psnr", "ms_ssim", "bpp", "bytes")},
    )


@pytest.mark.latency
def test_encode_latency(case: Case, benchmark, codec_for, case_results, bench_images) -> None:
    _prepare(case, benchmark, case_results, bench_images, "encode")
    codec = codec_for(case)
    streams = benchmark(lambda: [codec.encode(img) for _, img in bench_images])
    assert len(streams) == len(bench_images)


@pytest.mark.latency
def test_decode_latency(case: Case, benchmark, codec_for, case_results, bench_images) -> None:
    _prepare(case, benchmark, case_results, bench_images, "decode")
    codec = codec_for(case)
    streams = [codec.encode(img) for _, img in bench_images]
    decoded = benchmark(lambda: [codec.decode(s) for s in streams])
    assert [d.shape for d in decoded] == [img.shape for _, img in bench_images]
