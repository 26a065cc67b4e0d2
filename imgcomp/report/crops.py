"""The report's visual comparison: one crop of an image under each codec and op configuration
at about equal rate, next to the original.

The crops are the suite's (``pytest bench`` saves each case's crop of its first image beside
the quality results: the decoded pixels, never a re-encode; see ``bench/quality_json.py``). A
crop's per-image entry names its PNGs relative to the file's folder; they are looked up beside
every quality file read (so shards merged from several folders find theirs). Per image and crop
box: one gallery of every codec without ops, and per codec measured with ops one of its ops;
each line (codec, or codec with one op configuration) shows the setting whose bpp on that
image is nearest :data:`TARGET_BPP`.
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from imgcomp.report.cases import CodecNames
from imgcomp.report.load import Inputs, QualityCase, ReportWarning

__all__ = ["CROPS_DIR", "TARGET_BPP", "Gallery", "Tile", "copy_tiles", "visual_comparisons"]

#: The rate the galleries pick each line's setting at: the study's operating point.
TARGET_BPP = 0.30
#: The crops' folder under the report's folder.
CROPS_DIR = "crops"


@dataclass
class Tile:
    """One crop shown: the original (``case`` None) or a case's decoded pixels with that
    image's bpp, PSNR and SSIM; ``source``: the PNG read, ``file``: its copy in the report."""

    label: str
    source: Path
    height: int
    width: int
    case: str | None = None
    bpp: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    note: str = ""
    file: Path | None = None


@dataclass
class Gallery:
    """A row of tiles of one image's crop, the original first."""

    name: str
    title: str
    image: str
    tiles: list[Tile] = field(default_factory=list)


@dataclass(frozen=True)
class _Crop:
    case: QualityCase
    dataset: str | None
    image: Mapping[str, Any]
    box: tuple[int, int, int, int]
    original: Path
    decoded: Path


def _relative(value: Any) -> PurePosixPath | None:
    """A crop path as the file names it: relative, inside its folder, a PNG; else None."""
    if not isinstance(value, str):
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or path.suffix.lower() != ".png":
        return None
    return path


def _find(rel: PurePosixPath, folders: list[Path]) -> Path | None:
    return next((f / rel for f in folders if (f / rel).is_file()), None)


def _crops(inputs: Inputs) -> dict[tuple[str | None, str], _Crop]:
    """The latest crop of each case per dataset, its files found."""
    folders = list(dict.fromkeys(p.parent for p, kind in inputs.files if kind == "quality"))
    found: dict[tuple[str | None, str], _Crop] = {}
    for run in inputs.quality:  # by date: a later run's crop replaces an earlier one's
        here = [run.path.parent, *(f for f in folders if f != run.path.parent)]
        for case_id, case in run.cases.items():
            for entry in case.per_image:
                crop = entry.get("crop") if isinstance(entry, Mapping) else None
                if not isinstance(crop, Mapping):
                    continue
                rels = [_relative(crop.get(k)) for k in ("original", "decoded")]
                paths = [_find(r, here) if r is not None else None for r in rels]
                box = crop.get("box")
                if None in paths or not (isinstance(box, list) and len(box) == 4):
                    warnings.warn(
                        f"{run.path}: the crop of {case_id} ({entry.get('image')}) is not "
                        f"there: {crop.get('decoded')!r}, {crop.get('original')!r}",
                        ReportWarning,
                        stacklevel=3,
                    )
                    continue
                found[(run.dataset, case_id)] = _Crop(
                    case, run.dataset, entry, tuple(int(v) for v in box), paths[0], paths[1]
                )
    return found


def _number(entry: Mapping[str, Any], key: str) -> float | None:
    value = entry.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _tile(crop: _Crop) -> Tile:
    e = crop.image
    return Tile(
        label=crop.case.case_id,
        source=crop.decoded,
        height=crop.box[2],
        width=crop.box[3],
        case=crop.case.case_id,
        bpp=_number(e, "bpp"),
        psnr=_number(e, "psnr"),
        ssim=_number(e, "ssim"),
    )


def _original(crop: _Crop) -> Tile:
    top, left, h, w = crop.box
    return Tile(
        label="original",
        source=crop.original,
        height=h,
        width=w,
        note=f"{crop.image.get('image')}: {w}x{h} at x {left}, y {top}",
    )


def _nearest(crops: list[_Crop], target: float) -> _Crop:
    """The crop whose image's bpp is nearest ``target`` (the lower rate of equals)."""

    def distance(c: _Crop) -> tuple[float, float]:
        bpp = _number(c.image, "bpp")
        return (math.inf, 0.0) if bpp is None else (abs(bpp - target), bpp)

    return min(crops, key=distance)


def visual_comparisons(
    inputs: Inputs, names: CodecNames, target: float = TARGET_BPP
) -> list[Gallery]:
    """Per dataset, image and crop box: a gallery of the codecs without ops, then one per codec
    measured with ops (the codec and each op configuration); each line's setting nearest
    ``target`` bpp on that image; the original first. Empty without crops."""
    groups: dict[tuple, dict[tuple[str, str | None], list[_Crop]]] = {}
    for crop in _crops(inputs).values():
        key = (crop.dataset, str(crop.image.get("image")), crop.box)
        line = (names.key(crop.case.codec, from_case_id=True), crop.case.ops)
        groups.setdefault(key, {}).setdefault(line, []).append(crop)
    datasets = {key[0] for key in groups}
    out: list[Gallery] = []
    for (dataset, image, box), lines in sorted(groups.items(), key=lambda g: str(g[0])):
        where = f"{image}" + (f" ({dataset or 'unknown dataset'})" if len(datasets) > 1 else "")
        picked = {line: _nearest(crops, target) for line, crops in lines.items()}
        original = _original(next(iter(picked.values())))
        slug = f"{dataset}-{image}-{box[0]}-{box[1]}"
        plain = sorted((names.label(c), p) for (c, ops), p in picked.items() if ops is None)
        if plain:
            out.append(
                Gallery(
                    f"crops:{slug}",
                    f"{where}: each codec at its setting nearest {target:g} bpp",
                    image,
                    [original, *(_tile(p) for _, p in plain)],
                )
            )
        for codec in sorted({c for c, ops in picked if ops is not None}, key=names.label):
            chosen = sorted(
                ((ops or "", p) for (c, ops), p in picked.items() if c == codec),
                key=lambda item: (item[0] != "", item[0]),
            )
            out.append(
                Gallery(
                    f"crops:{names.label(codec)}:{slug}",
                    f"{where}: {names.label(codec)} and its compression ops, each at the setting "
                    f"nearest {target:g} bpp",
                    image,
                    [original, *(_tile(p) for _, p in chosen)],
                )
            )
    return out


def copy_tiles(galleries: list[Gallery], out_dir: Path) -> list[Path]:
    """Copy every tile's PNG under ``out_dir/crops`` (``<its folder's name>/<its name>``, each
    source once) and set the tiles' ``file``; the copies, in order."""
    copies: dict[Path, Path] = {}
    used: set[Path] = set()
    for gallery in galleries:
        for tile in gallery.tiles:
            source = tile.source.resolve()
            if source not in copies:
                dest, n = out_dir / CROPS_DIR / tile.source.parent.name / tile.source.name, 2
                while dest in used:
                    dest, n = dest.with_name(f"{tile.source.stem}-{n}.png"), n + 1
                used.add(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)
                copies[source] = dest
            tile.file = copies[source]
    return list(copies.values())
