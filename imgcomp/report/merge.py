"""The parts of a sharded run joined into that run, and a run read twice counted once.

``pytest bench --shard K/N`` records its options, the shard among them, in its quality results
file and in its pytest-benchmark saves (``options``; ``bench/conftest.py``). Files alike in
commit (id and uncommitted changes), in N and in every option but the shard and the xdist
workers are the parts of one run: the report shows them as one, its cases (or timings) those of
every part, dated by its last part. A part given twice (a rerun of a shard) counts by its later
file, a missing part is said (:func:`merge_runs` returns notes for the loader to warn with).
Files without a shard are never joined: two unsharded runs of one commit are two runs.

Runs alike in everything (the autosave and the ``--benchmark-json`` of one session, a file in
two folders) are one run, sharded or not (``signature``).

This module works on the loader's run classes by their fields (``path``, ``datetime``,
``commit``, ``dirty``, ``options`` and what :func:`join_quality` / :func:`join_benchmarks`
replace) and imports none of them: :mod:`imgcomp.report.load` calls it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = [
    "IGNORED_OPTIONS",
    "join_benchmarks",
    "join_quality",
    "merge_benchmark_json",
    "merge_runs",
    "part_of",
    "run_key",
]

#: Options that may differ between the parts of one run: the shard itself, and the xdist
#: workers (runners with different GPU counts run their shards with different ``-n``).
IGNORED_OPTIONS = ("shard", "xdist_workers")


class Run(Protocol):
    """What merging reads of a run (the loader's QualityRun and BenchmarkRun)."""

    path: Path
    datetime: datetime
    commit: str | None
    dirty: bool
    options: Mapping[str, Any]


R = TypeVar("R", bound=Run)


def part_of(options: Mapping[str, Any]) -> tuple[int, int] | None:
    """(K, N) of a run's ``shard`` option (``"K/N"``), None for an unsharded run (or a value
    that is no shard)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(options.get("shard") or ""))
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        return None
    return int(match[1]), int(match[2])


def run_key(run: Run) -> str | None:
    """What the parts of one run share (commit, N, the options but :data:`IGNORED_OPTIONS`),
    as text; None for an unsharded run."""
    part = part_of(run.options)
    if part is None:
        return None
    options = {k: v for k, v in run.options.items() if k not in IGNORED_OPTIONS}
    key = {"commit": run.commit, "dirty": run.dirty, "shards": part[1], "options": options}
    return json.dumps(key, sort_keys=True, default=str)


def merge_runs(
    runs: Sequence[R], signature: Callable[[R], Hashable], join: Callable[[list[R]], R]
) -> tuple[list[R], list[str]]:
    """``runs`` with each sharded run's parts joined (``join(parts)``, parts in shard order)
    and runs of equal ``signature`` counted once, by date; and notes on missing or repeated
    parts."""
    unique: dict[Hashable, R] = {}
    for run in sorted(runs, key=lambda r: r.datetime):  # stable: equal dates in input order
        unique.setdefault(signature(run), run)
    out: list[R] = []
    groups: dict[str, dict[int, list[R]]] = {}
    for run in unique.values():
        key = run_key(run)
        if key is None:
            out.append(run)
        else:
            groups.setdefault(key, {}).setdefault(part_of(run.options)[0], []).append(run)
    notes = []
    for by_index in groups.values():
        parts = []
        for index in sorted(by_index):
            *earlier, latest = by_index[index]  # by date: a shard run again replaces its first
            if earlier:
                files = ", ".join(str(r.path) for r in earlier)
                notes.append(
                    f"{latest.path}: shard {latest.options['shard']} of this run again (earlier "
                    f"in {files}); the later file is used"
                )
            parts.append(latest)
        count = part_of(parts[0].options)[1]
        missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in by_index]
        if missing:
            notes.append(
                f"{parts[0].path}: the run of commit {(parts[0].commit or 'nocommit')[:7]} has "
                f"{count} shards, {', '.join(missing)} not among the inputs: it shows the others"
            )
        out.append(join(parts))
    return sorted(out, key=lambda r: r.datetime), notes


def _joined(parts: Sequence[Run], **changes: Any) -> Any:
    """The first part with the parts' common fields: dated by the last, options without the
    shard, the parts' files and shards recorded."""
    first = parts[0]
    return dataclasses.replace(
        first,
        datetime=max(p.datetime for p in parts),
        options={**first.options, "shard": None},
        parts=tuple(p.path for p in parts),
        shards=tuple(str(p.options["shard"]) for p in parts),
        **changes,
    )


def join_quality(parts: Sequence[Any]) -> Any:
    """One quality run of its shards' (QualityRun): every part's cases, by id."""
    cases = {cid: case for part in parts for cid, case in part.cases.items()}
    return _joined(parts, cases=dict(sorted(cases.items())))


def join_benchmarks(parts: Sequence[Any]) -> Any:
    """One benchmark run of its shards' saves (BenchmarkRun): every part's timings in the
    unsharded run's order where the saves record it (``position``), the machines named once."""
    entries = [
        (e.position is None, e.position or 0, k, i, e)
        for k, part in enumerate(parts)
        for i, e in enumerate(part.benchmarks)
    ]
    entries.sort(key=lambda t: t[:4])
    machines = " + ".join(dict.fromkeys(p.machine for p in parts))
    return _joined(parts, benchmarks=tuple(e for *_, e in entries), machine=machines)


def merge_benchmark_json(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One pytest-benchmark JSON of several (the shards' ``--benchmark-json`` files of one run,
    for github-action-benchmark's ``tool: pytest``): the first's machine, commit and version,
    the last date, every benchmark once. ValueError when they name different commits or time
    one benchmark twice."""
    if not docs:
        raise ValueError("no pytest-benchmark JSON to merge")
    commits = {(d.get("commit_info") or {}).get("id") for d in docs}
    if len(commits) > 1:
        raise ValueError(f"the files are of different commits: {sorted(map(str, commits))}")
    seen: dict[str, int] = {}
    benchmarks = []
    for i, doc in enumerate(docs):
        for bench in doc["benchmarks"]:
            name = bench.get("fullname") or bench["name"]
            if name in seen:
                raise ValueError(f"{name} is timed in files {seen[name] + 1} and {i + 1}")
            seen[name] = i
            benchmarks.append(bench)
    merged = {k: v for k, v in docs[0].items() if k not in ("benchmarks", "imgcomp")}
    merged["datetime"] = max(str(d.get("datetime", "")) for d in docs)
    merged["benchmarks"] = benchmarks
    return merged
