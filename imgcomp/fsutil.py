"""The one atomic file writer: write a temporary file beside the target, then rename it over.

A reader sees the old file or the complete new one, never a torn one: the temporary file lives
in the target's folder (same file system, so ``os.replace`` is atomic), is flushed to disk before
the rename, gets the permissions a normally created file would have (``mkstemp`` makes it
owner-only) and is removed when writing fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "replace_atomically",
    "temp_file_beside",
]


def temp_file_beside(dest: Path, suffix: str = ".tmp") -> Path:
    """An empty new file next to ``dest`` (same file system, so ``os.replace`` is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def replace_atomically(tmp: Path, dest: Path) -> Path:
    """Flush ``tmp`` to disk, give it the permissions of a normally created file (temporary
    files are owner-only), then move it onto ``dest``."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)
    return dest


@contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``dest`` to write; it replaces ``dest`` when the block
    ends normally and is removed when the block raises (``dest`` then stays as it was).

    The folder of ``dest`` is created if needed.
    """
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file_beside(target, suffix)
    try:
        yield tmp
        replace_atomically(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)
