"""Image-quality (PSNR, SSIM, MS-SSIM) and rate (bpp) metrics for uint8 RGB images.

Conventions, fixed so that numbers are comparable with the learned-compression literature:

* Inputs are ``numpy.ndarray`` of dtype ``uint8`` and shape ``(H, W, 3)`` (RGB); ``ref`` and
  ``test`` must have the same shape. Anything else raises :class:`~imgcomp.errors.ImageError`.
  All arithmetic is done in float64 with ``data_range = 255``.
* PSNR / MSE are taken over all pixels and all three RGB channels (not over luma Y).
* SSIM is Wang et al. 2004: 11x11 Gaussian window with sigma 1.5, population (not sample)
  covariance, K1 = 0.01, K2 = 0.03, computed per channel and averaged over R, G, B.
* MS-SSIM is Wang, Simoncelli & Bovik 2003 with 5 scales, computed per channel and averaged over
  R, G, B, matching ``pytorch_msssim.ms_ssim`` (which CompressAI uses) on even-sized images.
"""

from __future__ import annotations

import math
import operator

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from imgcomp.errors import ImageError

__all__ = [
    "MS_SSIM_MIN_SIDE",
    "MS_SSIM_WEIGHTS",
    "SSIM_MIN_SIDE",
    "bpp",
    "evaluate_pair",
    "ms_ssim",
    "mse",
    "psnr",
    "ssim",
]

