"""What the report's figures and tables plot, computed from the inputs (no drawing here).

Rate-distortion points come from the quality results and ``imgcomp eval`` files (and rate-curve
files); the same case of the same dataset measured twice keeps its latest measurement. The ops'
frontier pairs each op configuration with its unmodified base: from study rows (against the
study's ``prune=none/quant=none`` row), from a benchmark save that timed both (decode medians of
the same run; SSIM and model size from the timings' ``extra_info``) and, for bases no save
pairs, from a quality results file (its quality-pass decode times: noisier). Latency history
follows each benchmark across the saved runs, in the runs' date order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from imgcomp.report.cases import UNMODIFIED, CodecNames, setting_of, split_base, split_case_id
from imgcomp.report.load import BenchmarkEntry, BenchmarkRun, Inputs, ReportWarning

__all__ = [
    "RD_METRICS",
    "LatencyHistory",
    "OpPoint",
    "RDPoint",
    "RDSeries",
    "codec_names",
    "frontier_points",
    "latency_history",
    "pareto",
    "rd_points",
]

#: The quality metrics RD curves are drawn for, with their axis titles.
RD_METRICS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM"}


@dataclass(frozen=True)
class RDPoint:
    """One codec setting's mean rate and quality over a dataset."""

    setting: str
    bpp: float
    psnr: float
    ssim: float
    ms_ssim: float
    source: str
    when: datetime
    dataset: str | None = None


@dataclass(frozen=True)
class RDSeries:
    """One line of the RD figures: a codec (with ops, or not) on a dataset, points by rate."""

    codec: str
    ops: str | None
    points: tuple[RDPoint, ...]


@dataclass(frozen=True)
class OpPoint:
    """One op configuration against its unmodified base: SSIM drop, decode speed-up, model
    size (serialized bytes: what quantization shrinks; non-zero parameters: what pruning
    removes)."""

    ops: str
    ssim: float
    base_ssim: float
    speedup: float | None
    size_bytes: float | None
    base_size_bytes: float | None
    source: str
    nonzero: float | None = None
    base_nonzero: float | None = None

    @property
    def ssim_drop(self) -> float:
        """base SSIM - SSIM (positive: the op loses quality)."""
        return self.base_ssim - self.ssim


def codec_names(inputs: Inputs) -> CodecNames:
    """Codec names that know every case id's spelling of its codec first (so that an eval or
    study file's ``mean-scale-hyperprior`` shows as the case ids' ``mbt2018-mean``)."""
    names = CodecNames()
    ids = [e.case for run in inputs.benchmarks for e in run.benchmarks if e.case]
    ids += [case_id for run in inputs.quality for case_id in run.cases]
    for case_id in ids:
        names.key(split_base(split_case_id(case_id)[0])[0], from_case_id=True)
    return names


