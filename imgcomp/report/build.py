"""Build the report: read the inputs, compute what to plot, draw the figures, write the page."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgcomp.errors import ImgcompError
from imgcomp.fsutil import atomic_write_text
from imgcomp.report.data import codec_names, frontier_points, latency_history, rd_points
from imgcomp.report.figures import Figure, frontier_figures, latency_figures, rd_figures, save
from imgcomp.report.html import Section, render_page
from imgcomp.report.load import BenchmarkRun, ReportWarning, load_inputs
from imgcomp.report.tables import (
    Table,
    frontier_table,
    latency_table,
    quality_table,
    runs_table,
    study_table,
)

__all__ = ["FIGURES_DIR", "Report", "build_report"]

#: The figures' folder under the report's folder.
FIGURES_DIR = "figures"


@dataclass
class Report:
    """A written report: its page, every figure (with the data it plots) and table, the files
    read (with their kind) and skipped (with why), and the warnings given."""

    out_dir: Path
    index: Path
    files: list[tuple[Path, str]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    runs: list[BenchmarkRun] = field(default_factory=list)


def build_report(inputs: Sequence[Path], out_dir: Path) -> Report:
    """Read ``inputs`` (files and folders, any mix of kinds: see :mod:`imgcomp.report.load`)
    and write ``out_dir/index.html`` with its figures under ``out_dir/figures``. Inputs of no
    known kind are skipped with a :class:`ReportWarning`; ImgcompError when a path is missing
    or no input could be read."""
    out_dir = Path(out_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = load_inputs([Path(p) for p in inputs])
        names = codec_names(found)
        rd = rd_points(found, names)
        ops = frontier_points(found, names)
        history = latency_history(found)
    for w in caught:  # given again, outside: the caller's filters decide
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not found.files:
        what = ", ".join(str(p) for p in inputs) or "no path"
        raise ImgcompError(
            f"no report input in {what}: no JSON file of a kind the report reads (pytest-benchmark "
            "saves, pytest bench --quality-json files, imgcomp eval / study --json files)"
        )
    report = Report(
        out_dir=out_dir,
        index=out_dir / "index.html",
        files=found.files,
        skipped=found.skipped,
        warnings=[str(w.message) for w in caught if issubclass(w.category, ReportWarning)],
        runs=history.runs,
    )
    sections = _sections(report, found, rd, ops, history)
    save(list(report.figures.values()), out_dir / FIGURES_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_page(
        sections,
        out_dir,
        inputs=found.files,
        skipped=found.skipped,
        warnings=report.warnings,
    )
    atomic_write_text(report.index, page)
    return report


def _sections(report: Report, found, rd, ops, history) -> list[Section]:
    def figure(section: Section, fig: Figure) -> None:
        report.figures[fig.name] = fig
        section.add(fig)

    def table(section: Section, key: str, tab: Table) -> None:
        stem, n = key, 2
        while key in report.tables:
            key, n = f"{stem}#{n}", n + 1
        report.tables[key] = tab
        section.add(tab)

    quality = Section(
        "Rate-distortion curves",
        "Mean over the images of each codec setting (the latest measurement of a setting on a "
        "dataset), from the suite's quality results and imgcomp eval files; dotted: with ops.",
        anchor="rd",
    )
    for fig in rd_figures(rd):
        figure(quality, fig)
    if found.quality:
        table(quality, "quality", quality_table(found.quality[-1]))

    frontier = Section(
        "Compression ops: the frontier per learned codec",
        "Each op configuration against the unmodified model it was applied to: decode speed-up "
        "and model size against the SSIM it costs, from study files, benchmark saves that timed "
        "both (same run) or else the quality pass's times. Dashed: the frontier.",
        anchor="frontier",
    )
    for base, sources in ops.items():
        frontier.add(base)
        for fig in frontier_figures(base, sources):
            figure(frontier, fig)
        table(frontier, f"frontier:{base}", frontier_table(base, sources))

    latency = Section(
        "Latency history",
        "Per benchmark, the median and interquartile range of each saved pytest-benchmark run, "
        "runs in date order, labelled by commit (* uncommitted changes).",
        anchor="latency",
    )
    if history.runs:
        table(latency, "runs", runs_table(history))
        for fig in latency_figures(history):
            figure(latency, fig)
        table(latency, "latency", latency_table(history))

    studies = Section(
        "Study tables",
        "The rows of imgcomp study --json files, as the study prints them.",
        anchor="study",
    )
    for study in found.studies:
        if study.rows:
            table(studies, f"study:{study.path.name}", study_table(study))
    return [quality, frontier, latency, studies]
