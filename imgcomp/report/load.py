"""Read the report's inputs: any mix of JSON files, each kind recognised from its content.

Kinds: pytest-benchmark saves (``machine_info``, ``commit_info``, ``benchmarks[]``), the suite's
quality results (``"format": "imgcomp-quality"``, ``pytest bench --quality-json``), ``imgcomp
eval --json`` and ``imgcomp study --json`` files (the grid's rows, or a ``--rate-curve`` list).
Folders are searched recursively for ``*.json``; a file of no known kind is skipped with a
:class:`ReportWarning`. The parts of a sharded run (``pytest bench --shard K/N``) are read as
that one run, and a run read twice as one (:mod:`imgcomp.report.merge`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imgcomp.errors import ImgcompError
from imgcomp.report.merge import join_benchmarks, join_quality, merge_runs

__all__ = [
    "KINDS",
    "BenchmarkEntry",
    "BenchmarkRun",
    "EvalResult",
    "Inputs",
    "QualityCase",
    "QualityRun",
    "RateCurve",
    "ReportWarning",
    "StudyResult",
    "find_json",
    "kinds_count",
    "load_inputs",
    "recognise",
]

#: The kinds of input, as :attr:`Inputs.files` names them.
KINDS = ("benchmark", "quality", "eval", "study", "rate_curve")


class ReportWarning(UserWarning):
    """An input the report cannot use (unknown JSON, unreadable file): skipped."""


@dataclass(frozen=True)
class BenchmarkEntry:
    """One pytest-benchmark timing: its name, group, case id and stats (seconds)."""

    name: str
    fullname: str
    group: str | None
    case: str | None
    median: float
    q1: float
    q3: float
    rounds: int
    extra_info: Mapping[str, Any]
    position: int | None = None  # in a sharded run's whole selection, where its save says

    @property
    def direction(self) -> str | None:
        """encode or decode for the suite's latency tests (``test_decode_latency[...]``)."""
        for direction in ("encode", "decode"):
            if self.name.startswith(f"test_{direction}_latency["):
                return direction
        return None


@dataclass(frozen=True)
class BenchmarkRun:
    """One saved pytest-benchmark run; a sharded run's saves joined (``parts``, ``shards``:
    its files and their ``K/N``, by K; :mod:`imgcomp.report.merge`)."""

    path: Path
    datetime: datetime
    commit: str | None
    dirty: bool
    machine: str
    benchmarks: tuple[BenchmarkEntry, ...]
    options: Mapping[str, Any] = field(default_factory=dict)  # the suite's, when it saved
    parts: tuple[Path, ...] = ()
    shards: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Short commit (``*``: uncommitted changes) and the run's UTC minute."""
        return run_label(self.commit, self.dirty, self.datetime)


def run_label(commit: str | None, dirty: bool, when: datetime) -> str:
    """A saved run as figures and tables name it: short commit (``*``: uncommitted changes)
    and its UTC minute."""
    return (commit or "nocommit")[:7] + ("*" if dirty else "") + f" {when:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class QualityCase:
    """One case of a quality results file: means, per-image values, the baseline comparison
    and the peak memory (``peak_encode_mib``, ``peak_decode_mib``, ``memory_image``; None in
    files written before it was measured)."""

    case_id: str
    base: str
    codec: str
    setting: str | None
    ops: str | None
    images: int
    mean: Mapping[str, float]
    per_image: tuple[Mapping[str, Any], ...] = ()
    baseline: Mapping[str, Any] | None = None
    memory: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class QualityRun:
    """The suite's quality results of one run (``pytest bench --quality-json``); a sharded
    run's files joined (``parts``, ``shards``: its files and their ``K/N``, by K)."""

    path: Path
    datetime: datetime
    commit: str | None
    dirty: bool
    machine: Mapping[str, Any]
    options: Mapping[str, Any]
    cases: Mapping[str, QualityCase]
    parts: tuple[Path, ...] = ()
    shards: tuple[str, ...] = ()

    @property
    def dataset(self) -> str | None:
        return self.options.get("dataset")

    @property
    def label(self) -> str:
        """As :attr:`BenchmarkRun.label`."""
        return run_label(self.commit, self.dirty, self.datetime)