def _finite(*values: object) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def rd_points(inputs: Inputs, names: CodecNames) -> dict[str, RDSeries]:
    """Per series label (a codec, ``codec [ops]``, a rate-curve file; `` (dataset)`` added
    when the inputs span several datasets): its points by rate, codecs without ops first. A
    setting measured more than once on a dataset keeps the latest measurement."""
    found: dict[tuple, tuple[str, RDPoint]] = {}  # (dataset, codec, ops, setting) -> latest

    def add(dataset, codec_key, ops, label, point: RDPoint) -> None:
        key = (dataset, codec_key, ops, point.setting)
        if key not in found or found[key][1].when <= point.when:
            found[key] = (label, point)

    for run in inputs.quality:
        for case in run.cases.values():
            m = case.mean
            if not _finite(m.get("bpp")):
                continue
            key = names.key(case.codec, from_case_id=True)
            point = RDPoint(
                setting=case.setting or case.base,
                bpp=m["bpp"],
                psnr=m.get("psnr", math.nan),
                ssim=m.get("ssim", math.nan),
                ms_ssim=m.get("ms_ssim", math.nan),
                source=f"quality {run.label}",
                when=run.datetime,
                dataset=run.dataset,
            )
            add(run.dataset, key, case.ops, None, point)
    for ev in inputs.evals:
        if not _finite(ev.mean.get("bpp")):
            continue
        key = names.key(ev.codec)
        ops = "; ".join(ev.ops) or None
        point = RDPoint(
            setting=setting_of(ev.params) or "default",
            bpp=ev.mean["bpp"],
            psnr=ev.mean.get("psnr", math.nan),
            ssim=ev.mean.get("ssim", math.nan),
            ms_ssim=ev.mean.get("ms_ssim", math.nan),
            source=f"eval {ev.path.name}",
            when=ev.datetime,
            dataset=ev.dataset,
        )
        add(ev.dataset, key, ops, None, point)
    for curve in inputs.rate_curves:
        label = f"{curve.path.stem} (rate curve)"
        for row in curve.rows:
            if not _finite(row.get("bpp")):
                continue
            point = RDPoint(
                setting=f"i{row['iterations']}",
                bpp=float(row["bpp"]),
                psnr=float(row.get("psnr", math.nan)),
                ssim=float(row.get("ssim", math.nan)),
                ms_ssim=float(row.get("ms_ssim", math.nan)),
                source=f"rate curve {curve.path.name}",
                when=datetime.min.replace(tzinfo=timezone.utc),
            )
            found[(None, label, None, point.setting)] = (label, point)
    datasets = {d for (d, *_), (label, _) in found.items() if label is None}
    series: dict[str, tuple[str, str | None, list[RDPoint]]] = {}
    for (dataset, codec_key, ops, _), (label, point) in found.items():
        codec = label or names.label(codec_key)
        if label is None:
            label = codec + (f" [{ops}]" if ops else "")
            if len(datasets) > 1:
                suffix = f" ({dataset or 'unknown dataset'})"
                label, codec = label + suffix, codec + suffix
        series.setdefault(label, (codec, ops, []))[2].append(point)
    return {
        label: RDSeries(codec, ops, tuple(sorted(points, key=lambda p: (p.bpp, p.setting))))
        for label, (codec, ops, points) in sorted(
            series.items(), key=lambda item: (item[1][1] is not None, item[0])
        )
    }


def frontier_points(inputs: Inputs, names: CodecNames) -> dict[str, dict[str, list[OpPoint]]]:
    """Per learned base (``mbt2018-mean-q3``), per source (a study file, the latest benchmark
    save pairing its ops, else the latest quality results pairing them): its op points."""
    out: dict[str, dict[str, list[OpPoint]]] = {}
    for study in inputs.studies:
        base = names.base_label(names.key(study.codec), setting_of(study.params))
        source = f"study {study.path.name}"
        if source in out.get(base, {}):  # two studies of one name: tell them by their folder
            source = f"study {study.path.parent.name}/{study.path.name}"
        rows = {r["label"]: r for r in study.rows}
        ref = rows.get(UNMODIFIED)
        if ref is None:
            warnings.warn(
                f"{study.path}: no {UNMODIFIED} row: its ops have no base to compare with",
                ReportWarning,
                stacklevel=2,
            )
            continue
        points = [
            OpPoint(
                ops=label,
                ssim=row["ssim"],
                base_ssim=ref["ssim"],
                speedup=_ratio(ref.get("decode_s"), row.get("decode_s")),
                size_bytes=row.get("serialized_bytes"),
                base_size_bytes=ref.get("serialized_bytes"),
                nonzero=row.get("nonzero_parameters"),
                base_nonzero=ref.get("nonzero_parameters"),
                source=source,
            )
            for label, row in rows.items()
            if label != UNMODIFIED and _finite(row.get("ssim"), ref.get("ssim"))
        ]
        if points:
            out.setdefault(base, {})[source] = points
    timed: set[str] = set()
    for run in reversed(inputs.benchmarks):  # latest first: each base from its latest save
        for base, points in _benchmark_pairs(run, names).items():
            if base not in timed:
                timed.add(base)
                out.setdefault(base, {})[f"benchmark {run.label}"] = points
    from_quality: set[str] = set()
    for run in reversed(inputs.quality):
        for base, points in _quality_pairs(run, names).items():
            if base not in timed and base not in from_quality:
                from_quality.add(base)
                out.setdefault(base, {})[f"quality pass {run.label}"] = points
    return dict(sorted(out.items()))


def _ratio(base: object, value: object) -> float | None:
    if not _finite(base, value) or value <= 0 or base <= 0:
        return None
    return base / value


def _case_base(case_id: str, names: CodecNames) -> tuple[str, str | None]:
    """(base label, ops) of a case id, its codec canonicalised."""
    base, ops = split_case_id(case_id)
    codec, setting = split_base(base)
    return names.base_label(names.key(codec, from_case_id=True), setting), ops


