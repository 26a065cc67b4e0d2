"""Load images as uint8 H x W x 3 RGB arrays, the one input form every codec takes.

``load_image`` (files, via Pillow) and ``to_rgb8`` (in-memory arrays) apply the same rules:

- Grayscale (Pillow modes 1, L, I;16*, I, F; arrays H x W or H x W x 1) is replicated to 3 channels.
- 16-bit samples (I;16*, 16-bit PNGs including 48-bit RGB and 64-bit RGBA, uint16 arrays) become
  ``round(v * 255 / 65535)``. Pillow's mode ``I`` (what it gives for 16-bit PNG/PGM) is read in the
  same 0..65535 range; values outside it raise ``ImageError``. Pillow truncates 16-bit colour PNGs
  to their high byte, so those are decoded exactly here; 16-bit-per-channel colour in any other
  format (e.g. TIFF) raises ``ImageError`` rather than being silently truncated.
- Floats (Pillow mode F, float arrays) are read as [0, 1]: clipped, then ``round(v * 255)``;
  NaN and infinities raise ``ImageError``. Rounding is half-up throughout.
- Palette images (P, PA), including their transparency, are expanded by Pillow.
- Alpha (RGBA, LA, PA, a PNG tRNS colour key, 2- or 4-channel arrays) is straight (unassociated)
  alpha composited on a white background, as browsers show it: ``out = v * a + 1 * (1 - a)``.
- Other modes (CMYK, YCbCr, LAB, HSV, ...) use Pillow's ``convert("RGB")``.
- ICC profiles are ignored: sample values are taken as they are stored.
- EXIF orientation is NOT applied: pixels come in stored order, as Kodak-style benchmarks use them.
- Multi-frame files (GIF, APNG, TIFF): the first frame.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from imgcomp.bitstream import MAX_PIXELS  # the largest H * W a codec input (a stream) may have
from imgcomp.errors import ImageError

__all__ = ["MAX_PIXELS", "load_image", "save_png", "to_rgb8", "validate_rgb8"]

_HINT = "use imgcomp.images.to_rgb8 (arrays) or imgcomp.images.load_image (files) to convert"

# Pillow rawmodes of 16-bit colour PNGs -> two rawmodes whose decodes give (high bytes, low bytes).
# The "16L" unpackers take the odd bytes of each sample as the high byte, i.e. the low byte of the
# big-endian PNG sample; both rawmodes have the same bit depth, so unfiltering is unchanged.
_PNG16_SPLIT = {"RGB;16B": ("RGB;16B", "RGB;16L"), "RGBA;16B": ("RGBA;16B", "RGBA;16L")}


def validate_rgb8(img: object) -> np.ndarray:
    """Check a codec input is a uint8 (H, W, 3) array of sane size; return it C-contiguous."""
    if not isinstance(img, np.ndarray):
        raise ImageError(f"expected a numpy.ndarray, got {type(img).__name__}; {_HINT}")
    if img.dtype != np.uint8:
        raise ImageError(f"expected dtype uint8, got {img.dtype}; {_HINT}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"expected shape (H, W, 3), got {img.shape}; {_HINT}")
    h, w = img.shape[:2]
    if h < 1 or w < 1:
        raise ImageError(f"image is empty (shape {img.shape}); height and width must be >= 1")
    if h * w > MAX_PIXELS:
        raise ImageError(f"image too large: {h}x{w} = {h * w} pixels exceeds {MAX_PIXELS}")
    return np.ascontiguousarray(img)


def to_rgb8(arr: np.ndarray) -> np.ndarray:
    """Convert an H x W[x1|2|3|4] uint8/uint16/bool/float array to uint8 H x W x 3 (see module)."""
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"expected a numpy.ndarray, got {type(arr).__name__}")
    a = arr[..., None] if arr.ndim == 2 else arr
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"expected shape (H, W) or (H, W, C) with C in 1..4, got {arr.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"image is empty (shape {arr.shape}); height and width must be >= 1")
    if a.dtype == np.bool_:
        out = _int_to_rgb8(a.astype(np.uint8) * np.uint8(255), 255)
    elif a.dtype == np.uint8:
        out = _int_to_rgb8(a, 255)
    elif a.dtype == np.uint16:
        out = _int_to_rgb8(a, 65535)
    elif np.issubdtype(a.dtype, np.floating):
        out = _float_to_rgb8(a)
    else:
        raise ImageError(
            f"unsupported dtype {arr.dtype}: use uint8, uint16, bool or float in [0, 1] "
            "(e.g. arr.astype(np.uint8) for integers already in 0..255)"
        )
    return np.ascontiguousarray(out)


def _int_to_rgb8(a: np.ndarray, maxval: int) -> np.ndarray:
    """uint8/uint16 (H, W, C), samples in 0..maxval -> uint8 RGB; alpha composited over white."""
    c = a.shape[2]
    if maxval == 255 and c == 3:
        return a.copy()
    color = a[..., :3] if c >= 3 else a[..., :1]
    if c in (2, 4):
        v = color.astype(np.int64)
        alpha = a[..., -1:].astype(np.int64)
        num = v * alpha + maxval * (maxval - alpha)  # composite, scaled by maxval**2
        den = maxval * maxval
        out = (num * 510 + den) // (2 * den)  # round-half-up of num * 255 / den
    elif maxval == 255:
        out = color
    else:
        out = (color.astype(np.int64) * 510 + maxval) // (2 * maxval)
    out = out.astype(np.uint8)
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def _float_to_rgb8(a: np.ndarray) -> np.ndarray:
    """Float (H, W, C) read as [0, 1] -> uint8 RGB; non-finite values are rejected."""
    if not np.all(np.isfinite(a)):
        raise ImageError("float image contains NaN or infinite values")
    f = np.clip(a.astype(np.float64), 0.0, 1.0)
    c = f.shape[2]
    color = f[..., :3] if c >= 3 else f[..., :1]
    if c in (2, 4):
        alpha = f[..., -1:]
        color = color * alpha + (1.0 - alpha)
    out = np.floor(color * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file into a uint8 H x W x 3 RGB array; any failure is an ImageError."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageError(f"expected an image file, got a directory: {p}")
    try:
        if p.stat().st_size == 0:
            raise ImageError(f"image file is empty (0 bytes): {p}")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                arr = _decode(im, p)
                is_png = im.format == "PNG"
            if is_png:  # Pillow decodes a PNG cut after its pixel data without complaint
                _verify_png(p)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"refusing to decode {p}: possible decompression bomb ({e})") from e
    except Exception as e:  # Pillow raises many types for corrupt data; all are bad input here
        raise ImageError(f"cannot read image {p}: {e}") from e
    return to_rgb8(arr)


def _decode(im: Image.Image, path: Path) -> np.ndarray:
    """Turn an open Pillow image into an array that to_rgb8 understands (source bit depth kept)."""
    if im.width < 1 or im.height < 1:
        raise ImageError(f"image has zero size ({im.width}x{im.height}): {path}")
    rawmode = _rawmode(im)
    mode = im.mode
    if im.format == "PNG" and rawmode in _PNG16_SPLIT:
        arr = _decode_png16(path, _PNG16_SPLIT[rawmode])
    elif im.format == "PNG" and rawmode == "LA;16B":
        # Pillow opens 16-bit gray+alpha PNGs as RGBA; plain "RGBA" rawmode yields the 4 raw bytes.
        b = _decode_with_rawmode(path, "RGBA").astype(np.uint16)
        arr = np.stack([b[..., 0] << 8 | b[..., 1], b[..., 2] << 8 | b[..., 3]], axis=-1)
    elif rawmode is not None and ";16" in rawmode and mode[0] not in "IF":
        raise ImageError(
            f"{path}: 16-bit-per-channel {im.format} colour images would be truncated by Pillow; "
            "convert it to a 16-bit PNG or an 8-bit image first"
        )
    elif mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.asarray(im)
    elif mode == "I" or mode.startswith("I;16"):
        v = np.asarray(im).astype(np.int64)
        if v.size and (v.min() < 0 or v.max() > 65535):
            raise ImageError(
                f"{path}: integer samples outside 0..65535 (range {v.min()}..{v.max()}); "
                "only 8- and 16-bit integer images are supported"
            )
        arr = v.astype(np.uint16)
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32)
    elif mode in ("P", "PA") or "A" in mode or "a" in mode:
        arr = np.asarray(im.convert("RGBA"))
    else:
        arr = np.asarray(im.convert("RGB"))
    return _apply_color_key(arr, im.info.get("transparency"), mode)


def _verify_png(path: Path) -> None:
    """Reject PNGs whose chunk CRCs fail or that end before IEND (Pillow decodes those silently)."""
    with Image.open(path) as im:
        im.verify()


def _rawmode(im: Image.Image) -> str | None:
    """The rawmode Pillow will decode the first tile with, or None when unknown."""
    tiles = getattr(im, "tile", None) or []
    if not tiles:
        return None
    args = tiles[0].args if hasattr(tiles[0], "args") else tiles[0][3]
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else None


def _decode_with_rawmode(path: Path, rawmode: str) -> np.ndarray:
    """Decode the single tile of a PNG with a substituted rawmode of the same bit depth."""
    with Image.open(path) as im:
        if len(im.tile) != 1:
            raise ImageError(f"{path}: unsupported 16-bit PNG layout ({len(im.tile)} tiles)")
        im.tile = [im.tile[0]._replace(args=rawmode)]
        im.load()
        return np.asarray(im)


def _decode_png16(path: Path, rawmodes: tuple[str, str]) -> np.ndarray:
    """Decode a 16-bit colour PNG exactly as uint16 (Pillow alone keeps only the high byte)."""
    hi = _decode_with_rawmode(path, rawmodes[0]).astype(np.uint16)
    lo = _decode_with_rawmode(path, rawmodes[1]).astype(np.uint16)
    return (hi << 8) | lo


def _apply_color_key(arr: np.ndarray, key: object, mode: str) -> np.ndarray:
    """Append an alpha channel for a tRNS colour key (gray or RGB), in the array's own depth."""
    if key is None or arr.dtype.kind not in "ui":
        return arr
    full = np.iinfo(arr.dtype).max
    if arr.ndim == 2 and isinstance(key, int) and (mode in ("L", "I") or mode.startswith("I;16")):
        alpha = np.where(arr == key, 0, full).astype(arr.dtype)
        return np.stack([arr, alpha], axis=-1)
    if arr.ndim == 3 and arr.shape[2] == 3 and isinstance(key, tuple) and len(key) == 3:
        hit = np.all(arr == np.asarray(key, dtype=np.int64), axis=-1)
        alpha = np.where(hit, 0, full).astype(arr.dtype)
        return np.concatenate([arr, alpha[..., None]], axis=-1)
    return arr


def save_png(img: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a uint8 H x W x 3 array as a lossless 8-bit RGB PNG (whatever the file suffix)."""
    img = validate_rgb8(img)
    try:
        Image.fromarray(img).save(Path(path), format="PNG")
    except OSError as e:
        raise ImageError(f"cannot write PNG {path}: {e}") from e