@dataclass(frozen=True)
class EvalResult:
    """An ``imgcomp eval --json`` file: one codec setting's means and per-image results."""

    path: Path
    codec: str
    params: Mapping[str, Any]
    ops: tuple[str, ...]
    dataset: str | None
    mean: Mapping[str, float]
    images: tuple[Mapping[str, Any], ...]
    datetime: datetime  # the file's modification time: eval files carry no date


@dataclass(frozen=True)
class StudyResult:
    """An ``imgcomp study --json`` file: the grid's rows (``rows_to_json``) and the run's facts."""

    path: Path
    codec: str
    params: Mapping[str, Any]
    dataset: str | None
    grid: str | None
    repeats: int | None
    threads: int | None
    images: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]
    skipped: tuple[Mapping[str, Any], ...] = ()
    timing: str | None = None


@dataclass(frozen=True)
class RateCurve:
    """An ``imgcomp study --rate-curve K --json`` file: per iteration count, mean rate and
    quality (the file names no codec: the report labels the curve by the file's name)."""

    path: Path
    rows: tuple[Mapping[str, Any], ...]


@dataclass
class Inputs:
    """Everything read, by kind, plus each file's kind and the files skipped (with why)."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    benchmarks: list[BenchmarkRun] = field(default_factory=list)
    quality: list[QualityRun] = field(default_factory=list)
    evals: list[EvalResult] = field(default_factory=list)
    studies: list[StudyResult] = field(default_factory=list)
    rate_curves: list[RateCurve] = field(default_factory=list)


def find_json(inputs: Sequence[Path]) -> list[Path]:
    """The files to read: each file given, and every ``*.json`` under each folder (sorted);
    ImgcompError for a path that does not exist."""
    out: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise ImgcompError(f"no such file or folder: {path}")
    unique: dict[Path, Path] = {}  # a file given twice (itself and in its folder) is read once
    for path in out:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def load_inputs(inputs: Sequence[Path]) -> Inputs:
    """Read every input file (see the module doc); unknown or unreadable ones are skipped with
    a :class:`ReportWarning` and listed in :attr:`Inputs.skipped`."""
    found = Inputs()
    for path in find_json(inputs):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            kind = recognise(data)
            if kind is None:
                raise ValueError("not a file of a kind the report reads (" + ", ".join(KINDS) + ")")
            _add(found, kind, path, data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
            warnings.warn(f"{path}: skipped: {reason}", ReportWarning, stacklevel=2)
            found.skipped.append((path, reason))
            continue
        found.files.append((path, kind))
    found.benchmarks, notes = merge_runs(found.benchmarks, _benchmark_signature, join_benchmarks)
    found.quality, more = merge_runs(found.quality, _quality_signature, join_quality)
    for note in notes + more:
        warnings.warn(note, ReportWarning, stacklevel=2)
    return found


def _benchmark_signature(run: BenchmarkRun) -> tuple:
    """Equal for the saves of one session (its autosave and its --benchmark-json differ in
    their date by microseconds): same commit, machine, options and timings."""
    stats = tuple((e.fullname, e.median, e.q1, e.q3, e.rounds) for e in run.benchmarks)
    options = json.dumps(run.options, sort_keys=True, default=str)
    return run.commit, run.dirty, run.machine, options, stats


def _quality_signature(run: QualityRun) -> tuple:
    """Equal for one file read from two places: same commit, date and options."""
    options = json.dumps(run.options, sort_keys=True, default=str)
    return run.commit, run.dirty, run.datetime, options, tuple(sorted(run.cases))


def recognise(data: Any) -> str | None:
    """The kind of a parsed JSON document (one of :data:`KINDS`), None when unknown."""
    if isinstance(data, list):
        rows = [r for r in data if isinstance(r, dict)]
        if (
            rows
            and len(rows) == len(data)
            and all({"iterations", "bpp", "ssim"} <= set(r) for r in rows)
        ):
            return "rate_curve"
        return None
    if not isinstance(data, dict):
        return None
    if data.get("format") == "imgcomp-quality" and isinstance(data.get("cases"), dict):
        return "quality"
    if isinstance(data.get("benchmarks"), list) and "machine_info" in data:
        return "benchmark"
    if "codec" in data and isinstance(data.get("rows"), list):
        return "study"
    if (
        "codec" in data
        and isinstance(data.get("mean"), dict)
        and isinstance(data.get("images"), list)
    ):
        return "eval"
    return None


def _add(found: Inputs, kind: str, path: Path, data: Any) -> None:
    if kind == "benchmark":
        found.benchmarks.append(_benchmark_run(path, data))
    elif kind == "quality":
        found.quality.append(_quality_run(path, data))
    elif kind == "eval":
        found.evals.append(_eval(path, data))
    elif kind == "study":
        found.studies.append(_study(path, data))
    else:
        found.rate_curves.append(RateCurve(path, tuple(data)))


def _when(text: Any, path: Path) -> datetime:
    """An ISO date (UTC when it names no zone); the file's modification time without one."""
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None:
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def _commit(info: Any) -> tuple[str | None, bool]:
    info = info if isinstance(info, dict) else {}
    return info.get("id") or None, bool(info.get("dirty"))


