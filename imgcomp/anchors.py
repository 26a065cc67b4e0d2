"""Classic-codec anchors: a codec's rate-distortion curve over its quality settings, and its
quality at any bpp inside that curve, so a learned model is compared at *equal* rate.

    curve = anchor_curve("webp", images)                  # one point per quality setting
    at_bpp(curve, 0.317, "psnr")                          # WebP's PSNR at 0.317 bpp
    rows = compare(learned_points, {"webp": curve, "jpeg": jpeg_curve})

Interpolation is linear in bpp between the two neighbouring settings (mean over the same
images at each setting); a bpp outside the curve is refused rather than extrapolated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from imgcomp.errors import ImgcompError
from imgcomp.evaluate import evaluate, summarize
from imgcomp.registry import create_codec

__all__ = [
    "ANCHOR_QUALITIES",
    "METRICS",
    "anchor_curve",
    "at_bpp",
    "compare",
    "format_comparison",
]

#: Quality settings whose curves span the shipped learned models' rates on Kodak (JPEG 0.22 to
#: 1.24 bpp, WebP 0.17 to 1.22, AVIF 0.11 to 1.25).
ANCHOR_QUALITIES: dict[str, tuple[int, ...]] = {
    "jpeg": (5, 10, 15, 20, 25, 30, 40, 50, 60, 70),
    "webp": (1, 5, 10, 20, 30, 40, 50, 60, 70, 80),
    "avif": (10, 20, 30, 40, 50, 60, 70),
}
#: How tables name the anchors.
DISPLAY_NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jpeg2000": "JPEG 2000"}
#: The quality metrics compared at equal bpp (higher is better for each).
METRICS = ("psnr", "ssim", "ms_ssim")


def anchor_curve(
    name: str,
    images: Sequence[tuple[str, np.ndarray]],
    qualities: Iterable[int] | None = None,
) -> list[dict[str, float]]:
    """Mean bpp and quality of ``name`` at each quality setting over ``images``, by rising bpp.

    Every point comes from real streams (:func:`imgcomp.evaluate.evaluate`).
    """
    settings = tuple(ANCHOR_QUALITIES[name] if qualities is None else qualities)
    if not settings:
        raise ImgcompError(f"{name}: no quality settings for its anchor curve")
    if not images:
        raise ImgcompError(f"{name}: no images for its anchor curve")
    points = []
    for q in settings:
        mean = summarize(evaluate(create_codec(name, quality=q), images))
        points.append({"quality": float(q), "bpp": mean["bpp"], **{m: mean[m] for m in METRICS}})
    return sorted(points, key=lambda p: p["bpp"])


def at_bpp(curve: Sequence[Mapping[str, float]], bpp: float, metric: str) -> float:
    """``metric`` of the curve at ``bpp``, linear between neighbours; outside: ImgcompError."""
    xs = np.array([p["bpp"] for p in curve], dtype=np.float64)
    if len(xs) < 2 or np.any(np.diff(xs) <= 0):
        raise ImgcompError("an anchor curve needs at least two points of strictly rising bpp")
    if not xs[0] <= bpp <= xs[-1]:
        raise ImgcompError(
            f"{bpp:.4f} bpp is outside the anchor curve ({xs[0]:.4f}..{xs[-1]:.4f} bpp); "
            "add quality settings rather than extrapolate"
        )
    return float(np.interp(bpp, xs, [p[metric] for p in curve]))


def compare(
    points: Mapping[str, Mapping[str, float]],
    anchors: Mapping[str, Sequence[Mapping[str, float]]],
) -> list[dict[str, object]]:
    """One row per learned point: its bpp and metrics, each anchor's metrics at that bpp and
    the margins (learned minus anchor; positive means the learned model is better)."""
    rows: list[dict[str, object]] = []
    for label, point in points.items():
        row: dict[str, object] = {"model": label, "bpp": point["bpp"]}
        row.update({m: point[m] for m in METRICS})
        for anchor, curve in anchors.items():
            for m in METRICS:
                value = at_bpp(curve, point["bpp"], m)
                row[f"{anchor}_{m}"] = value
                row[f"{anchor}_{m}_margin"] = point[m] - value
        rows.append(row)
    return rows


def format_comparison(rows: Sequence[Mapping[str, object]], anchors: Sequence[str]) -> str:
    """A Markdown table: model, bpp, PSNR / SSIM / MS-SSIM, then each anchor's at that bpp."""
    head = ["model", "bpp", "PSNR", "SSIM", "MS-SSIM"]
    head += [f"{DISPLAY_NAMES.get(a, a)} PSNR / SSIM / MS-SSIM" for a in anchors]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["model"]), f"{r['bpp']:.4f}", f"{r['psnr']:.2f}", f"{r['ssim']:.4f}"]
        cells.append(f"{r['ms_ssim']:.4f}")
        for a in anchors:
            cells.append(f"{r[f'{a}_psnr']:.2f} / {r[f'{a}_ssim']:.4f} / {r[f'{a}_ms_ssim']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
