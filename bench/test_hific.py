"""HiFiC's targets (the study's Table 2 model), measured side by side on the bench images.

Against the shipped model (``hific``, ``imgcomp/weights/hific.imgw``, float32):

==============================  ========================  ================
op                              decode latency            SSIM drop
==============================  ========================  ================
structured generator 0.3        <= 0.70x                  <= 0.02
int8                            <= 0.60x (int8 engine)    <= 0.01
bf16                            (reported)                <= 0.005
==============================  ========================  ================

Structured is the study's HiFiC configuration (:func:`imgcomp.study.structured_config`, the
``structured`` case of the matrix: the generator alone at 0.3, channels ranked by L1 norm,
widths rounded to 4, 300 recovery steps); int8 and bf16 quantize every component (encoder,
generator, probability model). The issue sets the structured and int8 targets; none for bf16, so
its decode ratio is only reported and its SSIM drop gates at
the RNN's 0.005. int8 gates only where the hardware delivers it
(:func:`imgcomp.hardware.speedup_gate`); structured always. The ratios are timed on one thread,
as the family's int8 decode ratio was measured and as the bf16 gate measures its kernels.

The targets gate a run timed on at least :data:`bench.test_speedups.FULL_GATE_IMAGES` Kodak
images; fewer or other images gate at target + :data:`bench.test_speedups.PARTIAL_RUN_SLACK`.
SSIM drops are defined over all 24 Kodak images; fewer gate at target +
:data:`PARTIAL_SSIM_SLACK`. Nothing here is in CI's quick selection (``pytestmark``: study; run
with ``--matrix study``). While the weights are not shipped every test skips, saying so
(:func:`bench.case.require_shipped`). A known miss (``EXPECTED_SSIM_MISSES``) is an xfail that
turns into a failure once the target is met, so the entry cannot outlive the miss.
"""

from __future__ import annotations

import pytest

from bench.case import hific_cases
from bench.expected_miss import expect_miss
from bench.side_by_side import decode_side_by_side, family_variants
from bench.test_speedups import FULL_GATE_IMAGES, PARTIAL_RUN_SLACK
from imgcomp.evaluate import summarize
from imgcomp.hardware import CAPABILITY_NEEDED, cpu_capabilities, measure_bf16_ratio, speedup_gate

DECODE_TARGETS = {"structured": 0.70, "int8": 0.60}
SSIM_DROP_TARGETS = {"structured": 0.02, "int8": 0.01, "bf16": 0.005}
#: The SSIM-drop targets are defined over all 24 Kodak images; fewer gate at target + this (as
#: the RNN's, bench/test_rnn.py).
KODAK_IMAGES = 24
PARTIAL_SSIM_SLACK = 0.005
#: Known SSIM-drop misses of the shipped weights: op -> why (imgcomp/weights/README.md, HiFiC).
EXPECTED_SSIM_MISSES: dict[str, str] = {
    "structured": (
        "stage 8's weights (shipped 2026-12-04) lose 0.0528 over all 24 Kodak images with the "
        "300-step recovery (stage 5's lost 0.0095 from SSIM 0.7296)"
    ),
}
ROUNDS = 5

pytestmark = pytest.mark.study

(BASE,) = hific_cases()
VARIANTS = family_variants(BASE, "hific")


@pytest.fixture(scope="module")
def hific_side_by_side(codec_for, timing_images):
    """Decode times of the variants side by side, on one thread (see the module docstring)."""
    return decode_side_by_side(VARIANTS, codec_for, timing_images, ROUNDS)


def _report(timing) -> str:
    return ", ".join(
        f"{name} {1e3 * timing.total(name):.0f} ms ({timing.ratio(name, 'float32'):.2f}x)"
        for name in timing.runs
    )


@pytest.mark.latency
@pytest.mark.parametrize("op", list(DECODE_TARGETS))
def test_hific_decode_speedup(op: str, hific_side_by_side, record_property, pytestconfig) -> None:
    ratio = hific_side_by_side.ratio(op, "float32")
    full_kodak = (
        pytestconfig.getoption("--dataset") == "kodak"
        and len(hific_side_by_side.runs[op]) >= FULL_GATE_IMAGES
    )
    target = DECODE_TARGETS[op] + (0.0 if full_kodak else PARTIAL_RUN_SLACK)
    decision = speedup_gate(op, cpu_capabilities(), measure_bf16_ratio())
    record_property(
        "imgcomp_hific_speedup",
        {
            "op": op,
            "decode_ratio": ratio,
            "decode_min_ratio": hific_side_by_side.ratio(op, "float32", "min"),
            "images": len(hific_side_by_side.runs[op]),
            "target": DECODE_TARGETS[op],
            "gate": target,
        },
    )
    if not decision.gate:
        pytest.skip(
            f"{op} decode {ratio:.2f}x of float32: {decision.reason}; the "
            f"{DECODE_TARGETS[op]:.2f}x target needs {CAPABILITY_NEEDED[op]}"
        )
    assert ratio <= target, f"{op} decode {ratio:.2f}x of float32 > {target:.2f}x; " + _report(
        hific_side_by_side
    )


@pytest.mark.quality
@pytest.mark.parametrize("op", list(SSIM_DROP_TARGETS))
def test_hific_ssim_drop(op: str, case_results, pytestconfig) -> None:
    if pytestconfig.getoption("--dataset") != "kodak":
        pytest.skip("SSIM-drop targets are defined on Kodak")
    base = summarize(case_results(VARIANTS["float32"]))["ssim"]
    results = case_results(VARIANTS[op])
    ssim = summarize(results)["ssim"]
    target = SSIM_DROP_TARGETS[op] + (0.0 if len(results) >= KODAK_IMAGES else PARTIAL_SSIM_SLACK)
    expect_miss(
        base - ssim <= target,
        EXPECTED_SSIM_MISSES.get(op),
        f"{op}: drop {base - ssim:.4f} against {target}",
        "EXPECTED_SSIM_MISSES",
    )
    assert base - ssim <= target, (
        f"{op}: mean SSIM {ssim:.4f} vs float32 {base:.4f}, drop {base - ssim:.4f} > {target}"
    )
