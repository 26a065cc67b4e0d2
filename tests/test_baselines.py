"""The baseline gate: creation, gating, refusal to lower, and the bench harness end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from imgcomp.baselines import (
    SSIM_JITTER,
    BaselineError,
    BaselineStore,
    Tolerance,
    case_filename,
)
from imgcomp.evaluate import evaluate
from imgcomp.images import save_png
from imgcomp.registry import create_codec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, np.ndarray]]:
    from skimage import data

    return [("astronaut", data.astronaut()[:192, :256]), ("coffee", data.coffee()[:192, :256])]


def _run(name: str, photos, **params):
    return evaluate(create_codec(name, **params), photos, verify=True)


def test_missing_baseline_says_how_to_create_it(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    with pytest.raises(BaselineError, match="--update-baselines"):
        store.check("jpeg-q75", _run("jpeg", photos, quality=75))


def test_same_setting_passes_and_worse_setting_fails(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    good = _run("jpeg", photos, quality=75)
    assert store.update("jpeg-q75", good, Tolerance())  # reports the new entries
    assert store.check("jpeg-q75", good).passed
    worse_quality = store.check("jpeg-q75", _run("jpeg", photos, quality=40))
    assert not worse_quality.passed and "SSIM" in worse_quality.failures[0]
    worse_rate = store.check("jpeg-q75", _run("jpeg", photos, quality=95))
    assert any("bpp" in f for f in worse_rate.failures)


def test_gate_uses_only_the_images_of_the_run(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    store.update("jpeg-q75", _run("jpeg", photos, quality=75), Tolerance())
    subset = _run("jpeg", photos[:1], quality=75)
    outcome = store.check("jpeg-q75", subset)
    assert outcome.images == ["astronaut"] and outcome.passed
    assert outcome.baseline_ssim == pytest.approx(subset[0].ssim)


def test_run_on_images_without_baseline_fails(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    store.update("jpeg-q75", _run("jpeg", photos[:1], quality=75), Tolerance())
    with pytest.raises(BaselineError, match="no entry for coffee"):
        store.check("jpeg-q75", _run("jpeg", photos, quality=75))


def test_update_never_lowers_silently(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    store.update("case", _run("jpeg", photos, quality=75), Tolerance())
    before = store.path("case").read_text()
    with pytest.raises(BaselineError, match="refusing to lower"):
        store.update("case", _run("jpeg", photos, quality=40), Tolerance())
    assert store.path("case").read_text() == before
    changes = store.update("case", _run("jpeg", photos, quality=40), Tolerance(), allow_lower=True)
    assert len(changes) == 2 and "->" in changes[0]
    assert not store.update("case", _run("jpeg", photos, quality=40), Tolerance())  # no change


def test_update_ignores_decode_jitter_but_not_real_drops(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    run = _run("jpeg", photos, quality=75)
    store.update("case", run, Tolerance())
    before = store.path("case").read_text()
    jitter = [replace(r, ssim=r.ssim - 0.5 * SSIM_JITTER) for r in run]  # same bytes
    assert store.update("case", jitter, Tolerance()) == []
    assert store.path("case").read_text() == before
    drop = [replace(r, ssim=r.ssim - 2 * SSIM_JITTER) for r in run]
    with pytest.raises(BaselineError, match="refusing to lower"):
        store.update("case", drop, Tolerance())


def test_tolerance_is_read_from_the_file(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    store.update("case", _run("jpeg", photos, quality=75), Tolerance())
    loose = json.loads(store.path("case").read_text())
    loose["tolerance"] = {"ssim_abs": 0.5, "bpp_rel": 0.0}
    store.path("case").write_text(json.dumps(loose))
    assert store.check("case", _run("jpeg", photos, quality=40)).passed


def test_unreadable_baseline_is_a_clear_error(tmp_path, photos) -> None:
    store = BaselineStore(tmp_path, "sample")
    store.path("case").parent.mkdir(parents=True)
    store.path("case").write_text("{not json")
    with pytest.raises(BaselineError, match="unreadable"):
        store.check("case", _run("jpeg", photos, quality=75))


def test_case_filenames_are_safe() -> None:
    name = case_filename("mbt2018-mean-q3/prune=enc0.3,dec0,ent0:l1/quant=int8")
    assert "/" not in name and ":" not in name and name.endswith(".json")


def _bench(folder: Path, baselines: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "bench",
        "-p",
        "no:cacheprovider",
        "-q",
        "--dataset",
        f"folder:{folder}",
        "--baselines",
        str(baselines),
        "-k",
        "test_quality and jpeg-q75",
        *extra,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_bench_harness_end_to_end(tmp_path, photos) -> None:
    """pytest bench: no baseline fails, --update-baselines creates it, a raised bar fails."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, img in photos:
        save_png(img, folder / f"{name}.png")
    base = tmp_path / "baselines"
    first = _bench(folder, base)
    assert first.returncode == 1, first.stdout
    assert "update-baselines" in first.stdout
    created = _bench(folder, base, "--update-baselines")
    assert created.returncode == 0, created.stdout
    assert "imgcomp baseline changes" in created.stdout
    assert _bench(folder, base).returncode == 0
    (path,) = (base / "folder-imgs").glob("jpeg-q75*.json")
    data = json.loads(path.read_text())
    for entry in data["images"].values():
        entry["ssim"] += 0.01  # a baseline the current code cannot reach
    path.write_text(json.dumps(data))
    failed = _bench(folder, base)
    assert failed.returncode == 1 and "SSIM" in failed.stdout
