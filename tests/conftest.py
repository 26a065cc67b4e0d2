"""Shared fixtures of the unit tests: the compat reference data and its weight generator."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir(env: str, *parts: str) -> Path:
    """$env (must exist when set), else ../shared/<parts> beside the checkout, else skip."""
    value = os.environ.get(env)
    if value:
        path = Path(value)
        if not path.is_dir():
            pytest.fail(f"{env}={value} does not exist")
        return path
    path = REPO.parent.joinpath("shared", *parts)
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def compat_dir() -> Path:
    """shared/compat: the reference checkpoints and tensors ($IMGCOMP_COMPAT_DIR)."""
    return _shared_dir("IMGCOMP_COMPAT_DIR", "compat")


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
    """The 24 Kodak PNGs ($IMGCOMP_KODAK_DIR, else ../shared/data/kodak)."""
    return _shared_dir("IMGCOMP_KODAK_DIR", "data", "kodak")
