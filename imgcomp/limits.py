"""The decode pixel budget: the largest image a stream may make a decoder build.

Like Pillow's ``MAX_IMAGE_PIXELS``, it stops a few hostile bytes from declaring an image whose
decoding costs gigabytes: every decoder checks the declared size against the budget before it
allocates anything. The default admits a 24-megapixel photo with room to spare; raise it per call
(``decode(data, max_pixels=...)``) or for the process with ``IMGCOMP_MAX_PIXELS``.
"""

from __future__ import annotations

import os

from imgcomp.errors import ImgcompError, PixelBudgetError

__all__ = ["DEFAULT_MAX_PIXELS", "MAX_PIXELS_ENV", "check_pixels", "int_setting", "max_pixels"]

DEFAULT_MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "IMGCOMP_MAX_PIXELS"


def max_pixels(override: int | None = None) -> int:
    """The budget in force: ``override``, else ``$IMGCOMP_MAX_PIXELS``, else the default."""
    return int_setting(override, "max_pixels", MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, minimum=1)


def int_setting(override: int | None, name: str, env: str, default: int, minimum: int) -> int:
    """An integer setting: ``override`` (called ``name``), else ``$env`` (``1_000`` spelling
    allowed), else ``default``; ImgcompError unless an int of at least ``minimum``."""
    if override is not None:
        return _at_least(override, name, minimum)
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ImgcompError(f"{env}={raw!r} is not an integer") from None
    return _at_least(value, env, minimum)


def check_pixels(height: int, width: int, budget: int | None = None) -> None:
    """PixelBudgetError when a declared ``height`` x ``width`` exceeds the budget."""
    limit = max_pixels(budget)
    if height * width > limit:
        raise PixelBudgetError(
            f"the stream declares a {width}x{height} image ({height * width:,} pixels), over the "
            f"decode budget of {limit:,} pixels; if you trust it, raise the budget with "
            f"decode(..., max_pixels=N) or the {MAX_PIXELS_ENV} environment variable"
        )


def _at_least(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ImgcompError(f"{name} must be {kind}, got {value!r}")
    return value
