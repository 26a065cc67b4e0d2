"""The rate curve of a progressive codec: one encode at the highest iteration count per image,
cut with :func:`imgcomp.truncate` to every lower count, each cut decoded and measured.

    codec = imgcomp.create_codec("toderici2017")
    rows = rate_curve(codec, images, range(1, 17))   # 16 iterations encoded once per image
    print(format_rate_curve(rows))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from imgcomp.errors import ImageError, ImgcompError
from imgcomp.metrics import bpp, ms_ssim, psnr, ssim
from imgcomp.progressive import truncate
from imgcomp.registry import is_progressive

__all__ = ["format_rate_curve", "rate_curve"]


def rate_curve(
    codec: object, images: Sequence[tuple[str, np.ndarray]], iterations: Iterable[int]
) -> list[dict[str, float]]:
    """Per iteration count: mean bytes, bpp, SSIM, PSNR and MS-SSIM over ``images`` (real
    streams: each image encoded once at the largest count, truncated, decoded)."""
    counts = sorted(set(int(k) for k in iterations))
    if not counts or counts[0] < 1:
        raise ImgcompError(f"iteration counts must be positive, got {counts}")
    if not is_progressive(getattr(codec, "name", "")) or not hasattr(codec, "with_iterations"):
        raise ImgcompError(f"{codec!r} is not a progressive codec: it has no rate curve")
    if not images:
        raise ImgcompError("the rate curve needs at least one image")
    full = codec.with_iterations(counts[-1])
    per: dict[int, list[tuple[float, ...]]] = {k: [] for k in counts}
    for _, img in images:
        data = full.encode(img)
        for k in counts:
            cut = truncate(data, iterations=k)
            out = full.decode(cut)
            h, w = img.shape[:2]
            per[k].append(
                (len(cut), bpp(len(cut), h, w), ssim(img, out), psnr(img, out), _ms_ssim(img, out))
            )
    keys = ("bytes", "bpp", "ssim", "psnr", "ms_ssim")
    return [
        {
            "iterations": k,
            "images": len(images),
            **dict(zip(keys, np.mean(per[k], 0).tolist(), strict=True)),
        }
        for k in counts
    ]


def _ms_ssim(img: np.ndarray, out: np.ndarray) -> float:
    """MS-SSIM, NaN for images too small for its five scales."""
    try:
        return ms_ssim(img, out)
    except ImageError:
        return float("nan")


def format_rate_curve(rows: Sequence[dict[str, float]], style: str = "text") -> str:
    """The curve as a table (``text`` or ``markdown``)."""
    head = ["iterations", "bytes", "bpp", "SSIM", "PSNR", "MS-SSIM"]
    body = [
        [
            f"{r['iterations']}",
            f"{r['bytes']:.0f}",
            f"{r['bpp']:.4f}",
            f"{r['ssim']:.4f}",
            f"{r['psnr']:.2f}",
            f"{r['ms_ssim']:.4f}",
        ]
        for r in rows
    ]
    if style == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*b) for b in body)])
