"""Fuzz campaigns: :func:`run_campaign` mutates each target's valid stream and decodes every
mutant in a forked worker (:mod:`imgcomp.fuzz.worker`), collecting a :class:`CampaignReport`."""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from imgcomp.bitstream import StreamHeader, unpack
from imgcomp.errors import ImgcompError
from imgcomp.fuzz.mutate import mutate
from imgcomp.fuzz.persistent import DEFAULT_RECYCLE, decode_persistent
from imgcomp.fuzz.report import FAILURES, CampaignReport, _save, _summarize
from imgcomp.fuzz.target import DECODE_PATHS, Target
from imgcomp.fuzz.worker import _decode_all, _Item
from imgcomp.memory import rss
from imgcomp.registry import list_codecs

__all__ = ["DECODE_PATHS", "Target", "run_campaign"]


def run_campaign(
    targets: Sequence[Target],
    mutants_per_target: int,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    time_limit_s: float = 5.0,
    memory_limit_bytes: int = 3 << 30,
    progress: bool = False,
    jobs: int = 1,
    kinds: Sequence[str] | None = None,
    recycle: int = DEFAULT_RECYCLE,
) -> CampaignReport:
    """Decode ``mutants_per_target`` mutants of each target's stream, one worker each.

    Mutant ``i`` of a stream comes from ``numpy.random.default_rng([seed, crc32(stream), i])``
    (the two decode paths of one codec see the same mutants). Every mutant with a
    :data:`FAILURES` outcome is saved under ``out_dir`` (``<target>/<index>-<outcome>.bin``,
    plus a line in ``reproducers.jsonl``, rewritten per campaign; ``report.json`` at the end).
    A decode is killed after ``time_limit_s``; ``memory_limit_bytes`` is the address space it
    may add (``RLIMIT_AS`` = the worker's size at the fork + this). ``jobs`` workers run at
    once; ``kinds`` restricts the mutation kinds (see :mod:`imgcomp.fuzz.mutate`). A worker
    decodes up to ``recycle`` mutants (:mod:`imgcomp.fuzz.persistent`; failures confirmed in a
    fresh worker); ``recycle=1`` forks one per mutant. Forking is only safe without running
    threads: run campaigns with ``OMP_NUM_THREADS=1``.
    """
    if not hasattr(os, "fork"):
        raise NotImplementedError("fuzz campaigns fork their workers: Linux or macOS only")
    if mutants_per_target < 0 or time_limit_s <= 0 or memory_limit_bytes <= 0 or jobs < 1:
        raise ValueError("mutants_per_target >= 0, time_limit_s > 0, memory > 0, jobs >= 1")
    if recycle < 1:
        raise ValueError(f"recycle >= 1 (1: a fresh worker per mutant), got {recycle}")
    decoders = [t.decoder() for t in targets]  # every codec built before the first fork
    names = tuple(list_codecs(aliases=True))
    donors = _donors(targets)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "reproducers.jsonl").write_text("")
    report = CampaignReport(seed, time_limit_s, memory_limit_bytes, rss(), [], [], [])
    for target, decode in zip(targets, decoders, strict=True):
        start = time.perf_counter()
        own = _header(target.stream)
        others = tuple(d for d in donors if d != own)

        def items(target: Target = target, others: tuple = others) -> Iterator[_Item]:
            yield -1, target.stream, "unmutated stream"
            stream_seed = zlib.crc32(target.stream)
            for i in range(mutants_per_target):
                rng = np.random.default_rng([seed, stream_seed, i])
                yield i, *mutate(target.stream, rng, codec_names=names, donors=others, kinds=kinds)

        results = []
        limits = (time_limit_s, memory_limit_bytes, jobs)
        if recycle == 1:
            runs = _decode_all(target.label, decode, items(), *limits)
        else:
            runs = decode_persistent(target.label, decode, items(), *limits, recycle=recycle)
        for result, data in runs:
            if out is not None and result.outcome in FAILURES:
                report.reproducers.append(_save(out, target, result, data, seed))
            results.append(result)
        results.sort(key=lambda r: r.index)
        baseline, mutants = results[0], results[1:]
        report.results += mutants
        report.targets.append(_summarize(target, baseline, mutants, time.perf_counter() - start))
        if progress:
            t = report.targets[-1]
            found = ", ".join(f"{o} {t.counts[o]}" for o in FAILURES if t.counts[o])
            print(
                f"[fuzz] {t.label}: {t.mutants} mutants in {t.elapsed_s:.1f} s "
                f"({t.rate:.0f}/s){'; ' + found if found else ''}",
                file=sys.stderr,
                flush=True,
            )
    if out is not None:
        (out / "report.json").write_text(report.to_json() + "\n")
    return report


def _donors(targets: Sequence[Target]) -> list[StreamHeader]:
    """The distinct headers of the targets' valid streams (what a mutant may borrow)."""
    out: list[StreamHeader] = []
    for t in targets:
        header = _header(t.stream)
        if header is not None and header not in out:
            out.append(header)
    return out


def _header(stream: bytes) -> StreamHeader | None:
    try:
        return unpack(stream)[0]
    except ImgcompError:
        return None
