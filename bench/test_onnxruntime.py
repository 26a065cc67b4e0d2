"""ONNX Runtime beside PyTorch: decode latency of the default model (``mbt2018-mean-q3``), its
structured-pruned and int8 variants on both backends, side by side (timings: -n 0).

Every variant is built once per backend (:func:`bench.case.on_backend`): torch's are the
matrix's cases (int8: torch's FX int8), onnxruntime's the same float or pruned models exported
(:mod:`imgcomp.backends`), int8 quantized by onnxruntime itself (static QDQ, calibrated on the
``--train-data`` crops). One interleaved run (:func:`imgcomp.timing.time_side_by_side`) decodes
every image with all eight codecs in turn, so load hits them alike; ratios are sums over images
of per-image medians.

Targets (issue 13): onnxruntime int8 decode <= :data:`INT8_TARGET` x onnxruntime float32,
gating a run timed on at least :data:`FULL_GATE_IMAGES` Kodak images (else target +
:data:`PARTIAL_RUN_SLACK`); mean SSIM of onnxruntime int8 at most :data:`SSIM_DROP_TARGET` below
onnxruntime float32 (Kodak only). Without onnx / onnxruntime every test skips, saying what to
install.
"""

from __future__ import annotations

import os

import pytest

from bench.case import TORCH, Case
from bench.expected_miss import expect_miss
from bench.matrix import QUANTIZATIONS, STRUCTURED, default_base, op_case
from imgcomp.evaluate import summarize
from imgcomp.timing import time_side_by_side

ORT = "onnxruntime"
INT8_TARGET = 0.60
#: The int8 decode target is not met yet (measured 0.68x, kodim01-04, 1 thread, shared 2-core
#: host): about 30% of int8 g_s is pixel shuffles, float square roots and layout transposes
#: outside ORT's int8 kernels. An expected miss is an xfail while it misses, a failure once met.
INT8_EXPECTED_MISS: str | None = (
    "pixel-shuffle, sqrt and layout-transpose nodes outside the int8 kernels (issue 13)"
)
SSIM_DROP_TARGET = 0.01
PARTIAL_RUN_SLACK = 0.05
FULL_GATE_IMAGES = 4
ROUNDS = 5


def _variants() -> dict[str, Case]:
    base = default_base()
    int8 = next(spec for spec in QUANTIZATIONS if spec.tag == "int8")
    return {
        "float32": base,
        "structured": op_case(base, STRUCTURED, None),
        "int8": op_case(base, None, int8),
        "structured+int8": op_case(base, STRUCTURED, int8),
    }


VARIANTS = _variants()


@pytest.fixture(scope="module")
def onnxruntime_installed() -> None:
    from imgcomp.backends import require_onnxruntime
    from imgcomp.errors import ImgcompError

    try:
        require_onnxruntime()
    except ImgcompError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def side_by_side(onnxruntime_installed, codec_for, timing_images):
    """Decode seconds and stream bytes of every variant on both backends, interleaved."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("side-by-side timings need the machine to themselves; run with -n 0")
    images = [img for _, img in timing_images]
    codecs = {
        (name, backend): codec_for(case, backend)
        for name, case in VARIANTS.items()
        for backend in (TORCH, ORT)
    }
    streams = {key: [c.encode(img) for img in images] for key, c in codecs.items()}
    calls = {
        f"{name}@{backend}": [lambda c=codecs[name, backend], s=s: c.decode(s) for s in ss]
        for (name, backend), ss in streams.items()
    }
    return time_side_by_side(calls, ROUNDS), streams


def _table(decode, streams) -> dict[str, dict]:
    out = {}
    for name in VARIANTS:
        out[name] = {
            "images": len(decode.runs[f"{name}@{TORCH}"]),
            "torch_ms": 1e3 * decode.total(f"{name}@{TORCH}"),
            "ort_ms": 1e3 * decode.total(f"{name}@{ORT}"),
            "ort_ratio": decode.ratio(f"{name}@{ORT}", f"float32@{ORT}"),
            "torch_bytes": sum(map(len, streams[name, TORCH])),
            "ort_bytes": sum(map(len, streams[name, ORT])),
        }
    return out


@pytest.mark.latency
def test_onnxruntime_int8_decode(side_by_side, record_property, pytestconfig) -> None:
    decode, streams = side_by_side
    table = _table(decode, streams)
    record_property("imgcomp_backends", table)
    ratio = table["int8"]["ort_ratio"]
    full_kodak = (
        pytestconfig.getoption("--dataset") == "kodak"
        and table["int8"]["images"] >= FULL_GATE_IMAGES
    )
    gate = INT8_TARGET + (0.0 if full_kodak else PARTIAL_RUN_SLACK)
    rows = "\n".join(
        f"{n}: torch {r['torch_ms']:.1f} ms, onnxruntime {r['ort_ms']:.1f} ms "
        f"({r['ort_ratio']:.2f}x of onnxruntime float32)"
        for n, r in table.items()
    )
    expect_miss(
        ratio <= gate,
        INT8_EXPECTED_MISS,
        f"onnxruntime int8 decode {ratio:.2f}x against {gate:.2f}x",
        "INT8_EXPECTED_MISS",
    )
    assert ratio <= gate, (
        f"onnxruntime int8 decode {ratio:.2f}x of its float32 > {gate:.2f}x\n{rows}"
    )


@pytest.mark.quality
def test_onnxruntime_int8_ssim_drop(onnxruntime_installed, case_results, pytestconfig) -> None:
    dataset = pytestconfig.getoption("--dataset")
    if dataset != "kodak":
        pytest.skip(f"the SSIM-drop target is defined on Kodak, not {dataset}")
    base = summarize(case_results(VARIANTS["float32"], ORT))["ssim"]
    ssim = summarize(case_results(VARIANTS["int8"], ORT))["ssim"]
    assert base - ssim <= SSIM_DROP_TARGET, (
        f"onnxruntime int8: mean SSIM {ssim:.4f} vs its float32 {base:.4f}, drop "
        f"{base - ssim:.4f} > {SSIM_DROP_TARGET}"
    )


@pytest.mark.quality
def test_onnxruntime_float32_matches_torch(onnxruntime_installed, case_results) -> None:
    """onnxruntime float32 computes the same model: SSIM and bytes as torch's, nearly."""
    ort = summarize(case_results(VARIANTS["float32"], ORT))
    ref = summarize(case_results(VARIANTS["float32"], TORCH))
    assert abs(ort["ssim"] - ref["ssim"]) <= 1e-3, (ort["ssim"], ref["ssim"])
    assert abs(ort["bpp"] / ref["bpp"] - 1) <= 0.005, (ort["bpp"], ref["bpp"])
