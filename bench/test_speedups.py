"""The compression ops' targets, measured side by side on the bench images (timings: -n 0).

Against the unpruned float32 model of the default matrix (``mbt2018-mean-q3``):

=============  ========================  ================  ==============================
op             decode latency            SSIM drop         serialized size (whole model)
=============  ========================  ================  ==============================
structured     <= 0.70x                  (reported)
bf16           <= 0.50x (native bf16)    <= 0.005
int8           <= 0.60x (int8 engine)    <= 0.01           <= 0.3x
w8             (not a speed op)          <= 0.002
=============  ========================  ================  ==============================

A decode target gates only where the hardware delivers it (:func:`imgcomp.hardware.speedup_gate`,
:data:`imgcomp.hardware.CAPABILITY_NEEDED`): bf16 needs AMX tiles or a bf16 convolution measured
at most 0.3x of float32's time on this host (:func:`imgcomp.hardware.measure_bf16_ratio`;
AVX512-BF16 alone does not count: 0.53x on an EPYC), int8 a quantized engine and VNNI-class
int8 dot products where torch can tell, structured nothing. Elsewhere the test skips with the
measured ratio and the reason, and the terminal section prints the verdict and a ``hardware:``
line.

Structured pruning at 0.3 (all components) keeps widths rounded down to multiples of 4
(:data:`imgcomp.study.STRUCTURED_ROUND_TO`): 64 -> 44 and 96 -> 64 channels. With the exact
widths (45 and 67) decode took 0.69-0.73x of the unpruned model on this project's 2-core AVX-512
CPU, because oneDNN computes channels in blocks of 16 (67 latent channels cost as much as 80);
rounded, 0.65-0.66x at the same Kodak SSIM after recovery.

Timings use the first ``--timing-images`` images (4 by default; Kodak's are all 768x512, so
the ratio of 4 equals that of 24 to about 0.01). The targets gate a run timed on at least
:data:`FULL_GATE_IMAGES` Kodak images; fewer (CI's ``--images 2``) or other images gate at
target + :data:`PARTIAL_RUN_SLACK`, and the terminal section prints every ratio
against its target either way.

Latencies come from one interleaved run (:func:`imgcomp.timing.time_side_by_side`): every round
decodes every image with every variant in turn, so machine load hits them alike. The ratio is
the sum over images of the per-image medians. SSIM drops compare the quality pass's mean SSIM
(real streams, :func:`imgcomp.evaluate.evaluate`) over the same images.
"""

from __future__ import annotations

import os

import pytest

from bench.expected_miss import expect_miss
from bench.matrix import default_variants
from imgcomp.evaluate import summarize
from imgcomp.hardware import (
    CAPABILITY_NEEDED,
    CpuCapabilities,
    cpu_capabilities,
    measure_bf16_ratio,
    speedup_gate,
)
from imgcomp.ops.profile import profile_model
from imgcomp.timing import time_side_by_side

#: Decode-latency targets of the issue (ratio to the unpruned float32 model), defined on Kodak.
DECODE_TARGETS = {"structured": 0.70, "bf16": 0.50, "int8": 0.60}
#: Targets missed on a full Kodak run, with why: an xfail while missed there, a failure once met
#: (runs of fewer images gate at target + slack as usual). None at present.
EXPECTED_MISSES: dict[str, str] = {}
#: A run on part of Kodak (CI's 2 images) or on other images gates at target + this: a ratio
#: from 2 images moves by about +-0.02 from run to run and differs from the 24-image one by as
#: much (structured: 0.64-0.68 on kodim01-02 in five runs, 0.65-0.66 on all 24).
PARTIAL_RUN_SLACK = 0.05
#: Kodak images a run must time for the targets to gate without slack.
FULL_GATE_IMAGES = 4
#: Largest allowed drop of mean SSIM.
SSIM_DROP_TARGETS = {"bf16": 0.005, "int8": 0.01, "w8": 0.002}
#: Largest whole-model serialized size ratio.
SIZE_TARGETS = {"int8": 0.30}
ROUNDS = 7

pytestmark = pytest.mark.quick


VARIANTS = default_variants("structured", "bf16", "int8", "w8")


@pytest.fixture(scope="module")
def hardware() -> tuple[CpuCapabilities, float]:
    """This CPU's capabilities and how a bf16 transposed conv's time compares to float32's."""
    return cpu_capabilities(), measure_bf16_ratio()


