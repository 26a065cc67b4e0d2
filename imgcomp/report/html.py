"""The report's page: one HTML file, its style inline, its figures and crops referenced by
relative path (SVG shown, PNG linked; crops shown at twice their size, pixels kept sharp); no
script, no external URL."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from imgcomp.report.crops import Gallery, Tile
from imgcomp.report.figures import Figure
from imgcomp.report.tables import Table

__all__ = ["Section", "render_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } p.note { font-size: 0.85em; color: #555; }
.empty { color: #777; font-style: italic; } .warn { color: #a40; }
.tiles { display: flex; flex-wrap: wrap; gap: 0.8em; margin-top: 0.4em; }
figure.tile { margin: 0; } figure.tile img { image-rendering: pixelated; border: 0; }
figure.tile figcaption { font-size: 0.75em; overflow-wrap: anywhere; }
"""


class Section:
    """A titled part of the page: an intro line, then figures and tables in order."""

    def __init__(self, title: str, intro: str = "", anchor: str = "") -> None:
        self.title, self.intro = title, intro
        self.anchor = anchor or "".join(c if c.isalnum() else "-" for c in title.lower())
        self.parts: list[Figure | Table | Gallery | str] = []

    def add(self, part: Figure | Table | Gallery | str) -> Section:
        """Append a figure, a table, a gallery of crops or a subheading (a string)."""
        self.parts.append(part)
        return self


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _figure(figure: Figure, start: Path) -> str:
    assert figure.svg is not None and figure.png is not None, "save() the figures first"
    svg, png = escape(_rel(figure.svg, start)), escape(_rel(figure.png, start))
    return (
        f'<figure id="{escape(figure.svg.stem)}"><img src="{svg}" alt="{escape(figure.title)}">'
        f'<figcaption>{escape(figure.title)} (<a href="{svg}">SVG</a>, '
        f'<a href="{png}">PNG</a>)</figcaption></figure>'
    )


def _tile(tile: Tile, start: Path) -> str:
    assert tile.file is not None, "copy_tiles() the galleries first"
    src = escape(_rel(tile.file, start))
    if tile.case is None:
        lines = [f"<b>{escape(tile.label)}</b>", escape(tile.note)]
    else:
        values = [
            f"{tile.bpp:.3f} bpp" if tile.bpp is not None else "bpp -",
            f"SSIM {tile.ssim:.4f}" if tile.ssim is not None else "SSIM -",
            f"{tile.psnr:.2f} dB" if tile.psnr is not None else "PSNR -",
        ]
        lines = [f"<b>{escape(tile.label)}</b>", escape(", ".join(values))]
    return (
        f'<figure class="tile" style="width: {2 * tile.width}px"><img src="{src}" '
        f'width="{2 * tile.width}" height="{2 * tile.height}" alt="{escape(tile.label)}">'
        f"<figcaption>{'<br>'.join(lines)}</figcaption></figure>"
    )


def _gallery(gallery: Gallery, start: Path) -> str:
    anchor = "".join(c if c.isalnum() or c in "-_" else "-" for c in gallery.name)
    tiles = "".join(_tile(t, start) for t in gallery.tiles)
    return (
        f'<figure class="gallery" id="{escape(anchor)}"><figcaption>{escape(gallery.title)}'
        f'</figcaption><div class="tiles">{tiles}</div></figure>'
    )


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{escape(c)}</td>' if i in table.numeric else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (
        f"<table><caption>{escape(table.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{note}"
    )


def render_page(
    sections: Sequence[Section],
    out_dir: Path,
    title: str = "imgcomp report",
    inputs: Sequence[tuple[Path, str]] = (),
    skipped: Sequence[tuple[Path, str]] = (),
    warnings: Sequence[str] = (),
) -> str:
    """The page: title, what was read (and skipped), a contents list, then each section (a
    section with nothing in it says so)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">Generated {now} by <code>imgcomp report</code> from '
        f"{len(inputs)} file(s).</p>",
    ]
    if warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        out.append(f'<ul class="warn">{items}</ul>')
    contents = "".join(
        f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>' for s in sections
    )
    out.append(f"<nav><ul>{contents}</ul></nav>")
    for section in sections:
        out.append(f'<section id="{escape(section.anchor)}"><h2>{escape(section.title)}</h2>')
        if section.intro:
            out.append(f"<p>{escape(section.intro)}</p>")
        if not section.parts:
            out.append('<p class="empty">Nothing in the inputs for this section.</p>')
        for part in section.parts:
            if isinstance(part, Figure):
                out.append(_figure(part, out_dir))
            elif isinstance(part, Table):
                out.append(_table(part))
            elif isinstance(part, Gallery):
                out.append(_gallery(part, out_dir))
            else:
                out.append(f"<h3>{escape(part)}</h3>")
        out.append("</section>")
    read = Table("Files read", ["file", "kind"], [[str(p), k] for p, k in inputs])
    out.append('<section id="inputs"><h2>Inputs</h2>' + _table(read))
    if skipped:
        out.append(
            _table(Table("Files skipped", ["file", "why"], [[str(p), w] for p, w in skipped]))
        )
    out.append("</section></body></html>")
    return "\n".join(out) + "\n"
