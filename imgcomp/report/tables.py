"""The report's tables (cells as text): study tables, latency changes, the ops' points, the
latest quality results and the saved runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imgcomp.memory import format_mib
from imgcomp.report.cases import UNMODIFIED
from imgcomp.report.data import LatencyHistory, OpPoint, pareto, short_names
from imgcomp.report.load import QualityCase, QualityRun, StudyResult

__all__ = [
    "LATENCY_RUNS_SHOWN",
    "Table",
    "frontier_table",
    "latency_table",
    "quality_table",
    "runs_table",
    "study_table",
]

#: Runs the latency table shows as columns (the latest; the figures show every run).
LATENCY_RUNS_SHOWN = 8


@dataclass
class Table:
    """A titled table: header cells, rows of cells, an optional note under it."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric: set[int] = field(default_factory=set)  # columns aligned right


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3f}"


def runs_table(history: LatencyHistory) -> Table:
    """The saved benchmark runs in date order: index, date, commit, machine, timings, file."""
    rows = [
        [
            str(i),
            f"{run.datetime:%Y-%m-%d %H:%M:%S %Z}".strip(),
            (run.commit or "nocommit")[:12] + (" (uncommitted changes)" if run.dirty else ""),
            run.machine,
            str(len(run.benchmarks)),
            run.path.name,
        ]
        for i, run in enumerate(history.runs)
    ]
    return Table(
        "Saved benchmark runs",
        ["run", "date", "commit", "machine", "timings", "file"],
        rows,
        numeric={0, 4},
    )


def latency_table(history: LatencyHistory) -> Table:
    """Per benchmark: its median (ms) in each of the latest runs, and the relative change of
    the median between the last two runs that timed it (flagged when the new median lies
    outside the previous run's interquartile range)."""
    shown = list(range(len(history.runs)))[-LATENCY_RUNS_SHOWN:]
    header = ["benchmark", *(f"run {i}: {history.runs[i].label}" for i in shown)]
    header += ["change of median", "vs previous IQR"]
    rows = []
    for fullnames in history.groups.values():
        for fullname in fullnames:
            entries = history.entries[fullname]
            cells = [short_names(entries)]
            cells += [_ms(entries[i].median) if i in entries else "-" for i in shown]
            change = history.change(fullname)
            if change is None:
                cells += ["-", "-"]
            else:
                a, b, rel = change
                cells.append(f"{100 * rel:+.1f}% (run {a} -> {b})")
                cells.append("outside" if history.outside_iqr(fullname) else "within")
            rows.append(cells)
    note = "Medians in ms per round (a round codes every timed image once)."
    if len(history.runs) > len(shown):
        note += f" The latest {len(shown)} of {len(history.runs)} runs; the figures show all."
    return Table("Latency by run", header, rows, note, numeric=set(range(1, len(header) - 1)))


def frontier_table(base: str, sources: Mapping[str, Sequence[OpPoint]]) -> Table:
    """The ops of ``base`` per source: SSIM, its drop, decode speed-up, model size and
    non-zero parameters; ``*`` marks the speed-up frontier (no other op of the source loses
    less SSIM and decodes faster)."""
    rows = []
    for source, points in sources.items():
        timed = [i for i, p in enumerate(points) if p.speedup is not None]
        best = {timed[j] for j in pareto([(points[i].ssim_drop, points[i].speedup) for i in timed])}
        for i, p in enumerate(points):
            size = "-" if p.size_bytes is None else f"{p.size_bytes / 1e6:.3f}"
            nonzero = "-" if p.nonzero is None else f"{p.nonzero / 1e6:.3f}M"
            rows.append(
                [
                    source,
                    p.ops,
                    f"{p.ssim:.4f}",
                    f"{p.ssim_drop:+.4f}",
                    "-" if p.speedup is None else f"{p.speedup:.2f}x",
                    size,
                    nonzero,
                    "*" if i in best else "",
                ]
            )
    return Table(
        f"{base}: op configurations",
        [
            "source",
            "ops",
            "SSIM",
            "SSIM drop",
            "decode speed-up",
            "model MB",
            "non-zeros",
            "frontier",
        ],
        rows,
        note="SSIM drop and speed-up against the unmodified model of the same source; model MB: "
        "serialized size; *: on the speed-up frontier.",
        numeric={2, 3, 4, 5, 6},
    )


def quality_table(run: QualityRun) -> Table:
    """The cases of one quality results file, as the suite's quality table prints them, then
    each case's peak encode and decode memory when the file has any (``n/a`` where not
    measured)."""
    memory = any(_peaks(c) != (None, None) for c in run.cases.values())
    rows = []
    for case_id in sorted(run.cases):
        c = run.cases[case_id]
        m, b = c.mean, c.baseline or {}
        rows.append(
            [
                case_id,
                str(c.images),
                *(f"{m[k]:{f}}" if k in m else "-" for k, f in _QUALITY_FORMATS),
                "-" if b.get("ssim") is None else f"{b['ssim']:.4f}",
                "-" if b.get("bpp") is None else f"{b['bpp']:.4f}",
                str(b.get("gate") or "-"),
                *((format_mib(v) for v in _peaks(c)) if memory else ()),
            ]
        )
    dataset = run.options.get("dataset", "?")
    header = ["case", "n", "bpp", "PSNR", "SSIM", "MS-SSIM", "base SSIM", "base bpp", "gate"]
    header += ["peak encode MiB", "peak decode MiB"] * memory
    images = sorted({str(c.memory.get("memory_image")) for c in run.cases.values() if c.memory})
    note = (
        f"Peak memory: what one encode / decode of {', '.join(images) or 'the first image'} "
        "needed above its worker's RSS (the kernel's high-water mark, imgcomp.memory)."
        if memory
        else ""
    )
    return Table(
        f"Quality ({run.path.name}: {run.label}, dataset {dataset}, matrix "
        f"{run.options.get('matrix', '?')})",
        header,
        rows,
        note,
        numeric=set(range(1, 8)) | ({9, 10} if memory else set()),
    )


