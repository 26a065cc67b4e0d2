"""Progress bars on stderr with one rule for every long command (study, eval, train, report).

A bar is shown when stderr is a terminal, so CI logs and pipes stay clean; ``$IMGCOMP_PROGRESS``
forces it (``1``: on even into a log, ``0``: off); a command's ``--quiet`` (``quiet=True``)
turns it off whatever the rest says.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["ENV", "bar", "enabled"]

#: The variable that forces progress bars on (1) or off (0).
ENV = "IMGCOMP_PROGRESS"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def enabled(quiet: bool = False) -> bool:
    """Whether progress is shown: never with ``quiet``, else as ``$IMGCOMP_PROGRESS`` says,
    else when stderr is a terminal."""
    if quiet:
        return False
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in _ON:
        return True
    if forced in _OFF:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def bar(iterable: Iterable[Any] | None = None, *, quiet: bool = False, **options: Any):
    """A tqdm bar on stderr, shown as :func:`enabled` says (``options``: tqdm's: ``total``,
    ``desc``, ``unit``, ...)."""
    from tqdm import tqdm

    options.setdefault("file", sys.stderr)
    options.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not enabled(quiet), **options)
