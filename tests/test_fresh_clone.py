"""The README's main job on a fresh machine: the default benchmark selection, run from a copy of
the repository in a folder with no ``../shared`` beside it, Kodak from ``IMGCOMP_KODAK_DIR`` only,
no training-data variable, an empty cache. A dependency on our own data folders fails here.

It runs on 2 images and leaves out the latency tests (``-m "not latency"``): their gates depend
on the host and its load, and CI's timing step runs them. Every case of the default matrix is
built and gated, int8 calibration and structured recovery included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_files(repo: Path) -> list[str]:
    """Files a clone would have: tracked plus untracked-not-ignored (the working tree as it
    would be committed)."""
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("needs git and a git checkout to list the repository's files")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    return [f for f in out.decode().split("\0") if f and (repo / f).is_file()]


def _clean_env(tmp_path: Path, kodak_dir: Path, clone: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMGCOMP_", "PYTEST_", "COV_")) and k != "PYTHONPATH"
    }
    env.update(
        IMGCOMP_KODAK_DIR=str(kodak_dir),
        IMGCOMP_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=str(clone),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@pytest.mark.slow
def test_default_benchmark_passes_in_a_fresh_clone(tmp_path: Path, kodak_dir: Path) -> None:
    clone = tmp_path / "user" / "imgcomp"
    for rel in _tracked_files(REPO):
        dest = clone / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest)
    assert not (clone.parent / "shared").exists()
    env = _clean_env(tmp_path, kodak_dir, clone)
    where = subprocess.run(
        [sys.executable, "-c", "import imgcomp; print(imgcomp.__file__)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(clone), f"imported {where}, not the clone's package"
    cmd = [sys.executable, "-m", "pytest", "bench", "--images", "2", "-m", "not latency"]
    cmd += ["-p", "no:cacheprovider", "-q", "-n", "0"]
    run = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    tail = (run.stdout + run.stderr)[-6000:]
    assert run.returncode == 0, f"{' '.join(cmd)} exited {run.returncode}:\n{tail}"
    assert "imgcomp bench:" in run.stdout, tail  # the plan line at the start
    assert " passed" in run.stdout and " failed" not in run.stdout, tail
