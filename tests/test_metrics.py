"""imgcomp.metrics: hand-computed PSNR, SSIM vs scikit-image, MS-SSIM vs independent torch code."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import structural_similarity

from imgcomp.errors import ImageError
from imgcomp.metrics import (
    MS_SSIM_MIN_SIDE,
    MS_SSIM_WEIGHTS,
    bpp,
    evaluate_pair,
    ms_ssim,
    mse,
    psnr,
    ssim,
)


def _natural_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, textured uint8 RGB image (gradients + sinusoids + mild noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    channels = []
    for c in range(3):
        fx, fy = rng.uniform(0.02, 0.15, size=2)
        base = 128 + 60 * np.sin(fx * xx + c) * np.cos(fy * yy - c) + 40 * (xx / w - yy / h)
        channels.append(base + rng.normal(0, 4, size=(h, w)))
    return np.clip(np.stack(channels, axis=-1), 0, 255).round().astype(np.uint8)


def _add_noise(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def _torch_ms_ssim_reference(ref: np.ndarray, test: np.ndarray) -> float:
    """Independent MS-SSIM: 2-D 11x11 Gaussian conv2d (valid), per channel, float64, torch only.

    Downsampling replicates the last row/column of an odd side, then 2x2 average pools.
    """
    x = torch.from_numpy(ref.astype(np.float64)).permute(2, 0, 1)[None]
    y = torch.from_numpy(test.astype(np.float64)).permute(2, 0, 1)[None]
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    win = torch.outer(g, g).expand(3, 1, 11, 11).contiguous()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=3)

    terms = []
    for level in range(5):
        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx**2
        syy = blur(y * y) - my**2
        sxy = blur(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if level < 4:
            terms.append(torch.relu(cs.mean(dim=(2, 3))))
            pad = (0, x.shape[3] % 2, 0, x.shape[2] % 2)
            x = F.avg_pool2d(F.pad(x, pad, mode="replicate"), 2)
            y = F.avg_pool2d(F.pad(y, pad, mode="replicate"), 2)
        else:
            lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            terms.append(torch.relu((lum * cs).mean(dim=(2, 3))))
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64).view(-1, 1, 1)
    return torch.prod(torch.stack(terms) ** weights, dim=0).mean().item()


# ---------------------------------------------------------------- SSIM


def test_ssim_matches_skimage_gaussian_convention() -> None:
    ref = _natural_like(64, 80)
    test = _add_noise(ref, 12)
    expected = structural_similarity(
        ref.astype(np.float64),
        test.astype(np.float64),
        channel_axis=-1,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(ref, test) == pytest.approx(expected, abs=1e-12)
    # The uniform 7x7 default differs, so the convention actually matters here.
    default = structural_similarity(ref, test, channel_axis=-1, data_range=255)
    assert abs(ssim(ref, test) - default) > 1e-4


def test_ssim_is_mean_of_per_channel_ssim() -> None:
    ref = _natural_like(48, 40, seed=3)
    test = _add_noise(ref, 20, seed=4)
    per_channel = [
        structural_similarity(
            ref[..., c].astype(np.float64),
            test[..., c].astype(np.float64),
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for c in range(3)
    ]
    assert ssim(ref, test) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_ssim_identical_is_one_and_noise_lowers_it() -> None:
    ref = _natural_like(40, 50)
    assert ssim(ref, ref.copy()) == pytest.approx(1.0, abs=1e-12)
    light, heavy = ssim(ref, _add_noise(ref, 5)), ssim(ref, _add_noise(ref, 40))
    assert 1.0 > light > heavy


def test_ssim_symmetric() -> None:
    ref = _natural_like(33, 45)
    test = _add_noise(ref, 15)
    assert ssim(ref, test) == pytest.approx(ssim(test, ref), abs=1e-12)


@pytest.mark.parametrize("shape", [(10, 64, 3), (64, 10, 3), (1, 1, 3)])
def test_ssim_too_small_raises_image_error(shape: tuple[int, int, int]) -> None:
    img = np.zeros(shape, dtype=np.uint8)
    with pytest.raises(ImageError, match="11"):
        ssim(img, img)


def test_ssim_smallest_allowed_size() -> None:
    ref = _natural_like(11, 11)
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(ref, _add_noise(ref, 30)) < 1.0


# ---------------------------------------------------------------- PSNR / MSE


def test_psnr_off_by_one_everywhere() -> None:
    ref = _natural_like(20, 30)
    ref = np.clip(ref, 0, 254)
    test = ref + np.uint8(1)
    assert mse(ref, test) == 1.0
    assert psnr(ref, test) == pytest.approx(10 * math.log10(255**2), abs=1e-12)
    assert psnr(ref, test) == pytest.approx(48.130803608679, abs=1e-9)


def test_psnr_single_pixel_single_channel() -> None:
    ref = np.zeros((10, 10, 3), dtype=np.uint8)
    test = ref.copy()
    test[4, 7, 1] = 255
    # MSE = 255^2 / 300, so PSNR = 10 log10(300).
    assert mse(ref, test) == pytest.approx(255**2 / 300, rel=1e-15)
    assert psnr(ref, test) == pytest.approx(10 * math.log10(300), abs=1e-12)
    assert psnr(ref, test) == pytest.approx(24.771212547, abs=1e-8)


def test_psnr_no_uint8_wraparound() -> None:
    ref = np.full((4, 4, 3), 10, dtype=np.uint8)
    test = np.full((4, 4, 3), 20, dtype=np.uint8)  # ref - test would wrap to 246 in uint8
    assert mse(ref, test) == 100.0
    assert mse(test, ref) == 100.0


def test_psnr_identical_is_inf() -> None:
    ref = _natural_like(8, 8)
    assert psnr(ref, ref.copy()) == math.inf
    assert mse(ref, ref.copy()) == 0.0


# ---------------------------------------------------------------- MS-SSIM


def test_ms_ssim_identical_is_one() -> None:
    ref = _natural_like(MS_SSIM_MIN_SIDE, 200)
    assert ms_ssim(ref, ref.copy()) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_monotone_in_noise() -> None:
    ref = _natural_like(176, 208)
    values = [ms_ssim(ref, _add_noise(ref, s)) for s in (2, 5, 10, 20, 40, 80)]
    assert all(a > b for a, b in itertools.pairwise(values)), values
    assert values[0] < 1.0
    assert values[-1] > 0.0


@pytest.mark.parametrize(("h", "w"), [(192, 256), (161, 173), (203, 187)])
def test_ms_ssim_matches_torch_reference(h: int, w: int) -> None:
    ref = _natural_like(h, w, seed=h)
    test = _add_noise(ref, 15, seed=w)
    assert ms_ssim(ref, test) == pytest.approx(_torch_ms_ssim_reference(ref, test), abs=1e-9)


def test_ms_ssim_clamps_negative_cs_to_zero() -> None:
    # Inverted contrast gives negative cs at some scale; ReLU makes the product exactly 0.
    ref = _natural_like(176, 176, seed=5)
    test = (255 - ref).astype(np.uint8)
    assert ms_ssim(ref, test) == 0.0
    assert ms_ssim(ref, test) == pytest.approx(_torch_ms_ssim_reference(ref, test), abs=1e-12)


def test_ms_ssim_matches_pytorch_msssim_on_even_sizes() -> None:
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    ref = _natural_like(192, 256, seed=7)
    for sigma in (5, 25):
        test = _add_noise(ref, sigma, seed=sigma)
        x = torch.from_numpy(ref.astype(np.float64)).permute(2, 0, 1)[None]
        y = torch.from_numpy(test.astype(np.float64)).permute(2, 0, 1)[None]
        expected = pytorch_msssim.ms_ssim(x, y, data_range=255).item()
        # pytorch-msssim builds its Gaussian window in float32, hence ~1e-7 differences.
        assert ms_ssim(ref, test) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("shape", [(160, 300, 3), (300, 160, 3), (64, 64, 3)])
def test_ms_ssim_too_small_raises_image_error(shape: tuple[int, int, int]) -> None:
    img = np.zeros(shape, dtype=np.uint8)
    with pytest.raises(ImageError, match="161"):
        ms_ssim(img, img)


# ---------------------------------------------------------------- bpp


def test_bpp_values() -> None:
    assert bpp(1, 1, 8) == 1.0
    assert bpp(0, 4, 4) == 0.0
    assert bpp(49152, 512, 768) == 1.0
    assert bpp(np.int64(3), np.int32(2), 3) == 4.0


@pytest.mark.parametrize(
    ("num_bytes", "height", "width"),
    [
        (1, 0, 8),
        (1, 8, 0),
        (1, -2, 8),
        (-1, 8, 8),
        (1.5, 8, 8),
        (1, 8.0, 8),
        ("3", 8, 8),
        (True, 1, 8),
    ],
)
def test_bpp_rejects_bad_arguments(num_bytes: object, height: object, width: object) -> None:
    with pytest.raises(ImageError):
        bpp(num_bytes, height, width)  # type: ignore[arg-type]


# ---------------------------------------------------------------- evaluate_pair


def test_evaluate_pair_consistent_with_individual_metrics() -> None:
    ref = _natural_like(176, 192)
    test = _add_noise(ref, 10)
    result = evaluate_pair(ref, test)
    assert set(result) == {"psnr", "ssim", "ms_ssim"}
    assert result["psnr"] == psnr(ref, test)
    assert result["ssim"] == ssim(ref, test)
    assert result["ms_ssim"] == ms_ssim(ref, test)


def test_evaluate_pair_small_image_gives_nan_ms_ssim() -> None:
    ref = _natural_like(64, 200)
    test = _add_noise(ref, 10)
    result = evaluate_pair(ref, test)
    assert math.isnan(result["ms_ssim"])
    assert result["psnr"] == psnr(ref, test)
    assert result["ssim"] == ssim(ref, test)


def test_evaluate_pair_validates_inputs() -> None:
    with pytest.raises(ImageError):
        evaluate_pair(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 33, 3), np.uint8))


# ---------------------------------------------------------------- input validation

_GOOD = np.zeros((16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("fn", [psnr, mse, ssim, ms_ssim, evaluate_pair])
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((16, 17, 3), dtype=np.uint8), "shape"),
        (np.zeros((16, 16, 3), dtype=np.float32), "uint8"),
        (np.zeros((16, 16, 3), dtype=np.float64), "uint8"),
        (np.zeros((16, 16, 3), dtype=np.uint16), "uint8"),
        (np.zeros((16, 16), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((16, 16, 4), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((1, 16, 16, 3), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 16, 3), dtype=np.uint8), "empty"),
        ([[[0, 0, 0]]], "ndarray"),
    ],
)
def test_bad_inputs_raise_image_error(fn, bad: object, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        fn(_GOOD, bad)
    with pytest.raises(ImageError, match=match):
        fn(bad, _GOOD)


# ---------------------------------------------------------------- real-image sanity


def test_jpeg_q10_kodim23_plausible(kodak_dir: Path) -> None:
    ref = np.asarray(Image.open(kodak_dir / "kodim23.png").convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, format="JPEG", quality=10)
    test = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    result = evaluate_pair(ref, test)
    assert 27.0 < result["psnr"] < 32.0
    assert 0.7 < result["ssim"] < 0.95
    assert 0.8 < result["ms_ssim"] < 0.98
    assert result["ssim"] < result["ms_ssim"]
    rate = bpp(len(buf.getvalue()), *ref.shape[:2])
    assert 0.1 < rate < 0.5