def _benchmark_run(path: Path, data: Mapping[str, Any]) -> BenchmarkRun:
    commit, dirty = _commit(data.get("commit_info"))
    machine = data.get("machine_info") or {}
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    name = cpu.get("brand_raw") or machine.get("processor") or machine.get("machine") or "?"
    suite = data.get("imgcomp") if isinstance(data.get("imgcomp"), dict) else {}
    positions = suite.get("positions") if isinstance(suite.get("positions"), dict) else {}
    entries = []
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        extra = bench.get("extra_info") or {}
        position = positions.get(bench.get("fullname", bench["name"]))
        entries.append(
            BenchmarkEntry(
                name=bench["name"],
                fullname=bench.get("fullname", bench["name"]),
                group=bench.get("group"),
                case=extra.get("case") or bench.get("param"),
                median=float(stats["median"]),
                q1=float(stats.get("q1", stats["median"])),
                q3=float(stats.get("q3", stats["median"])),
                rounds=int(stats.get("rounds", 0)),
                extra_info=extra,
                position=position if isinstance(position, int) else None,
            )
        )
    return BenchmarkRun(
        path=path,
        datetime=_when(data.get("datetime"), path),
        commit=commit,
        dirty=dirty,
        machine=f"{name} ({machine.get('node', '?')})",
        benchmarks=tuple(entries),
        options=suite.get("options") if isinstance(suite.get("options"), dict) else {},
    )


def _quality_run(path: Path, data: Mapping[str, Any]) -> QualityRun:
    commit, dirty = _commit(data.get("commit_info"))
    cases = {}
    for case_id, c in data["cases"].items():
        cases[case_id] = QualityCase(
            case_id=case_id,
            base=c.get("base") or case_id.partition("/")[0],
            codec=c.get("codec") or case_id.partition("/")[0],
            setting=c.get("setting"),
            ops=c.get("ops"),
            images=int(c.get("images", 0)),
            mean={k: float(v) for k, v in c["mean"].items() if _number(v)},
            per_image=tuple(c.get("per_image") or ()),
            baseline=c.get("baseline"),
            memory=c["memory"] if isinstance(c.get("memory"), dict) else None,
        )
    return QualityRun(
        path=path,
        datetime=_when(data.get("datetime"), path),
        commit=commit,
        dirty=dirty,
        machine=data.get("machine_info") or {},
        options=data.get("options") or {},
        cases=cases,
    )


def _eval(path: Path, data: Mapping[str, Any]) -> EvalResult:
    return EvalResult(
        path=path,
        codec=str(data["codec"]),
        params=data.get("params") or {},
        ops=tuple(data.get("ops") or ()),
        dataset=data.get("dataset"),
        mean={k: float(v) for k, v in data["mean"].items() if _number(v)},
        images=tuple(data["images"]),
        datetime=_when(None, path),
    )


def _study(path: Path, data: Mapping[str, Any]) -> StudyResult:
    rows = tuple(data["rows"])
    if not all(isinstance(r, dict) and "label" in r for r in rows):
        raise ValueError("a study file's rows each need a label")
    return StudyResult(
        path=path,
        codec=str(data["codec"]),
        params=data.get("params") or {},
        dataset=data.get("dataset"),
        grid=data.get("grid"),
        repeats=data.get("repeats"),
        threads=data.get("threads"),
        images=tuple(data.get("images") or ()),
        rows=rows,
        skipped=tuple(data.get("skipped") or ()),
        timing=data.get("timing"),
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def kinds_count(files: Iterable[tuple[Path, str]]) -> dict[str, int]:
    """How many files of each kind (for the page and the CLI's summary line)."""
    out = dict.fromkeys(KINDS, 0)
    for _, kind in files:
        out[kind] += 1
    return {k: n for k, n in out.items() if n}
