"""Run a codec over images through real bytes and collect rate, quality and time per image."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from imgcomp import metrics
from imgcomp.codecs.base import Codec
from imgcomp.errors import ImgcompError
from imgcomp.progress import bar as progress_bar

#: ``on_decoded(name, original, decoded)``: sees each image's decoded pixels (the suite keeps a
#: crop of them for the report's visual comparison).
OnDecoded = Callable[[str, np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class ImageResult:
    """Measurements of one image through one codec; bytes and bpp count the whole stream."""

    image: str
    height: int
    width: int
    bytes: int
    bpp: float
    psnr: float
    ssim: float
    ms_ssim: float
    encode_s: float
    decode_s: float

    def as_dict(self) -> dict:
        return asdict(self)


METRIC_FIELDS = ("bpp", "bytes", "psnr", "ssim", "ms_ssim", "encode_s", "decode_s")


class RoundTripError(ImgcompError, AssertionError):
    """A codec is not reproducible: bytes or pixels differ between identical calls."""


def evaluate_image(
    codec: Codec,
    name: str,
    img: np.ndarray,
    verify: bool = False,
    on_decoded: OnDecoded | None = None,
) -> ImageResult:
    """Encode ``img`` to bytes, decode those bytes, and measure the reconstruction.

    With ``verify``, also check that re-encoding gives identical bytes, that decoding the same
    bytes twice gives identical pixels and, for codecs exposing ``reconstruct(img)`` (learned
    codecs: the model's own quantized reconstruction), that the decoded pixels equal it.
    ``on_decoded(name, img, decoded)`` is called with the decoded pixels (outside the timing).
    """
    t0 = time.perf_counter()
    data = codec.encode(img)
    t1 = time.perf_counter()
    rec = codec.decode(data)
    t2 = time.perf_counter()
    if verify:
        _verify_round_trip(codec, name, img, data, rec)
    if on_decoded is not None:
        on_decoded(name, img, rec)
    h, w = img.shape[:2]
    quality = metrics.evaluate_pair(img, rec)
    return ImageResult(
        image=name,
        height=h,
        width=w,
        bytes=len(data),
        bpp=metrics.bpp(len(data), h, w),
        psnr=quality["psnr"],
        ssim=quality["ssim"],
        ms_ssim=quality["ms_ssim"],
        encode_s=t1 - t0,
        decode_s=t2 - t1,
    )


def _verify_round_trip(
    codec: Codec, name: str, img: np.ndarray, data: bytes, rec: np.ndarray
) -> None:
    if codec.encode(img) != data:
        raise RoundTripError(f"{name}: encoding the same image twice gave different bytes")
    if not np.array_equal(codec.decode(data), rec):
        raise RoundTripError(f"{name}: decoding the same bytes twice gave different pixels")
    reconstruct = getattr(codec, "reconstruct", None)
    if reconstruct is not None and not np.array_equal(reconstruct(img), rec):
        raise RoundTripError(f"{name}: decoded pixels differ from the model's reconstruction")


def evaluate(
    codec: Codec,
    images: Iterable[tuple[str, np.ndarray]],
    progress: bool = False,
    verify: bool = False,
    on_decoded: OnDecoded | None = None,
) -> list[ImageResult]:
    """Evaluate ``codec`` on (name, image) pairs, in order (see :func:`evaluate_image`);
    ``progress``: a bar on stderr where :func:`imgcomp.progress.enabled` allows one."""
    if not progress:
        return [evaluate_image(codec, name, img, verify, on_decoded) for name, img in images]
    items = list(images)
    with progress_bar(items, desc=getattr(codec, "name", "codec"), unit="img") as bar:
        return [evaluate_image(codec, name, img, verify, on_decoded) for name, img in bar]


def summarize(results: Sequence[ImageResult]) -> dict[str, float]:
    """Mean of every metric over images (bpp and bytes are means of per-image values).

    PSNR is averaged over images in dB, as Kodak results are usually reported; an infinite
    PSNR (lossless image) makes the mean infinite.
    """
    if not results:
        raise ValueError("no results to summarize")
    return {f: float(np.mean([getattr(r, f) for r in results])) for f in METRIC_FIELDS}


def format_table(results: Sequence[ImageResult], title: str = "") -> str:
    """Plain-text table of per-image results and their mean, for terminals and logs."""
    head = f"{'image':<12}{'bpp':>8}{'bytes':>9}{'PSNR':>8}{'SSIM':>8}{'MS-SSIM':>9}"
    head += f"{'enc ms':>9}{'dec ms':>9}"
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]

    def row(label: str, r: dict) -> str:
        return (
            f"{label:<12}{r['bpp']:>8.4f}{r['bytes']:>9.0f}{_db(r['psnr']):>8}"
            f"{r['ssim']:>8.4f}{r['ms_ssim']:>9.4f}"
            f"{r['encode_s'] * 1e3:>9.1f}{r['decode_s'] * 1e3:>9.1f}"
        )

    lines += [row(r.image, r.as_dict()) for r in results]
    lines += ["-" * len(head), row("mean", summarize(results))]
    return "\n".join(lines)


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"
