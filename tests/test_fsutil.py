"""The one atomic writer: complete files or none, normal permissions, nothing left behind."""

from __future__ import annotations

import os

import pytest

from imgcomp.baselines import BaselineStore, Tolerance
from imgcomp.evaluate import ImageResult
from imgcomp.fsutil import atomic_path, atomic_write_bytes, atomic_write_text


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_writes_create_folders_and_get_normal_permissions(tmp_path) -> None:
    dest = tmp_path / "a" / "b" / "out.bin"
    assert atomic_write_bytes(dest, b"\x00\x01") == dest
    assert dest.read_bytes() == b"\x00\x01"
    assert dest.stat().st_mode & 0o777 == _umask_mode()  # not mkstemp's 0600
    atomic_write_text(dest, "über\n")
    assert dest.read_text(encoding="utf-8") == "über\n"
    assert os.listdir(dest.parent) == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    dest = tmp_path / "out.json"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest, suffix=".part") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".part") and tmp.name.startswith(".")
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert dest.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_baselines_are_written_atomically(tmp_path) -> None:
    store = BaselineStore(tmp_path, "sample")
    result = ImageResult("img", 8, 8, 100, 12.5, 30.0, 0.9, 0.95, 0.01, 0.01)
    assert store.update("jpeg-q75", [result], Tolerance())
    files = os.listdir(store.dir)
    assert files == [store.path("jpeg-q75").name]  # no temporary left behind
    assert store.path("jpeg-q75").stat().st_mode & 0o777 == _umask_mode()