DATA_RANGE = 255.0
K1, K2 = 0.01, 0.03
GAUSSIAN_SIGMA = 1.5
WINDOW_SIZE = 11  # skimage: 2 * int(truncate * sigma + 0.5) + 1 with its default truncate=3.5
SSIM_MIN_SIDE = WINDOW_SIZE
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# After 4 halvings the coarsest scale must still hold one full window: (11 - 1) * 2**4 + 1 = 161.
MS_SSIM_MIN_SIDE = (WINDOW_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1

_C1 = (K1 * DATA_RANGE) ** 2
_C2 = (K2 * DATA_RANGE) ** 2


def _check_image(image: object, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name} must be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"{name} must have dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"{name} must have shape (H, W, 3) (RGB), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{name} is empty: shape {image.shape}")
    return image


def _check_pair(ref: object, test: object) -> tuple[np.ndarray, np.ndarray]:
    ref = _check_image(ref, "ref")
    test = _check_image(test, "test")
    if ref.shape != test.shape:
        raise ImageError(f"ref and test differ in shape: {ref.shape} vs {test.shape}")
    return ref, test


def _mse(ref: np.ndarray, test: np.ndarray) -> float:
    diff = ref.astype(np.float64) - test.astype(np.float64)
    return float(np.mean(diff * diff))


def mse(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error over all pixels and RGB channels, in 8-bit units squared."""
    return _mse(*_check_pair(ref, test))


def _psnr(ref: np.ndarray, test: np.ndarray) -> float:
    err = _mse(ref, test)
    return math.inf if err == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / err)


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    """RGB PSNR in dB, ``10 log10(255^2 / MSE)`` over all pixels and channels.

    Identical images have MSE 0 and return ``math.inf``; callers averaging over a dataset must
    decide how to treat that (it cannot happen for a lossy codec on natural images).
    """
    return _psnr(*_check_pair(ref, test))


def _ssim(ref: np.ndarray, test: np.ndarray) -> float:
    if min(ref.shape[:2]) < SSIM_MIN_SIDE:
        raise ImageError(
            f"SSIM needs both sides >= {SSIM_MIN_SIDE} px (11x11 Gaussian window), "
            f"got {ref.shape[0]}x{ref.shape[1]}"
        )
    return float(
        structural_similarity(
            ref.astype(np.float64),
            test.astype(np.float64),
            channel_axis=-1,
            data_range=DATA_RANGE,
            gaussian_weights=True,
            sigma=GAUSSIAN_SIGMA,
            use_sample_covariance=False,
            K1=K1,
            K2=K2,
        )
    )


def ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of an RGB pair, Wang et al. 2004 convention, via scikit-image.

    Exactly ``structural_similarity(ref.astype(float64), test.astype(float64), channel_axis=-1,
    data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: an 11x11
    Gaussian window (sigma 1.5), population covariance, K1=0.01, K2=0.03; the SSIM map of each
    channel is averaged over the pixels at least 5 px from the border, then the three channel means
    are averaged. Images with a side below 11 px raise ImageError.
    """
    return _ssim(*_check_pair(ref, test))


def _gaussian_window_1d() -> np.ndarray:
    coords = np.arange(WINDOW_SIZE, dtype=np.float64) - WINDOW_SIZE // 2
    g = np.exp(-(coords**2) / (2.0 * GAUSSIAN_SIGMA**2))
    return g / g.sum()


_WINDOW_1D = _gaussian_window_1d()


def _valid_gaussian(stack: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian filter over axes 1, 2 of (maps, H, W, C), 'valid' region only."""
    r = WINDOW_SIZE // 2
    out = ndimage.correlate1d(stack, _WINDOW_1D, axis=1, mode="constant")[:, r:-r]
    return ndimage.correlate1d(out, _WINDOW_1D, axis=2, mode="constant")[:, :, r:-r]


def _ssim_cs_per_channel(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and mean contrast-structure term for float64 (H, W, C) images."""
    mu_x, mu_y, e_xx, e_yy, e_xy = _valid_gaussian(np.stack([x, y, x * x, y * y, x * y]))
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    cs_map = (2.0 * cov_xy + _C2) / (var_x + var_y + _C2)
    lum_map = (2.0 * mu_x * mu_y + _C1) / (mu_x * mu_x + mu_y * mu_y + _C1)
    return (lum_map * cs_map).mean(axis=(0, 1)), cs_map.mean(axis=(0, 1))


def _downsample2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd side first gets its last row/column replicated."""
    odd_h, odd_w = x.shape[0] % 2, x.shape[1] % 2
    if odd_h or odd_w:
        x = np.pad(x, ((0, odd_h), (0, odd_w), (0, 0)), mode="edge")
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def _ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ImageError(
            f"MS-SSIM (5 scales, 11x11 window) needs both sides >= {MS_SSIM_MIN_SIDE} px, "
            f"got {ref.shape[0]}x{ref.shape[1]}"
        )
    x = ref.astype(np.float64)
    y = test.astype(np.float64)
    levels = len(MS_SSIM_WEIGHTS)
    factors = []
    for level in range(levels):
        ssim_c, cs_c = _ssim_cs_per_channel(x, y)
        if level < levels - 1:
            factors.append(np.maximum(cs_c, 0.0))
            x, y = _downsample2(x), _downsample2(y)
    factors.append(np.maximum(ssim_c, 0.0))
    weights = np.asarray(MS_SSIM_WEIGHTS)[:, None]
    per_channel = np.prod(np.stack(factors) ** weights, axis=0)
    return float(per_channel.mean())


def ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """5-scale MS-SSIM (Wang, Simoncelli & Bovik 2003) of an RGB pair, averaged over channels.

    Per channel: at each of 5 scales, the mean contrast-structure term cs over the 'valid' region of
    an 11x11 Gaussian window (sigma 1.5, population covariance, K1=0.01, K2=0.03, data_range 255);
    at the coarsest scale the full SSIM (luminance x cs) replaces cs. Scales are separated by 2x2
    average pooling (an odd side first gets its last row/column replicated, as in TensorFlow's
    ``ssim_multiscale``; ``pytorch_msssim`` zero-pads instead, so results differ only for odd
    sizes). Negative terms are clamped to 0 (ReLU) as in pytorch-msssim/CompressAI, then
    ``prod(term_i ** w_i)`` with w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); the three channel
    values are averaged. Images with a side below 161 px raise ImageError.
    """
    return _ms_ssim(*_check_pair(ref, test))


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Rate in bits per pixel, ``8 * num_bytes / (height * width)``.

    Arguments must be integers (numpy integers allowed, bool not), ``num_bytes >= 0`` and both
    dimensions positive; otherwise ImageError.
    """
    values = {}
    for name, value in (("num_bytes", num_bytes), ("height", height), ("width", width)):
        if isinstance(value, bool):
            raise ImageError(f"{name} must be an integer, got bool")
        try:
            values[name] = operator.index(value)
        except TypeError:
            raise ImageError(f"{name} must be an integer, got {type(value).__name__}") from None
    if values["num_bytes"] < 0:
        raise ImageError(f"num_bytes must be >= 0, got {values['num_bytes']}")
    if values["height"] <= 0 or values["width"] <= 0:
        raise ImageError(
            f"image dimensions must be positive, got height={values['height']}, "
            f"width={values['width']}"
        )
    return 8.0 * values["num_bytes"] / (values["height"] * values["width"])


def evaluate_pair(ref: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """All quality metrics of a pair: ``{"psnr", "ssim", "ms_ssim"}`` as floats.

    ``ms_ssim`` is ``float('nan')`` when a side is below 161 px (too small for 5 scales), so result
    tables keep the same columns; ``ssim`` still raises ImageError below 11 px, and ``psnr`` is
    ``math.inf`` for identical images.
    """
    ref, test = _check_pair(ref, test)
    too_small = min(ref.shape[:2]) < MS_SSIM_MIN_SIDE
    return {
        "psnr": _psnr(ref, test),
        "ssim": _ssim(ref, test),
        "ms_ssim": math.nan if too_small else _ms_ssim(ref, test),
    }
