"""imgcomp.anchors: classic-codec curves and the learned-vs-anchor comparison at equal bpp."""

from __future__ import annotations

import numpy as np
import pytest

from imgcomp.anchors import anchor_curve, at_bpp, compare, format_comparison
from imgcomp.errors import ImgcompError

CURVE = [
    {"quality": 10.0, "bpp": 0.2, "psnr": 26.0, "ssim": 0.70, "ms_ssim": 0.90},
    {"quality": 20.0, "bpp": 0.4, "psnr": 30.0, "ssim": 0.80, "ms_ssim": 0.95},
]


def test_at_bpp_interpolates_linearly_between_settings() -> None:
    assert at_bpp(CURVE, 0.3, "psnr") == pytest.approx(28.0)
    assert at_bpp(CURVE, 0.25, "ssim") == pytest.approx(0.725)
    assert at_bpp(CURVE, 0.4, "ms_ssim") == pytest.approx(0.95)


def test_at_bpp_refuses_to_extrapolate_or_read_a_broken_curve() -> None:
    with pytest.raises(ImgcompError, match="outside the anchor curve"):
        at_bpp(CURVE, 0.45, "psnr")
    with pytest.raises(ImgcompError, match="outside the anchor curve"):
        at_bpp(CURVE, 0.1, "psnr")
    with pytest.raises(ImgcompError, match="strictly rising"):
        at_bpp([CURVE[0], CURVE[0]], 0.2, "psnr")
    with pytest.raises(ImgcompError, match="at least two"):
        at_bpp(CURVE[:1], 0.2, "psnr")


def test_compare_gives_signed_margins_and_a_table() -> None:
    point = {"bpp": 0.3, "psnr": 29.0, "ssim": 0.74, "ms_ssim": 0.93}
    (row,) = compare({"model-q3": point}, {"webp": CURVE})
    assert row["webp_psnr"] == pytest.approx(28.0)
    assert row["webp_psnr_margin"] == pytest.approx(1.0)  # learned above the anchor
    assert row["webp_ssim_margin"] == pytest.approx(-0.01)  # learned below
    table = format_comparison([row], ["webp"])
    assert "| WebP PSNR / SSIM / MS-SSIM |" in table.splitlines()[0]
    assert "| model-q3 | 0.3000 | 29.00 | 0.7400 | 0.9300 | 28.00 / 0.7500 / 0.9250 |" in table


def test_anchor_curve_measures_real_streams_by_rising_bpp() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (8, 8, 3)).astype(np.float64)
    img = np.kron(base, np.ones((8, 8, 1)))[:64, :64]
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    curve = anchor_curve("jpeg", [("noise", img)], qualities=(90, 20, 50))
    assert [p["quality"] for p in curve] == [20.0, 50.0, 90.0]
    assert [p["bpp"] for p in curve] == sorted(p["bpp"] for p in curve)
    assert curve[0]["psnr"] < curve[-1]["psnr"]
    with pytest.raises(ImgcompError, match="no quality settings"):
        anchor_curve("jpeg", [("noise", img)], qualities=())
