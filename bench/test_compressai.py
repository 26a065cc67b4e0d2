"""imgcomp against CompressAI on the same weights, side by side (skipped without CompressAI).

Per architecture, CompressAI's model of it loads our weights (:mod:`bench.compressai_ref`:
``export_compressai_state_dict``, then CompressAI's ``update()``), and three codecs encode and
decode the timing images, interleaved round by round (:func:`imgcomp.timing.time_side_by_side`)
at 1 and 2 threads: ``imgcomp`` (the fast float32 path, :mod:`imgcomp.nn.fast`),
``imgcomp-modules`` (``fast_inference`` off: the modules' own NCHW forward, what imgcomp ran
before) and ``compressai``. Both libraries take a uint8 image and give uint8 pixels back, with
the same edge padding, clamp and rounding. Models: the shipped ``mbt2018-mean`` and
``bmshj2018-factorized`` quality 3, and a stand-in ``bmshj2018-hyperprior``
(:func:`~bench.compressai_ref.stand_in_hyperprior`; none ships).

Targets: imgcomp's encode + decode time at most :data:`TARGET` x CompressAI's (gated on at least
``FULL_GATE_IMAGES`` Kodak images, else at target + ``PARTIAL_RUN_SLACK``, as
``bench/test_speedups.py``), and every image's stream within 1% of CompressAI's bytes (ours
include the container: header, fingerprint, section lengths, CRC).

Not in the quick selection (about 3 minutes at the default 4 timing images); run with
``pytest bench/test_compressai.py -n 0``. Install CompressAI without its dependencies, which
would replace torch: ``pip install --no-deps compressai``.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

import imgcomp
from bench.compressai_ref import CompressAICodec, import_compressai, stand_in_hyperprior
from bench.expected_miss import expect_miss
from bench.test_speedups import FULL_GATE_IMAGES, PARTIAL_RUN_SLACK
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.timing import SideBySide, time_side_by_side

#: imgcomp float32 encode + decode time over CompressAI's, on the same weights.
TARGET = 0.60
#: Largest relative difference of an image's stream size from CompressAI's.
BYTES_TOLERANCE = 0.01
ARCHS = ("mbt2018-mean", "bmshj2018-hyperprior", "bmshj2018-factorized")
THREADS = (1, 2)
#: (architecture, threads) that miss the target on a full run, with why: an xfail while they
#: miss (4 Kodak images, 5 rounds, 2 threads: 0.67x / 0.63x / 0.71x for mbt2018-mean / the
#: hyperprior stand-in / the factorized prior on a 2-core AMD EPYC, 2026-12-03; 0.63-0.65x /
#: 0.60x / under 0.6x on an idle 2-core Xeon before; all three 0.55-0.61x at 1 thread).
#: Sharing GDN's blocks between the two threads (16384-pixel blocks on torch's threads instead
#: of 2048 on one) measured 0.56x / 0.55x / 0.51x, but made int8 miss its own decode target
#: against that faster float32 (0.65-0.71x against 0.60x), so it is not in.
_GDN_ONE_THREAD = "the fast path runs GDN on one thread (issue 13)"
EXPECTED_MISSES: dict[tuple[str, int], str] = {
    ("mbt2018-mean", 2): _GDN_ONE_THREAD,
    ("bmshj2018-hyperprior", 2): _GDN_ONE_THREAD,
    ("bmshj2018-factorized", 2): _GDN_ONE_THREAD,
}
ROUNDS = 5
VARIANTS = ("imgcomp", "imgcomp-modules", "compressai")

pytestmark = pytest.mark.latency


@pytest.fixture(scope="module")
def compressai_version() -> str:
    module, why = import_compressai()
    if module is None:
        pytest.skip(why)
    return why


def _ours(arch: str, images: list[np.ndarray]):
    if arch == "bmshj2018-hyperprior":
        base = imgcomp.create_codec("mbt2018-mean", quality=3).model
        return stand_in_hyperprior(base, images[:2])
    return imgcomp.create_codec(arch, quality=3)


@pytest.fixture(scope="module")
def codecs(compressai_version, timing_images):
    """Per architecture: the three codecs (imgcomp's two share the weights) and each one's
    encoded timing images."""
    images = [img for _, img in timing_images]
    out = {}
    for arch in ARCHS:
        fast = _ours(arch, images)
        modules = LearnedCodec(_modules_copy(fast.model), fast.name, fast.params)
        theirs = CompressAICodec.of(fast.model)
        trio = {"imgcomp": fast, "imgcomp-modules": modules, "compressai": theirs}
        out[arch] = (trio, {n: [c.encode(img) for img in images] for n, c in trio.items()})
    return out


def _modules_copy(model):
    twin = copy.deepcopy(model)
    twin.fast_inference = False
    return twin


def _timed(trio, encoded, images, threads: int) -> tuple[SideBySide, SideBySide]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        enc = time_side_by_side(
            {n: [lambda c=c, i=i: c.encode(i) for i in images] for n, c in trio.items()}, ROUNDS
        )
        dec = time_side_by_side(
            {n: [lambda c=trio[n], s=s: c.decode(s) for s in encoded[n]] for n in trio}, ROUNDS
        )
    finally:
        torch.set_num_threads(before)
    return enc, dec


@pytest.fixture(scope="module")
def timings(codecs, timing_images):
    """(encode, decode) side-by-side timings per (architecture, threads), computed on demand."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("side-by-side timings need the machine to themselves; run with -n 0")
    images = [img for _, img in timing_images]
    cache: dict[tuple[str, int], tuple[SideBySide, SideBySide]] = {}

    def get(arch: str, threads: int) -> tuple[SideBySide, SideBySide]:
        if (arch, threads) not in cache:
            trio, encoded = codecs[arch]
            cache[arch, threads] = _timed(trio, encoded, images, threads)
        return cache[arch, threads]

    return get


def _report(enc: SideBySide, dec: SideBySide, n: int) -> str:
    lines = [f"{'per image, ms':<18}{'encode':>9}{'decode':>9}{'total':>9}{'vs CompressAI':>15}"]
    ref = enc.total("compressai") + dec.total("compressai")
    for v in VARIANTS:
        e, d = enc.total(v), dec.total(v)
        lines.append(
            f"{v:<18}{1e3 * e / n:>9.1f}{1e3 * d / n:>9.1f}{1e3 * (e + d) / n:>9.1f}"
            f"{(e + d) / ref:>14.2f}x"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_faster_than_compressai(
    arch: str, threads: int, timings, timing_images, record_property, pytestconfig, capsys
) -> None:
    enc, dec = timings(arch, threads)
    with capsys.disabled():
        print(f"\n{arch}, {threads} thread(s), {len(timing_images)} images:")
        print(_report(enc, dec, len(timing_images)))
    total = {v: enc.total(v) + dec.total(v) for v in VARIANTS}
    ratio = total["imgcomp"] / total["compressai"]
    n = len(timing_images)
    full_kodak = pytestconfig.getoption("--dataset") == "kodak" and n >= FULL_GATE_IMAGES
    gate = TARGET + (0.0 if full_kodak else PARTIAL_RUN_SLACK)
    record_property(
        "imgcomp_compressai",
        {
            "arch": arch,
            "threads": threads,
            "images": n,
            "ratio": ratio,
            "min_ratio": (enc.total("imgcomp", "min") + dec.total("imgcomp", "min"))
            / (enc.total("compressai", "min") + dec.total("compressai", "min")),
            "modules_ratio": total["imgcomp-modules"] / total["compressai"],
            "encode_ratio": enc.ratio("imgcomp", "compressai"),
            "decode_ratio": dec.ratio("imgcomp", "compressai"),
            "ms_per_image": {v: 1e3 * total[v] / n for v in VARIANTS},
            "target": TARGET,
            "gate": gate,
        },
    )
    expect_miss(
        ratio <= gate,
        EXPECTED_MISSES.get((arch, threads)),
        f"{arch}, {threads} threads: {ratio:.2f}x against {gate:.2f}x",
        "EXPECTED_MISSES",
        strict=False,
    )
    assert ratio <= gate, (
        f"{arch}, {threads} thread(s): imgcomp encode + decode {ratio:.2f}x of CompressAI's "
        f"> {gate:.2f}x\n" + _report(enc, dec, n)
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_bytes_match_compressai(arch: str, codecs, timing_images) -> None:
    encoded = codecs[arch][1]
    sizes = zip(encoded["imgcomp"], encoded["compressai"], strict=True)
    for (name, _), (ours, theirs) in zip(timing_images, sizes, strict=True):
        ref = CompressAICodec.size(theirs)
        assert abs(len(ours) - ref) <= BYTES_TOLERANCE * ref, (
            f"{arch} {name}: {len(ours)} B vs CompressAI's {ref} B"
        )


def test_compressai_decodes_what_it_encodes_like_imgcomp(codecs, timing_images) -> None:
    """The harness is fair: CompressAI's pixels are imgcomp's up to float rounding (one level
    on a few pixels, or a latent symbol flipped at a rounding boundary)."""
    trio, encoded = codecs["mbt2018-mean"]
    ours = trio["imgcomp"].decode(encoded["imgcomp"][0]).astype(np.int16)
    theirs = trio["compressai"].decode(encoded["compressai"][0]).astype(np.int16)
    assert ours.shape == theirs.shape == timing_images[0][1].shape
    assert np.mean(ours != theirs) < 1e-3
