"""Side-by-side timing: every variant's calls interleaved round by round, medians kept.

Latency ratios between variants (pruned vs unpruned, int8 vs float) are only meaningful when the
variants see the same machine state; timing one after the other lets a burst of background load
or a clock change land on one variant alone. Here each round runs every variant's calls in turn,
so such load spreads over all of them, and per call the median over rounds is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from imgcomp.errors import ImgcompError

__all__ = ["SideBySide", "steady_allocator", "time_side_by_side"]

_STATS = {"median": statistics.median, "min": min}


@dataclass(frozen=True)
class SideBySide:
    """Per variant, per call: the seconds of every round (``runs[variant][call][round]``)."""

    runs: Mapping[str, Sequence[Sequence[float]]]

    def total(self, variant: str, stat: str = "median") -> float:
        """Seconds for one pass over the variant's calls: the sum of the per-call medians (or
        minima: ``stat="min"``, the least disturbed by load, what the machine can do)."""
        if stat not in _STATS:
            raise ImgcompError(f"stat must be one of {sorted(_STATS)}, got {stat!r}")
        return sum(_STATS[stat](r) for r in self.runs[variant])

    def ratio(self, variant: str, reference: str, stat: str = "median") -> float:
        """``total(variant) / total(reference)``: below 1 means faster than the reference."""
        return self.total(variant, stat) / self.total(reference, stat)


def time_side_by_side(
    calls: Mapping[str, Sequence[Callable[[], object]]], rounds: int = 5, warmup: int = 1
) -> SideBySide:
    """Time every variant's calls (e.g. one decode per image) for ``rounds`` interleaved rounds,
    after ``warmup`` untimed rounds (first calls pay for allocator and kernel set-up)."""
    if rounds < 1 or warmup < 0:
        raise ImgcompError(f"need rounds >= 1 and warmup >= 0, got {rounds}, {warmup}")
    if not calls or any(len(fns) == 0 for fns in calls.values()):
        raise ImgcompError("every variant needs at least one call to time")
    runs: dict[str, list[list[float]]] = {name: [[] for _ in fns] for name, fns in calls.items()}
    for r in range(warmup + rounds):
        for name, fns in calls.items():
            for i, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - t0
                if r >= warmup:
                    runs[name][i].append(elapsed)
    return SideBySide(runs)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling; a Kodak image's largest activation is 25 MiB
_TRIM_THRESHOLD = 2**30


def steady_allocator() -> bool:
    """Make glibc's malloc keep and reuse freed memory (buffers up to 32 MiB from the heap, no
    trimming); True when applied (Linux with glibc), False elsewhere.

    By default glibc maps each large buffer afresh, or not, depending on an adaptive threshold
    that moves with what the process freed before, and every fresh map is page-faulted in on
    first touch. The same decode then took 125 ms or 160 ms depending on what ran earlier in the
    process (a recovery fine-tuning, another case), which makes latency history and ratios drift
    with test order. Fixed thresholds remove that drift; the process keeps its peak memory.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
