"""What a benchmark run will do: case selection by id, and a rough duration said at the start.

The per-image costs are seconds measured on this project's 2-core CPU with nothing else running
(quality pass with the round-trip checks, metrics included; one timed pass per latency round;
the default matrix took 216 s for an estimate of 235 s); a loaded machine takes longer. What a
first-time user needs is the order of magnitude, before the run.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Seconds per image of one quality pass (encode, decode, round-trip checks, metrics).
QUALITY_S_PER_IMAGE = {
    "jpeg": 0.25,
    "webp": 0.45,
    "jpeg2000": 0.5,
    "avif": 0.6,
    "avif-bpp": 2.0,
    "learned": 0.5,
}
#: Seconds to build a case's codec beyond loading it (structured recovery, int8 calibration).
BUILD_S = {"structured": 40.0, "int8": 5.0}
#: Seconds per timed image of one latency test (warm-up and pytest-benchmark's rounds).
LATENCY_S_PER_IMAGE = {"classic": 0.5, "learned": 0.5}
#: Seconds per timed image of the side-by-side speed-up measurement (all variants, all rounds;
#: the variants are the quality cases' codecs, built once).
SPEEDUP_S_PER_IMAGE = 5.0
#: Seconds per image of the precision study (eight weight precisions).
PRECISION_S_PER_IMAGE = 3.0
#: Seconds per image of the anchor curves (WebP and JPEG at ten settings each) and the four
#: mean-scale qualities the RD check compares with them.
ANCHORS_S_PER_IMAGE = 9.0


def matches(case_id: str, patterns: Sequence[str]) -> bool:
    """Whether ``case_id`` is one of ``patterns`` (exact ids or shell-style wildcards)."""
    return any(case_id == p or fnmatch.fnmatchcase(case_id, p) for p in patterns)


@dataclass(frozen=True)
class Plan:
    """The selected work of a run: quality cases, latency tests, extra studies, images."""

    quality_cases: tuple[str, ...]
    latency_tests: tuple[str, ...]
    speedups: bool
    precision: bool
    images: int
    timing_images: int
    workers: int = 1
    shard: str | None = None  # "K/N" of a --shard run
    anchors: bool = False

    def seconds(self) -> float:
        """Rough wall time of the run (see the module doc)."""
        total = 0.0
        built: set[str] = set()
        for case_id in self.quality_cases:
            total += QUALITY_S_PER_IMAGE[_kind(case_id)] * self.images
            for op, cost in BUILD_S.items():
                key = case_id.split("/quant=")[0] if op == "structured" else case_id
                if _has_op(case_id, op) and key not in built:
                    built.add(key)
                    total += cost
        for test_id in self.latency_tests:
            kind = "learned" if _kind(test_id) == "learned" else "classic"
            total += LATENCY_S_PER_IMAGE[kind] * self.timing_images
        total /= max(1, self.workers)
        if self.speedups:
            total += SPEEDUP_S_PER_IMAGE * self.timing_images
        if self.precision:
            total += PRECISION_S_PER_IMAGE * self.images / max(1, self.workers)
        if self.anchors:
            total += ANCHORS_S_PER_IMAGE * self.images
        return total

    def describe(self) -> str:
        """One line for the start of a run."""
        parts = [f"{len(self.quality_cases)} cases on {self.images} images"]
        parts = parts if self.quality_cases else []
        if self.latency_tests:
            parts.append(f"{len(self.latency_tests)} latency tests on {self.timing_images} images")
        if self.speedups:
            parts.append("speed-up targets")
        if self.precision:
            parts.append("precision study")
        if self.anchors:
            parts.append("RD check against WebP and JPEG")
        minutes = self.seconds() / 60
        when = f"about {minutes:.0f} min" if minutes >= 1.5 else "about a minute or less"
        shard = f"shard {self.shard}: " if self.shard else ""
        return f"imgcomp bench: {shard}{', '.join(parts)}; {when} on a 2-core CPU"


def plan_from_names(
    names: Iterable[str],
    images: int,
    timing_images: int,
    workers: int = 1,
    benchmark_off: bool = False,
    shard: str | None = None,
) -> Plan | None:
    """The Plan of test names like ``test_quality[<case id>]``; None when they hold no work
    the estimate knows (quality, latency, speed-ups, precision, the RD check)."""
    names = list(names)
    quality = tuple(n[len("test_quality[") : -1] for n in names if n.startswith("test_quality["))
    latency = tuple(
        n.split("[", 1)[1][:-1]
        for n in names
        if n.startswith(("test_encode_latency[", "test_decode_latency["))
    )
    speedups = any(n.startswith("test_decode_speedup[") for n in names)
    precision = any(n.startswith("test_ssim_vs_weight_bits") for n in names)
    anchors = any(n.startswith("test_mean_scale_beats_anchors") for n in names)
    if not (quality or latency or speedups or precision or anchors):
        return None
    return Plan(
        quality_cases=quality,
        latency_tests=() if benchmark_off else latency,
        speedups=speedups and not benchmark_off,
        precision=precision,
        anchors=anchors,
        images=images,
        timing_images=timing_images,
        workers=workers,
        shard=shard,
    )


def _kind(case_id: str) -> str:
    name = case_id.split("/")[0]
    for classic in ("jpeg2000", "jpeg", "webp", "avif"):
        if name.startswith(classic + "-"):
            return "avif-bpp" if classic == "avif" and "-bpp" in name else classic
    return "learned"


def _has_op(case_id: str, op: str) -> bool:
    if op == "structured":
        return ":structured" in case_id
    return case_id.endswith(f"/quant={op}")


def case_ids(params: Iterable[object]) -> list[str]:
    """Case ids of pytest callspec parameter values (those that are bench cases)."""
    return [p.id for p in params if hasattr(p, "factory")]