def _benchmark_pairs(run: BenchmarkRun, names: CodecNames) -> dict[str, list[OpPoint]]:
    decode: dict[str, BenchmarkEntry] = {
        e.case: e for e in run.benchmarks if e.case and e.direction == "decode"
    }
    out: dict[str, list[OpPoint]] = {}
    for case_id, entry in decode.items():
        base_id, ops = split_case_id(case_id)
        ref = decode.get(base_id)
        if ops is None or ref is None:
            continue
        e, r = entry.extra_info, ref.extra_info
        if not _finite(e.get("ssim"), r.get("ssim")):
            continue
        label, _ = _case_base(case_id, names)
        out.setdefault(label, []).append(
            OpPoint(
                ops=ops,
                ssim=e["ssim"],
                base_ssim=r["ssim"],
                speedup=_ratio(ref.median, entry.median),
                size_bytes=e.get("serialized_bytes"),
                base_size_bytes=r.get("serialized_bytes"),
                nonzero=e.get("nonzero_parameters"),
                base_nonzero=r.get("nonzero_parameters"),
                source=f"benchmark {run.label}",
            )
        )
    return {k: sorted(v, key=lambda p: p.ops) for k, v in out.items()}


def _quality_pairs(run, names: CodecNames) -> dict[str, list[OpPoint]]:
    out: dict[str, list[OpPoint]] = {}
    for case_id, case in run.cases.items():
        base_id, ops = split_case_id(case_id)
        ref = run.cases.get(base_id)
        if ops is None or ref is None or not _finite(case.mean.get("ssim"), ref.mean.get("ssim")):
            continue
        label, _ = _case_base(case_id, names)
        out.setdefault(label, []).append(
            OpPoint(
                ops=ops,
                ssim=case.mean["ssim"],
                base_ssim=ref.mean["ssim"],
                speedup=_ratio(ref.mean.get("decode_s"), case.mean.get("decode_s")),
                size_bytes=None,
                base_size_bytes=None,
                source=f"quality pass {run.label}",
            )
        )
    return {k: sorted(v, key=lambda p: p.ops) for k, v in out.items()}


def pareto(points: list[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats (lower x, and higher y or, with
    ``higher_is_better=False``, lower y), by x."""
    sign = 1 if higher_is_better else -1
    keep = []
    for i, (x, y) in enumerate(points):
        beaten = any(
            (x2 <= x and sign * y2 >= sign * y) and (x2 < x or sign * y2 > sign * y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        )
        if not beaten:
            keep.append(i)
    return sorted(keep, key=lambda i: points[i])


@dataclass
class LatencyHistory:
    """The saved runs in date order, and per benchmark (by full name) its entry in each run."""

    runs: list[BenchmarkRun]
    entries: dict[str, dict[int, BenchmarkEntry]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> full names

    def change(self, fullname: str) -> tuple[int, int, float] | None:
        """(previous run, last run, relative change of the median) between the last two runs
        that timed ``fullname``; None when fewer than two did."""
        seen = sorted(self.entries.get(fullname, {}))
        if len(seen) < 2:
            return None
        a, b = seen[-2], seen[-1]
        old, new = self.entries[fullname][a].median, self.entries[fullname][b].median
        return a, b, (new - old) / old if old > 0 else math.nan

    def outside_iqr(self, fullname: str) -> bool | None:
        """Whether the last median lies outside the previous run's interquartile range."""
        change = self.change(fullname)
        if change is None:
            return None
        a, b, _ = change
        prev, last = self.entries[fullname][a], self.entries[fullname][b]
        return not prev.q1 <= last.median <= prev.q3


def latency_history(inputs: Inputs) -> LatencyHistory:
    """Every benchmark of every saved run (runs by date; benchmarks grouped by their
    pytest-benchmark group, in first-seen order)."""
    history = LatencyHistory(runs=sorted(inputs.benchmarks, key=lambda r: r.datetime))
    for i, run in enumerate(history.runs):
        for entry in run.benchmarks:
            if entry.fullname not in history.entries:
                history.groups.setdefault(entry.group or "ungrouped", []).append(entry.fullname)
            history.entries.setdefault(entry.fullname, {})[i] = entry
    return history


def short_names(entries: Mapping[int, BenchmarkEntry]) -> str:
    """The name a benchmark shows (its last run's ``name``, e.g. ``test_decode_latency[...]``)."""
    return entries[max(entries)].name
