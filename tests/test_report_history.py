"""``imgcomp report --benchmark-action DIR``: the newest quality run in github-action-benchmark's
custom formats (customBiggerIsBetter: SSIM, PSNR, MS-SSIM; customSmallerIsBetter: bpp)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from imgcomp.cli import main
from imgcomp.errors import ImgcompError
from imgcomp.report import build_report
from imgcomp.report.history import BIGGER, SMALLER
from tests.test_report import INT8, WHEN, summary, write_bench_save, write_quality


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    """Two quality runs: the older measures jpeg-q75 only; the newer (its file name first)
    jpeg-q75 again, a lossless case (infinite PSNR) and an op case."""
    root = tmp_path / "in"
    write_quality(root / "b_old.json", [summary("jpeg-q75", 1.3, 0.90)], WHEN - timedelta(days=1))
    lossless = summary("png", 12.0, 1.0) | {"psnr": float("inf")}
    write_quality(
        root / "a_new.json", [summary("jpeg-q75", 1.2, 0.93), lossless, summary(INT8, 0.3, 0.757)]
    )
    return root


def read(path: Path) -> list[dict]:
    """The file as the action reads it: strict JSON (no NaN / Infinity), a list of entries."""
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {path}"))
    assert isinstance(data, list)
    assert all(set(e) == {"name", "unit", "value", "extra"} for e in data)
    assert all(isinstance(e["value"], float) and isinstance(e["extra"], str) for e in data)
    return data


def test_bigger_and_smaller_files_of_the_newest_run(runs: Path, tmp_path: Path) -> None:
    report = build_report([runs], tmp_path / "out", benchmark_action=tmp_path / "action")
    assert report.history == (tmp_path / "action" / BIGGER, tmp_path / "action" / SMALLER)
    bigger = {e["name"]: e for e in read(report.history[0])}
    assert list(bigger) == [  # cases by id, each SSIM, PSNR, MS-SSIM; no infinite PSNR
        "jpeg-q75 ssim",
        "jpeg-q75 psnr",
        "jpeg-q75 ms_ssim",
        f"{INT8} ssim",
        f"{INT8} psnr",
        f"{INT8} ms_ssim",
        "png ssim",
        "png ms_ssim",
    ]
    assert bigger["jpeg-q75 ssim"]["value"] == 0.93  # the newer run's, not 0.90
    assert bigger["jpeg-q75 psnr"] == {
        "name": "jpeg-q75 psnr",
        "unit": "dB",
        "value": pytest.approx(29.3),
        "extra": "2 images of kodak; run aaaaaaa 2026-12-01 10:00",
    }
    assert {e["unit"] for e in bigger.values()} == {"SSIM", "dB", "MS-SSIM"}
    smaller = read(report.history[1])
    assert [(e["name"], e["unit"], e["value"]) for e in smaller] == [
        ("jpeg-q75 bpp", "bpp", 1.2),
        (f"{INT8} bpp", "bpp", 0.3),
        ("png bpp", "bpp", 12.0),
    ]


def test_names_stay_the_same_across_runs(runs: Path, tmp_path: Path) -> None:
    """The action keys its history by name: the same cases measured again give the same names."""
    first = build_report([runs], tmp_path / "o1", benchmark_action=tmp_path / "a1")
    later = [summary("jpeg-q75", 1.1, 0.95), summary("png", 12.0, 1.0), summary(INT8, 0.3, 0.76)]
    write_quality(runs / "c_later.json", later, WHEN + timedelta(days=1))
    second = build_report([runs], tmp_path / "o2", benchmark_action=tmp_path / "a2")
    for a, b in zip(first.history, second.history, strict=True):
        names_a = {e["name"] for e in read(a)}
        assert names_a <= {e["name"] for e in read(b)}
    assert {e["name"]: e["value"] for e in read(second.history[0])}["jpeg-q75 ssim"] == 0.95


def test_without_quality_results_nothing_is_written(tmp_path: Path, capsys) -> None:
    write_bench_save(tmp_path / "in" / "0001_x.json", WHEN, "e" * 40)
    with pytest.raises(ImgcompError, match="--benchmark-action needs the suite's quality"):
        build_report([tmp_path / "in"], tmp_path / "out", benchmark_action=tmp_path / "action")
    assert not (tmp_path / "out").exists() and not (tmp_path / "action").exists()
    args = ["report", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main([*args, "--benchmark-action", str(tmp_path / "action"), "--quiet"]) == 2
    assert "needs the suite's quality results" in capsys.readouterr().err


def test_cli_benchmark_action(runs: Path, tmp_path: Path, capsys) -> None:
    action = tmp_path / "action"
    args = ["report", str(runs), "--out", str(tmp_path / "out"), "--benchmark-action", str(action)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"wrote {action / BIGGER} and {action / SMALLER} (github-action-benchmark)" in out
    assert read(action / SMALLER)[0]["name"] == "jpeg-q75 bpp"
