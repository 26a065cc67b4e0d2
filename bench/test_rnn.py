"""The Toderici RNN's targets (issue 10), measured side by side on the bench images.

Against the shipped model at 3 iterations (``toderici2017-i3``, float32):

==================  ========================  ================
op                  decode latency            SSIM drop
==================  ========================  ================
structured 0.3      <= 0.70x                  (reported)
bf16                <= 0.60x (native bf16)    <= 0.005
int8                <= 0.60x (int8 engine)    <= 0.01
==================  ========================  ================

Structured is the study's (:func:`imgcomp.study.structured_config`: encoder and decoder at 0.3,
hidden channels ranked by L1 norm, widths rounded to 4, 300 recovery steps). bf16 and int8 gate
only where the hardware delivers them (:func:`imgcomp.hardware.speedup_gate`). The RNN's int8
keeps its gates float32 (whole-cell int8 broke the codec) and quantizes every convolution on
its own; each hands its float32 output on in channels_last, so the gates and the next
convolution read it without a layout copy (converting back to NCHW after every convolution
made decode 1.3-1.8x of float32; without it, 0.57x on 4 Kodak images of an AMX host).
The ratios are timed on one thread, as the bf16 gate measures its kernels: with
two threads the RNN's small per-iteration tensors parallelize poorly and bf16 decoded in 0.67x
(2 Kodak images) against 0.50x on one. The decode targets are not in CI's quick selection: its
2-image timing pass measured bf16 at 0.67-0.68x there, against 0.50-0.51x on 4 images in a
separate one-thread run; they gate ``--matrix study`` runs. Progressive decoding: decode time
is linear in the number of iterations (within 15% of a straight line through 1, 2, 4 and 8).
Entropy coding: the payload is at least 10% smaller than the raw packed codes of the same
iterations.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench.case import rnn_cases
from bench.expected_miss import expect_miss
from bench.side_by_side import decode_side_by_side, family_variants
from bench.test_speedups import FULL_GATE_IMAGES, PARTIAL_RUN_SLACK
from imgcomp.bitstream import unpack
from imgcomp.evaluate import summarize
from imgcomp.hardware import CAPABILITY_NEEDED, cpu_capabilities, measure_bf16_ratio, speedup_gate
from imgcomp.progressive import truncate
from imgcomp.timing import time_side_by_side

DECODE_TARGETS = {"structured": 0.70, "bf16": 0.60, "int8": 0.60}
SSIM_DROP_TARGETS = {"bf16": 0.005, "int8": 0.01}
#: The SSIM-drop targets are defined over all 24 Kodak images; fewer (CI's 3) gate at target +
#: this: int8 lost 0.0101 on kodim01-03 where all 24 give 0.0088.
KODAK_IMAGES = 24
PARTIAL_SSIM_SLACK = 0.005
#: Known misses on hosts where the op's gate is on: op -> why (see the module docstring).
EXPECTED_MISSES: dict[str, str] = {}
LINEARITY_TOLERANCE = 0.15
ENTROPY_SAVING = 0.10
ROUNDS = 5

pytestmark = pytest.mark.study

BASE = rnn_cases()[0]
VARIANTS = family_variants(BASE, "rnn")


@pytest.fixture(scope="module")
def rnn_side_by_side(codec_for, timing_images):
    """Decode times of the variants side by side, on one thread (see the module docstring)."""
    return decode_side_by_side(VARIANTS, codec_for, timing_images, ROUNDS)


@pytest.mark.latency
@pytest.mark.parametrize("op", list(DECODE_TARGETS))
def test_rnn_decode_speedup(op: str, rnn_side_by_side, record_property, pytestconfig) -> None:
    ratio = rnn_side_by_side.ratio(op, "float32")
    full_kodak = (
        pytestconfig.getoption("--dataset") == "kodak"
        and len(rnn_side_by_side.runs[op]) >= FULL_GATE_IMAGES
    )
    target = DECODE_TARGETS[op] + (0.0 if full_kodak else PARTIAL_RUN_SLACK)
    decision = speedup_gate(op, cpu_capabilities(), measure_bf16_ratio())
    record_property("imgcomp_rnn_speedup", {"op": op, "decode_ratio": ratio})
    if not decision.gate:
        pytest.skip(
            f"{op} decode {ratio:.2f}x of float32: {decision.reason}; the "
            f"{DECODE_TARGETS[op]:.2f}x target needs {CAPABILITY_NEEDED[op]}"
        )
    expect_miss(
        ratio <= target,
        EXPECTED_MISSES.get(op),
        f"{op} decode {ratio:.2f}x of float32 against {target:.2f}x",
        "EXPECTED_MISSES",
    )
    assert ratio <= target, f"{op} decode {ratio:.2f}x of float32 > {target:.2f}x"


@pytest.mark.quick
@pytest.mark.quality
@pytest.mark.parametrize("op", list(SSIM_DROP_TARGETS))
def test_rnn_ssim_drop(op: str, case_results, pytestconfig) -> None:
    if pytestconfig.getoption("--dataset") != "kodak":
        pytest.skip("SSIM-drop targets are defined on Kodak")
    results = case_results(VARIANTS[op])
    base = summarize(case_results(VARIANTS["float32"]))["ssim"]
    ssim = summarize(results)["ssim"]
    target = SSIM_DROP_TARGETS[op] + (0.0 if len(results) >= KODAK_IMAGES else PARTIAL_SSIM_SLACK)
    assert base - ssim <= target, f"{op}: SSIM {ssim:.4f} vs {base:.4f} (drop <= {target})"


@pytest.mark.quick
@pytest.mark.quality
def test_rnn_entropy_coding_beats_raw_codes(codec_for, timing_images) -> None:
    codec = codec_for(BASE)
    for name, img in timing_images:
        _, sections = unpack(codec.encode(img))
        h, w = (-(-s // 32) * 32 // 16 for s in img.shape[:2])
        raw = len(sections) * codec.model.code_channels * h * w / 8
        saved = 1 - sum(map(len, sections)) / raw
        assert saved >= ENTROPY_SAVING, f"{name}: {saved:.1%} fewer bytes than raw codes"


@pytest.mark.quick
@pytest.mark.latency
def test_rnn_progressive_decode_is_linear(codec_for, timing_images) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("timings need the machine to themselves; run with -n 0")
    codec = codec_for(BASE).with_iterations(8)
    counts = (1, 2, 4, 8)
    streams = {j: [] for j in counts}
    for _, img in timing_images[:2]:
        full = codec.encode(img)
        for j in counts:
            streams[j].append(truncate(full, iterations=j))
    timing = time_side_by_side(
        {str(j): [lambda s=s: codec.decode(s) for s in streams[j]] for j in counts}, ROUNDS
    )
    t = np.array([timing.total(str(j)) for j in counts])
    slope, intercept = np.polyfit(np.array(counts, dtype=float), t, 1)
    fit = slope * np.array(counts) + intercept
    worst = float(np.max(np.abs(t - fit) / fit))
    assert slope > 0 and worst <= LINEARITY_TOLERANCE, (
        f"decode seconds {t.round(3).tolist()} for {counts} iterations: {worst:.1%} off a line"
    )