@pytest.fixture(scope="module")
def side_by_side(codec_for, timing_images):
    """Encode and decode seconds of every timed variant, interleaved (see the module doc)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("side-by-side timings need the machine to themselves; run with -n 0")
    names = ["float32", *DECODE_TARGETS]
    codecs = {name: codec_for(VARIANTS[name]) for name in names}
    images = [img for _, img in timing_images]
    streams = {name: [c.encode(img) for img in images] for name, c in codecs.items()}
    decode = time_side_by_side(
        {n: [lambda c=codecs[n], s=s: c.decode(s) for s in streams[n]] for n in names}, ROUNDS
    )
    encode = time_side_by_side(
        {n: [lambda c=codecs[n], i=i: c.encode(i) for i in images] for n in names}, ROUNDS
    )
    return encode, decode


def _report(encode, decode) -> str:
    head = f"{'variant':<12}{'encode ms':>11}{'ratio':>7}{'decode ms':>11}{'ratio':>7}"
    lines = [head + f"{'min ratio':>11}"]
    for name in encode.runs:
        lines.append(
            f"{name:<12}{1e3 * encode.total(name):>11.1f}{encode.ratio(name, 'float32'):>7.2f}"
            f"{1e3 * decode.total(name):>11.1f}{decode.ratio(name, 'float32'):>7.2f}"
            f"{decode.ratio(name, 'float32', 'min'):>11.2f}"
        )
    return "\n".join(lines)


@pytest.mark.latency
@pytest.mark.parametrize("op", list(DECODE_TARGETS))
def test_decode_speedup(op: str, side_by_side, hardware, record_property, pytestconfig) -> None:
    encode, decode = side_by_side
    caps, bf16_ratio = hardware
    decision = speedup_gate(op, caps, bf16_ratio)
    ratio = decode.ratio(op, "float32")
    full_kodak = (
        pytestconfig.getoption("--dataset") == "kodak" and len(decode.runs[op]) >= FULL_GATE_IMAGES
    )
    gate = DECODE_TARGETS[op] + (0.0 if full_kodak else PARTIAL_RUN_SLACK)
    record_property(
        "imgcomp_speedup",
        {
            "op": op,
            "decode_ratio": ratio,
            "decode_min_ratio": decode.ratio(op, "float32", "min"),
            "encode_ratio": encode.ratio(op, "float32"),
            "decode_ms": 1e3 * decode.total(op),
            "float32_decode_ms": 1e3 * decode.total("float32"),
            "images": len(decode.runs[op]),
            "target": DECODE_TARGETS[op],
            "gate": gate,
            "hardware": f"{caps.describe()}; bf16 conv {bf16_ratio:.2f}x",
            "skipped": None if decision.gate else decision.short,
        },
    )
    if not decision.gate:
        pytest.skip(
            f"{op} decode {ratio:.2f}x of float32: {decision.reason}; the "
            f"{DECODE_TARGETS[op]:.2f}x target needs {CAPABILITY_NEEDED[op]}"
        )
    expect_miss(
        ratio <= gate,
        EXPECTED_MISSES.get(op) if full_kodak else None,
        f"{op} decode {ratio:.2f}x of float32 against {gate:.2f}x",
        "EXPECTED_MISSES",
    )
    assert ratio <= gate, f"{op} decode {ratio:.2f}x of float32 > {gate:.2f}x\n" + _report(
        encode, decode
    )


@pytest.mark.quality
@pytest.mark.parametrize("op", list(SSIM_DROP_TARGETS))
def test_ssim_drop(op: str, case_results, pytestconfig) -> None:
    dataset = pytestconfig.getoption("--dataset")
    if dataset != "kodak":
        pytest.skip(f"SSIM-drop targets are defined on Kodak, not {dataset}")
    base = summarize(case_results(VARIANTS["float32"]))["ssim"]
    ssim = summarize(case_results(VARIANTS[op]))["ssim"]
    assert base - ssim <= SSIM_DROP_TARGETS[op], (
        f"{op}: mean SSIM {ssim:.4f} vs float32 {base:.4f}, drop {base - ssim:.4f} "
        f"> {SSIM_DROP_TARGETS[op]}"
    )


@pytest.mark.quality
@pytest.mark.parametrize("op", list(SIZE_TARGETS))
def test_serialized_size(op: str, codec_for) -> None:
    before = profile_model(codec_for(VARIANTS["float32"]).model, input_hw=(64, 64)).total
    after = profile_model(codec_for(VARIANTS[op]).model, input_hw=(64, 64)).total
    ratio = after.serialized_bytes / before.serialized_bytes
    assert ratio <= SIZE_TARGETS[op], (
        f"{op}: whole model {after.serialized_bytes} B vs {before.serialized_bytes} B "
        f"= {ratio:.3f}x > {SIZE_TARGETS[op]}x"
    )
