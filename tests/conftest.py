"""Shared fixtures of the unit tests: the compat reference data and its weight generator."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def compat_dir() -> Path:
    """shared/compat: $IMGCOMP_COMPAT_DIR (must exist if set), else ../shared/compat, else skip."""
    env = os.environ.get("IMGCOMP_COMPAT_DIR")
    if env:
        path = Path(env)
        if not path.is_dir():
            pytest.fail(f"IMGCOMP_COMPAT_DIR={env} does not exist")
        return path
    path = REPO.parent / "shared" / "compat"
    if not path.is_dir():
        pytest.skip(f"compat reference data not found at {path}")
    return path


@pytest.fixture(scope="session")
def make_state(compat_dir):
    """The compat weight generator module (make_state.py), imported from compat_dir."""
    sys.path.insert(0, str(compat_dir))
    try:
        return importlib.import_module("make_state")
    finally:
        sys.path.remove(str(compat_dir))


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    """The 24 Kodak PNGs: $IMGCOMP_KODAK_DIR (must exist if set), else ../shared/data/kodak."""
    env = os.environ.get("IMGCOMP_KODAK_DIR")
    if env:
        path = Path(env)
        if not path.is_dir():
            pytest.fail(f"IMGCOMP_KODAK_DIR={env} does not exist")
        return path
    path = REPO.parent / "shared" / "data" / "kodak"
    if not path.is_dir():
        pytest.skip(f"Kodak not found at {path}")
    return path
