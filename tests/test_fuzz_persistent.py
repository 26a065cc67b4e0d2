"""Persistent fuzz workers (imgcomp.fuzz.persistent): one worker decodes many mutants, is
recycled after ``recycle`` of them or when its memory grows, and every failure is confirmed
in a fresh per-mutant worker; the outcomes equal those of a worker per mutant."""

from __future__ import annotations

import os
import time
from typing import ClassVar

import numpy as np
import pytest

from imgcomp.bitstream import StreamHeader
from imgcomp.fuzz import Target, run_campaign
from imgcomp.fuzz.persistent import decode_persistent
from tests.test_fuzz_harness import _IMG, Echo, NumpyHog, Picky, Segfault, Sleepy

_LOG = "IMGCOMP_TEST_PID_LOG"


class PidLogger(Echo):
    """Appends the decoding process's pid to the file named by $IMGCOMP_TEST_PID_LOG."""

    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        with open(os.environ[_LOG], "a") as f:
            f.write(f"{os.getpid()}\n")
        return super().decode_sections(sections, header)


class Leaky(PidLogger):
    """Keeps 40 MiB per decode alive for the life of its process."""

    kept: ClassVar[list[bytearray]] = []

    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        self.kept.append(bytearray(40 << 20))
        return super().decode_sections(sections, header)


class FailsOnThirdDecode(Echo):
    """A foreign error on the third decode of a process, whatever the stream: a decoder whose
    state leaks from one stream into the next."""

    count = 0

    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        type(self).count += 1
        if type(self).count == 3:
            raise RuntimeError("state from an earlier stream")
        return super().decode_sections(sections, header)


def _target(codec) -> Target:
    return Target(type(codec).__name__, Echo().encode(_IMG), "codec", codec=codec)


def _pids(path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


@pytest.fixture
def pid_log(tmp_path, monkeypatch):
    path = tmp_path / "pids.txt"
    path.write_text("")
    monkeypatch.setenv(_LOG, str(path))
    return path


def _outcomes(report) -> list[tuple[int, str, str, str]]:
    return [(r.index, r.outcome, r.error, r.description) for r in report.results]


@pytest.mark.parametrize("codec", [Echo(), Picky()], ids=["echo", "picky"])
def test_persistent_and_per_mutant_workers_give_the_same_results(codec) -> None:
    persistent = run_campaign([_target(codec)], 80, seed=5, recycle=250)
    fresh = run_campaign([_target(codec)], 80, seed=5, recycle=1)
    assert _outcomes(persistent) == _outcomes(fresh)
    assert persistent.targets[0].counts == fresh.targets[0].counts
    assert persistent.targets[0].baseline.outcome == "image"


def test_one_worker_decodes_up_to_recycle_mutants(pid_log) -> None:
    report = run_campaign([_target(PidLogger())], 29, seed=1, recycle=10)
    assert report.ok
    pids = _pids(pid_log)  # one line per decode that got past the container
    assert report.targets[0].counts["image"] + 1 <= len(pids) <= 30
    assert os.getpid() not in pids
    runs = [len(list(g)) for g in _groups(pids)]
    # 30 streams (the unmutated one too), 10 per worker: three workers, each used for a run
    assert len(set(pids)) == len(runs) <= 3 and max(runs) <= 10 and len(pids) > 3


def test_recycle_one_forks_a_worker_per_mutant(pid_log) -> None:
    run_campaign([_target(PidLogger())], 12, seed=1, recycle=1)
    pids = _pids(pid_log)
    assert len(set(pids)) == len(pids)


def test_a_worker_whose_memory_grows_is_recycled(pid_log) -> None:
    # a quarter of the 256 MiB limit: at most 2 decodes keeping 40 MiB each before a new fork
    report = run_campaign([_target(Leaky())], 40, seed=1, memory_limit_bytes=256 << 20)
    assert report.ok, report.failures()
    runs = [len(list(g)) for g in _groups(_pids(pid_log))]
    assert len(runs) > 2 and max(runs) <= 2


def test_a_failure_only_a_long_lived_worker_shows_is_confirmed_fresh() -> None:
    FailsOnThirdDecode.count = 0
    report = run_campaign([_target(FailsOnThirdDecode())], 6, seed=1, recycle=250)
    # the third decode in the worker failed; a fresh worker decoded that mutant normally
    assert report.ok, report.failures()
    noted = [r for r in report.results if "a persistent worker saw foreign" in r.description]
    assert len(noted) == 1 and "state from an earlier stream" in noted[0].description
    assert noted[0].outcome in ("image", "typed")


def test_over_time_kills_only_its_worker_and_the_rest_go_on(tmp_path) -> None:
    start = time.perf_counter()
    report = run_campaign([_target(Sleepy())], 3, time_limit_s=0.4, jobs=2, out_dir=tmp_path)
    assert time.perf_counter() - start < 8.0
    (t,) = report.targets
    assert t.baseline.outcome == "over_time" and t.counts["over_time"] >= 1
    assert t.counts["over_time"] + t.counts["typed"] == 3


def test_a_crash_in_a_persistent_worker_is_a_crash_with_its_stderr() -> None:
    report = run_campaign([_target(Segfault())], 3, recycle=250)
    (t,) = report.targets
    assert t.baseline.outcome == "crash" and t.baseline.error == "killed by SIGSEGV"
    assert "Segmentation fault" in t.baseline.stderr
    assert t.counts["crash"] + t.counts["typed"] == 3


def test_an_allocation_past_the_limit_is_over_memory_in_a_persistent_worker() -> None:
    report = run_campaign([_target(NumpyHog())], 2, memory_limit_bytes=256 << 20)
    assert report.targets[0].baseline.outcome == "over_memory"


def test_decode_persistent_refuses_recycle_zero() -> None:
    with pytest.raises(ValueError, match="recycle"):
        next(decode_persistent("x", Echo().decode, [], 1.0, 1 << 30, 1, recycle=0))


def _groups(pids: list[int]):
    """Consecutive runs of one pid (one worker's decodes, jobs=1)."""
    from itertools import groupby

    return (g for _, g in groupby(pids))
