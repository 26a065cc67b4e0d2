"""The report's figures: matplotlib on the Agg canvas (no pyplot, no display), each saved as
SVG (text kept as text) and PNG.

Every :class:`Figure` keeps the data it plots (``series``: per series name, its points) beside
its files; in the SVG the markers of series ``name`` lie in the group ``gids[name]``, one
``<use>`` per point, so what was drawn can be checked against the data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgcomp.progress import bar as progress_bar
from imgcomp.report.cases import short_ops
from imgcomp.report.data import RD_METRICS, LatencyHistory, OpPoint, RDSeries, pareto, short_names

__all__ = ["Figure", "frontier_figures", "latency_figures", "rd_figures", "save"]

#: SVG without a date or random ids (identical inputs, identical files), text as <text>.
_RC = {"svg.fonttype": "none", "svg.hashsalt": "imgcomp-report", "font.size": 9}
_MARKERS = "osD^v<>pPX*h"


@dataclass
class Figure:
    """One figure: what it plots and where its files are.

    ``series``: name -> points (RD: (bpp, metric); frontier: (SSIM drop, speed-up, size in
    bytes or non-zero parameters, the last two drawn in MB / millions); latency: (run index,
    median s, q1 s, q3 s), drawn in ms). ``labels``: name -> one label per point (the setting,
    op configuration or run). ``xticks``: the latency figures' run labels. ``reference``: the
    unmodified model's point (frontier figures). ``dotted``: series drawn dotted (with ops).
    """

    name: str
    kind: str
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, list[tuple[float, ...]]]
    labels: dict[str, list[str]] = field(default_factory=dict)
    xticks: list[str] = field(default_factory=list)
    reference: tuple[float, float] | None = None
    dotted: set[str] = field(default_factory=set)
    svg: Path | None = None
    png: Path | None = None
    gids: dict[str, str] = field(default_factory=dict)


def rd_figures(series: dict[str, RDSeries]) -> list[Figure]:
    """bpp against PSNR, SSIM and MS-SSIM (``rd_psnr``, ``rd_ssim``, ``rd_ms_ssim``), one line
    per codec without ops; then per codec measured with ops, bpp against SSIM of the codec and
    each op configuration (``rd_ops:<codec>``, dotted). Points without a finite value of the
    metric are left out."""
    plain = {name: s for name, s in series.items() if s.ops is None}
    figures = [
        _rd_figure(
            f"rd_{metric}", f"Rate-distortion: {title} against bits per pixel", plain, metric
        )
        for metric, title in RD_METRICS.items()
    ]
    for codec in dict.fromkeys(s.codec for s in series.values() if s.ops is not None):
        chosen = {name: s for name, s in series.items() if s.codec == codec}
        title = f"Rate-distortion of {codec} with compression ops: SSIM against bits per pixel"
        figures.append(_rd_figure(f"rd_ops:{codec}", title, chosen, "ssim"))
    return [f for f in figures if f.series]


def _rd_figure(name: str, title: str, series: dict[str, RDSeries], metric: str) -> Figure:
    data, labels, dotted = {}, {}, set()
    for label, line in series.items():
        kept = [p for p in line.points if math.isfinite(getattr(p, metric))]
        if kept:
            data[label] = [(p.bpp, getattr(p, metric)) for p in kept]
            labels[label] = [p.setting for p in kept]
            if line.ops is not None:
                dotted.add(label)
    return Figure(
        name=name,
        kind="rd",
        title=title,
        xlabel="bits per pixel",
        ylabel=RD_METRICS[metric],
        series=data,
        labels=labels,
        dotted=dotted,
    )


#: The frontier figures: kind, the value of a point, of its base, the y axis title.
_FRONTIERS = (
    ("speed", lambda p: p.speedup, lambda p: 1.0, "decode speed-up vs the unmodified model (x)"),
    ("size", lambda p: p.size_bytes, lambda p: p.base_size_bytes, "model size (serialized MB)"),
    ("nonzero", lambda p: p.nonzero, lambda p: p.base_nonzero, "non-zero parameters (millions)"),
)


def frontier_figures(base: str, sources: dict[str, list[OpPoint]]) -> list[Figure]:
    """The ops of learned base ``base`` against the SSIM they cost: decode speed-up
    (``frontier_speed:<base>``), serialized model size (``frontier_size:<base>``, what
    quantization shrinks) and non-zero parameters (``frontier_nonzero:<base>``, what pruning
    removes); a figure only where some point has its value."""
    out = []
    for what, value, base_value, ylabel in _FRONTIERS:
        data, labels = {}, {}
        for source, points in sources.items():
            kept = [p for p in points if value(p) is not None]
            if kept:
                data[source] = [(p.ssim_drop, float(value(p))) for p in kept]
                labels[source] = [p.ops for p in kept]
        if not data:
            continue
        refs = [base_value(p) for ps in sources.values() for p in ps if base_value(p) is not None]
        shown = {"speed": "decode speed-up", "size": "model size", "nonzero": "non-zero parameters"}
        out.append(
            Figure(
                name=f"frontier_{what}:{base}",
                kind=f"frontier_{what}",
                title=f"{base}: ops' {shown[what]} against SSIM drop",
                xlabel="SSIM drop (unmodified SSIM - SSIM)",
                ylabel=ylabel,
                series=data,
                labels=labels,
                reference=(0.0, float(refs[0])) if refs else None,
            )
        )
    return out


def latency_figures(history: LatencyHistory) -> list[Figure]:
    """Per benchmark group (``latency:<group>``): each benchmark's median with its
    interquartile range, per saved run in date order (x: the runs, labelled by commit)."""
    ticks = [run.label for run in history.runs]
    out = []
    for group, fullnames in history.groups.items():
        data, labels = {}, {}
        for fullname in fullnames:
            entries = history.entries[fullname]
            name = short_names(entries)
            if name in data:  # two files' tests of one name: tell them apart by full name
                name = fullname
            data[name] = [(float(i), e.median, e.q1, e.q3) for i, e in sorted(entries.items())]
            labels[name] = [ticks[i] for i in sorted(entries)]
        out.append(
            Figure(
                name=f"latency:{group}",
                kind="latency",
                title=f"Latency history: {group} (median, bars: interquartile range)",
                xlabel="saved run (commit, UTC date)",
                ylabel="time per round (ms)",
                series=data,
                labels=labels,
                xticks=ticks,
            )
        )
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.replace(":", "-")).strip("-") or "figure"


def save(figures: Sequence[Figure], folder: Path, progress: bool = False) -> None:
    """Draw each figure into ``folder`` as ``<slug>.svg`` and ``<slug>.png`` (file names unique
    across ``figures``); sets their ``svg``, ``png`` and ``gids``. ``progress``: a bar on
    stderr where :func:`imgcomp.progress.enabled` allows one."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    with (
        matplotlib.rc_context(_RC),
        progress_bar(figures, quiet=not progress, desc="figures", unit="fig") as bar,
    ):
        for figure in bar:
            stem, n = _slug(figure.name), 2
            while stem.lower() in used:
                stem, n = f"{_slug(figure.name)}-{n}", n + 1
            used.add(stem.lower())
            figure.svg, figure.png = folder / f"{stem}.svg", folder / f"{stem}.png"
            _draw(figure)