def _peaks(case: QualityCase) -> tuple[float | None, float | None]:
    """(peak encode MiB, peak decode MiB) of a case, None where the file has none."""
    memory = case.memory or {}

    def value(key: str) -> float | None:
        v = memory.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return value("peak_encode_mib"), value("peak_decode_mib")


_QUALITY_FORMATS = (("bpp", ".4f"), ("psnr", ".2f"), ("ssim", ".4f"), ("ms_ssim", ".4f"))


def _hms(seconds: float) -> str:
    """hh:mm:ss.ss, the study table's time format (:mod:`imgcomp.study`)."""
    cs = round(seconds * 100)
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6_000)
    return f"{h:02d}:{m:02d}:{rest / 100:05.2f}"


def _ratio_titles(codec: str, keys: Sequence[str]) -> dict[str, str]:
    """Column titles of the ratio keys, by the codec family's component display names
    (Ballé's entropy: "Probability model pruning ratio"), the key itself where unknown."""
    from imgcomp.errors import ImgcompError
    from imgcomp.registry import codec_family, get_family

    display: dict[str, str] = {}
    try:
        family = codec_family(codec)
        if family is not None:
            display = {c.name: c.display for c in get_family(family).components.values()}
    except ImgcompError:  # an unknown codec or family: titles from the keys
        display = {}
    titles = {}
    for key in keys:
        text = display.get(key, key.replace("_", " "))
        titles[key] = f"{text[:1].upper()}{text[1:]} pruning ratio"
    return titles


def _speedup(base: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """Decode speed-up against the unmodified row, then its per-round range."""
    b, r = base.get("decode_s"), row.get("decode_s")
    if not b or not r or r <= 0 or not math.isfinite(b / r):
        return "-"
    text = f"{b / r:.2f}x"
    br, rr = base.get("decode_rounds"), row.get("decode_rounds")
    if row is not base and br and rr and len(br) == len(rr) > 1 and all(rr):
        per_round = [x / y for x, y in zip(br, rr, strict=True)]
        text += f" ({min(per_round):.2f}-{max(per_round):.2f})"
    return text


def study_table(study: StudyResult) -> Table:
    """A study file's rows as the study's table (its markdown column titles): ratios, method,
    quantization, total inference time, SSIM, average size, bpp, decode speed-up (when the
    first row is the unmodified model), peak decode memory (when some row has it), non-zero
    parameters (when every row has them)."""
    rows = list(study.rows)
    first = rows[0] if rows else {}
    keys = list(first)
    end = keys.index("method") if "method" in keys else 1
    ratio_keys = keys[1:end]
    titles = _ratio_titles(study.codec, ratio_keys)
    header = [titles[k] for k in ratio_keys]
    header += ["Method", "Quantization", "Total inference time (hh:mm:ss)", "SSIM"]
    header += ["Avg. compressed image size (B)", "bpp"]
    speedups = first.get("label") == UNMODIFIED
    memory = any(r.get("peak_decode_mib") is not None for r in rows)
    nonzeros = bool(rows) and all(r.get("nonzero_parameters") is not None for r in rows)
    header += ["Decode speedup"] * speedups + ["Peak decode memory (MiB)"] * memory
    header += ["Non-zero params"] * nonzeros
    cells = []
    for r in rows:
        line = [f"{r.get(k, 0):g}" for k in ratio_keys]
        line += [str(r.get("method", "-")), str(r.get("quant") or "-")]
        line += [_hms(r.get("total_inference_s", 0.0)), f"{r.get('ssim', math.nan):.4f}"]
        line += [f"{r.get('avg_bytes', math.nan):.3f}", f"{r.get('bpp', math.nan):.4f}"]
        line += [_speedup(first, r)] * speedups
        line += [format_mib(r.get("peak_decode_mib"))] * memory
        line += [f"{r['nonzero_parameters'] / 1e6:.3f}M"] if nonzeros else []
        cells.append(line)
    params = ", ".join(f"{k}={v}" for k, v in sorted(study.params.items()))
    title = (
        f"{study.codec}{f' ({params})' if params else ''} on {study.dataset or '?'}: "
        f"{len(study.images)} images, grid {study.grid or '?'}, {study.threads or '?'} threads, "
        f"median of {study.repeats or '?'} interleaved rounds ({study.path.name})"
    )
    note = "; ".join(f"not measured: {s.get('label')}: {s.get('error')}" for s in study.skipped)
    left = {len(ratio_keys), len(ratio_keys) + 1}
    return Table(title, header, cells, note, numeric=set(range(len(header))) - left)
