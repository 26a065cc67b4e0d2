"""Classic image codecs through Pillow: JPEG, WebP, JPEG 2000 and AVIF.

Each runs either at a fixed quality setting or at a target bit rate (``bpp=``), in which case
the quality knob is searched per image for the highest quality whose whole stream (container
included) stays within the target. When even the lowest setting overshoots, the lowest setting
is used and the overshoot shows in the reported bpp.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image

from imgcomp.bitstream import StreamHeader, pack
from imgcomp.codecs.base import ContainerCodec
from imgcomp.errors import BitstreamError, ImgcompError
from imgcomp.registry import register_codec

#: What a classic stream may set when ``decode_stream`` rebuilds its codec.
_STREAM_PARAMS = ("quality", "bpp")


class PillowCodec(ContainerCodec):
    """A Pillow image format wrapped as an imgcomp codec (one payload section: the file bytes)."""

    pil_format: str = ""
    quality_range: tuple[int, int] = (1, 100)
    default_quality: int = 75

    def __init__(self, quality: int | None = None, bpp: float | None = None) -> None:
        if quality is not None and bpp is not None:
            raise ImgcompError(f"{self.name}: give quality or bpp, not both")
        if bpp is not None:
            if not (isinstance(bpp, int | float) and math.isfinite(bpp) and bpp > 0):
                raise ImgcompError(f"{self.name}: bpp must be a positive number, got {bpp!r}")
            bpp = float(bpp)
        else:
            quality = self.default_quality if quality is None else quality
            lo, hi = self.quality_range
            if isinstance(quality, bool) or not isinstance(quality, int) or not lo <= quality <= hi:
                raise ImgcompError(f"{self.name}: quality must be an integer in {lo}..{hi}")
        super().__init__(quality=quality, bpp=bpp)
        self.quality, self.bpp = quality, bpp

    def save_options(self, quality: int) -> dict:
        """Pillow ``save`` keyword arguments for one quality setting."""
        return {"quality": quality}

    def compress(self, image: Image.Image, quality: int) -> bytes:
        """Encode with Pillow at one quality setting."""
        buf = io.BytesIO()
        image.save(buf, self.pil_format, **self.save_options(quality))
        return buf.getvalue()

    def encode_sections(self, img: np.ndarray) -> list[bytes]:
        image = Image.fromarray(img, "RGB")
        if self.bpp is None:
            return [self.compress(image, self.quality)]
        return [self.search_rate(image)]

    def payload_budget(self, image: Image.Image) -> float:
        """Payload bytes allowed by the bpp target, after the container's own bytes."""
        header = StreamHeader(self.name, self.fingerprint, image.height, image.width, self.params)
        overhead = len(pack(header, [b"\x00" * 1024])) - 1024
        return self.bpp * image.width * image.height / 8 - overhead

    def search_rate(self, image: Image.Image) -> bytes:
        """Highest quality whose payload fits the target (bisection: size grows with quality)."""
        budget = self.payload_budget(image)
        lo, hi = self.quality_range
        best = self.compress(image, lo)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            data = self.compress(image, mid)
            if len(data) <= budget:
                lo, best = mid, data
            else:
                hi = mid - 1
        return best

    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        if len(sections) != 1:
            raise BitstreamError(f"{self.name} stream must have 1 section, has {len(sections)}")
        return _pillow_decode(sections[0], self.pil_format, header)


def _pillow_decode(payload: bytes, pil_format: str, header: StreamHeader) -> np.ndarray:
    """Decode untrusted bytes with Pillow; every failure becomes a BitstreamError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload), formats=[pil_format]) as image:
                if image.size != (header.width, header.height):
                    raise BitstreamError(
                        f"payload image is {image.width}x{image.height}, "
                        f"header says {header.width}x{header.height}"
                    )
                if image.mode != "RGB":
                    raise BitstreamError(f"payload image mode is {image.mode}, expected RGB")
                image.load()
                return np.asarray(image, dtype=np.uint8).copy()
    except BitstreamError:
        raise
    except Exception as exc:  # Pillow's decoders raise many types on hostile input
        raise BitstreamError(f"{pil_format} payload could not be decoded: {exc}") from exc


@register_codec("jpeg", "jpg", stream_params=_STREAM_PARAMS)
class JpegCodec(PillowCodec):
    """Baseline JPEG (libjpeg via Pillow), 4:2:0 chroma subsampling, Pillow's default tables."""

    name = "jpeg"
    pil_format = "JPEG"
    quality_range = (1, 100)


@register_codec("webp", stream_params=_STREAM_PARAMS)
class WebpCodec(PillowCodec):
    """Lossy WebP (libwebp via Pillow, method 4: libwebp's default speed/size trade-off)."""

    name = "webp"
    pil_format = "WEBP"
    quality_range = (0, 100)

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "method": 4, "lossless": False, "exact": False}


@register_codec("avif", stream_params=_STREAM_PARAMS)
class AvifCodec(PillowCodec):
    """AVIF (libavif via Pillow), 4:2:0, encoder speed 6, single-threaded for determinism."""

    name = "avif"
    pil_format = "AVIF"
    quality_range = (0, 100)
    default_quality = 60

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "speed": 6, "subsampling": "4:2:0", "max_threads": 1}


@register_codec("jpeg2000", "j2k", "jp2", stream_params=_STREAM_PARAMS)
class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (OpenJPEG via Pillow), irreversible 9/7 wavelet, one quality layer.

    ``quality`` is the target PSNR in dB of OpenJPEG's rate control (higher is better); at a
    target ``bpp`` OpenJPEG's own rate allocation is driven by a compression ratio and
    tightened until the stream fits.
    """

    name = "jpeg2000"
    pil_format = "JPEG2000"
    quality_range = (10, 80)
    default_quality = 35

    def save_options(self, quality: int) -> dict:
        return {"quality_mode": "dB", "quality_layers": [quality], "irreversible": True}

    def compress_ratio(self, image: Image.Image, ratio: float) -> bytes:
        buf = io.BytesIO()
        image.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[ratio], irreversible=True)
        return buf.getvalue()

    def search_rate(self, image: Image.Image) -> bytes:
        budget = self.payload_budget(image)
        raw = image.width * image.height * 3
        target = max(budget, 64.0)
        for _ in range(8):
            data = self.compress_ratio(image, raw / target)
            if len(data) <= budget:
                return data
            target *= budget / len(data) * 0.995
            if target < 64:
                break
        return data
