"""Unit-test fixtures: Kodak and the compat reference data, each found via one env variable."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from imgcomp.data import KODAK_SHA256, cache_dir

REPO = Path(__file__).resolve().parents[1]


#: What each data folder must hold, as every skip that needs it says.
KODAK_HOLDS = "the 24 Kodak PNGs (kodim01.png .. kodim24.png, from r0k.us/graphics/kodak)"
COMPAT_HOLDS = (
    "the original-checkpoint fixtures (make_state.py and compressai/: manifests and seed-0 "
    "reference tensors of CompressAI 1.2.8)"
)


def _shared_dir(env: str, holds: str, *parts: str, kodak_cache: Path | None = None) -> Path:
    """$env (must exist when set), else ../shared/<parts> beside the checkout, else a complete
    ``kodak_cache``, else skip naming the variable to set and what its folder must hold."""
    value = os.environ.get(env)
    if value:
        path = Path(value).expanduser()
        if not path.is_dir():
            pytest.fail(f"{env}={value} is not a folder; it must hold {holds}")
        return path
    path = REPO.parent.joinpath("shared", *parts)
    if path.is_dir():
        return path
    if kodak_cache is not None and _complete_kodak(kodak_cache):
        return kodak_cache
    tried = str(path) + (f" (nor a complete {kodak_cache})" if kodak_cache else "")
    pytest.skip(f"set {env} to the folder holding {holds}; not found: {tried}")


def _complete_kodak(folder: Path) -> bool:
    """``folder`` holds all 24 Kodak PNGs (as a finished ``pytest bench`` leaves the cache)."""
    return all((folder / name).is_file() for name in KODAK_SHA256)


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """A private empty cache under tmp_path and a network that fails the test if touched."""
    import urllib.request

    monkeypatch.setenv("IMGCOMP_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("unexpected network access")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny models gain nothing from a second one, and thread
    hand-offs cost on a shared 2-core CPU (``pytestmark = pytest.mark.usefixtures(...)``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def compat_dir() -> Path:
    """The original-checkpoint fixtures ($IMGCOMP_COMPAT_DIR, else ../shared/compat)."""
    return _shared_dir("IMGCOMP_COMPAT_DIR", COMPAT_HOLDS, "compat")


@pytest.fixture(scope="session")
def make_state(compat_dir):
    """The compat weight generator module (make_state.py), imported from compat_dir."""
    if not (compat_dir / "make_state.py").is_file():
        pytest.fail(
            f"{compat_dir} has no make_state.py; IMGCOMP_COMPAT_DIR must hold {COMPAT_HOLDS}"
        )
    sys.path.insert(0, str(compat_dir))
    try:
        return importlib.import_module("make_state")
    finally:
        sys.path.remove(str(compat_dir))


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    """The 24 Kodak PNGs ($IMGCOMP_KODAK_DIR, else ../shared/data/kodak, else a complete copy in
    the user cache): every unit test that reads real Kodak files finds them here."""
    cache = cache_dir() / "kodak"
    return _shared_dir("IMGCOMP_KODAK_DIR", KODAK_HOLDS, "data", "kodak", kodak_cache=cache)


class _Reporter:
    """A terminal reporter that keeps the lines it is given (sections marked ``== title``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append(f"== {title}")

    def write_line(self, line: str) -> None:
        self.lines.extend(line.splitlines())


@pytest.fixture
def study_table_lines(monkeypatch: pytest.MonkeyPatch):
    """``lines(summaries)``: what the bench's study-table section writes for these case
    summaries (case id -> summary, as the quality pass collects them)."""
    from bench import conftest as bench_conftest

    def lines(summaries: dict) -> list[str]:
        reporter = _Reporter()
        monkeypatch.setattr(bench_conftest, "_SUMMARY", summaries)
        bench_conftest._write_study_tables(reporter)
        return reporter.lines

    return lines
