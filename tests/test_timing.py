"""Side-by-side timing helpers: bookkeeping only (no speed is asserted in unit tests)."""

from __future__ import annotations

import sys

import pytest

from imgcomp.errors import ImgcompError
from imgcomp.timing import SideBySide, steady_allocator, time_side_by_side


def test_rounds_interleave_variants_and_skip_warmup() -> None:
    order: list[str] = []
    calls = {
        "a": [lambda: order.append("a0"), lambda: order.append("a1")],
        "b": [lambda: order.append("b0")],
    }
    result = time_side_by_side(calls, rounds=3, warmup=1)
    # every round runs every variant's calls in turn: a0 a1 b0, four times (1 warm-up + 3)
    assert order == ["a0", "a1", "b0"] * 4
    assert [len(r) for r in result.runs["a"]] == [3, 3] and len(result.runs["b"][0]) == 3


def test_totals_and_ratios_use_per_call_medians_or_minima() -> None:
    r = SideBySide({"ref": [[1.0, 3.0, 2.0], [10.0, 10.0, 40.0]], "x": [[1.0, 1.0, 1.0], [5.0]]})
    assert r.total("ref") == 2.0 + 10.0 and r.total("ref", "min") == 1.0 + 10.0
    assert r.ratio("x", "ref") == pytest.approx(6.0 / 12.0)
    assert r.ratio("x", "ref", "min") == pytest.approx(6.0 / 11.0)
    with pytest.raises(ImgcompError, match="stat"):
        r.total("x", "mean")


@pytest.mark.parametrize(
    ("calls", "rounds", "warmup"),
    [({}, 1, 0), ({"a": []}, 1, 0), ({"a": [lambda: None]}, 0, 0), ({"a": [print]}, 1, -1)],
)
def test_bad_arguments_are_refused(calls, rounds, warmup) -> None:
    with pytest.raises(ImgcompError):
        time_side_by_side(calls, rounds, warmup)


def test_steady_allocator_applies_on_linux_glibc() -> None:
    applied = steady_allocator()
    assert applied is (sys.platform.startswith("linux") and _glibc())


def _glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"