def _draw(figure: Figure) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    many = len(figure.series) > 8
    width = 7.5 + (3.0 if many else 0.0) + (0.25 * max(0, len(figure.xticks) - 8))
    fig = MplFigure(figsize=(width, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    figure.gids = {name: f"series-{i}" for i, name in enumerate(figure.series)}
    for i, (name, points) in enumerate(figure.series.items()):
        marker = _MARKERS[i % len(_MARKERS)]
        gid = figure.gids[name]
        if figure.kind == "rd":
            ops = name in figure.dotted
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker=marker,
                linestyle=":" if ops else "-",
                linewidth=0.8 if ops else 1.4,
                markersize=4 if ops else 5,
                label=name,
                gid=gid,
            )
        elif figure.kind == "latency":
            xs = [p[0] for p in points]
            ms = [1e3 * p[1] for p in points]
            (line,) = ax.plot(xs, ms, marker=marker, label=name, gid=gid)
            ax.vlines(
                xs,
                [1e3 * p[2] for p in points],
                [1e3 * p[3] for p in points],
                colors=line.get_color(),
                linewidth=3,
                alpha=0.35,
                gid=f"{gid}-iqr",
            )
        else:
            _draw_frontier(ax, figure, name, points, marker, gid)
    if figure.reference is not None:
        x, y = figure.reference
        ax.plot(
            x,
            y * _y_scale(figure),
            marker="*",
            markersize=11,
            color="black",
            linestyle="none",
            label="unmodified model",
            gid="reference",
        )
    if figure.kind == "latency":
        ax.set_xticks(range(len(figure.xticks)), figure.xticks, rotation=30, ha="right")
        ax.set_xlim(-0.5, len(figure.xticks) - 0.5)
        ax.set_ylim(bottom=0)
    ax.set_title(figure.title)
    ax.set_xlabel(figure.xlabel)
    ax.set_ylabel(figure.ylabel)
    ax.grid(True, alpha=0.3)
    if many:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure.svg, format="svg", metadata={"Date": None})
    fig.savefig(figure.png, format="png", dpi=100)


def _y_scale(figure: Figure) -> float:
    """Drawn y per data y: sizes are kept in bytes and parameters, drawn in MB and millions."""
    return 1e-6 if figure.kind in ("frontier_size", "frontier_nonzero") else 1.0


def _draw_frontier(ax, figure: Figure, name: str, points, marker: str, gid: str) -> None:
    """Points of one source, each labelled by its op configuration, and the source's Pareto
    frontier (least SSIM drop for the speed-up / size) as a dashed step line."""
    xs, ys = [p[0] for p in points], [p[1] * _y_scale(figure) for p in points]
    (line,) = ax.plot(xs, ys, marker=marker, linestyle="none", label=name, gid=gid)
    for x, y, ops in zip(xs, ys, figure.labels.get(name, ()), strict=False):
        ax.annotate(short_ops(ops), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6)
    best = pareto(list(zip(xs, ys, strict=True)), higher_is_better=figure.kind == "frontier_speed")
    if len(best) > 1:
        ax.plot(
            [xs[i] for i in best],
            [ys[i] for i in best],
            linestyle="--",
            linewidth=0.8,
            color=line.get_color(),
            drawstyle="steps-post",
            gid=f"pareto-{gid}",
        )
