"""Build the report: read the inputs, compute what to plot, draw the figures, copy the crops,
write the page (and, when asked, the quality history for github-action-benchmark)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgcomp.errors import ImgcompError
from imgcomp.fsutil import atomic_write_text
from imgcomp.report.crops import Gallery, copy_tiles, visual_comparisons
from imgcomp.report.data import codec_names, frontier_points, latency_history, rd_points
from imgcomp.report.figures import Figure, frontier_figures, latency_figures, rd_figures, save
from imgcomp.report.history import newest_run, write_history
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
    """A written report: its page, every figure (with the data it plots), table and gallery of
    crops, the files read (with their kind) and skipped (with why), the warnings given and the
    github-action-benchmark files written (``history``: bigger-, then smaller-is-better)."""

    out_dir: Path
    index: Path
    files: list[tuple[Path, str]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    galleries: dict[str, Gallery] = field(default_factory=dict)
    runs: list[BenchmarkRun] = field(default_factory=list)
    history: tuple[Path, Path] | None = None


def build_report(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    benchmark_action: Path | None = None,
    progress: bool = False,
) -> Report:
    """Read ``inputs`` (files and folders, any mix of kinds: see :mod:`imgcomp.report.load`)
    and write ``out_dir/index.html`` with its figures under ``out_dir/figures`` and its crops
    under ``out_dir/crops``; with ``benchmark_action``, the newest quality run's metrics there
    too (:mod:`imgcomp.report.history`). ``progress``: a bar while the figures are drawn. Inputs
    of no known kind are skipped with a :class:`ReportWarning`; ImgcompError when a path is
    missing, no input could be read, or ``benchmark_action`` has no quality run to write."""
    out_dir = Path(out_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = load_inputs([Path(p) for p in inputs])
        names = codec_names(found)
        rd = rd_points(found, names)
        ops = frontier_points(found, names)
        history = latency_history(found)
        galleries = visual_comparisons(found, names)
    for w in caught:  # given again, outside: the caller's filters decide
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not found.files:
        what = ", ".join(str(p) for p in inputs) or "no path"
        raise ImgcompError(
            f"no report input in {what}: no JSON file of a kind the report reads (pytest-benchmark "
            "saves, pytest bench --quality-json files, imgcomp eval / study --json files)"
        )
    newest = newest_run(found) if benchmark_action is not None else None  # before any writing
    report = Report(
        out_dir=out_dir,
        index=out_dir / "index.html",
        files=found.files,
        skipped=found.skipped,
        warnings=[str(w.message) for w in caught if issubclass(w.category, ReportWarning)],
        runs=history.runs,
    )
    sections = _sections(report, found, rd, ops, history, galleries)
    save(list(report.figures.values()), out_dir / FIGURES_DIR, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_tiles(list(report.galleries.values()), out_dir)
    page = render_page(
        sections,
        out_dir,
        inputs=found.files,
        skipped=found.skipped,
        warnings=report.warnings,
    )
    atomic_write_text(report.index, page)
    if newest is not None and benchmark_action is not None:
        report.history = write_history(newest, Path(benchmark_action))
    return report


def _sections(report: Report, found, rd, ops, history, galleries) -> list[Section]:
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
    if not galleries:  # no crops in the inputs: no section (and no link to one)
        return [quality, frontier, latency, studies]
    visual = Section(
        "Visual comparison",
        "The same crop of one image, decoded from each case's real bitstream by the suite's "
        "quality pass (its first image, the crop of most detail), next to the original; shown "
        "at twice its size. Under each: the case, and its bpp, SSIM and PSNR on that image.",
        anchor="visual",
    )
    for gallery in galleries:
        report.galleries[gallery.name] = gallery
        visual.add(gallery)
    return [quality, visual, frontier, latency, studies]
