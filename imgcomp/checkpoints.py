"""Safe checkpoint reading: plain tensors and containers only; a file carrying code is refused."""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from imgcomp.errors import CheckpointError


def load_plain(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU, every failure as a CheckpointError."""
    where = os.fspath(path)
    try:
        return torch.load(where, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {where!r}: it holds pickled objects other than tensors and "
            f"plain containers (possibly code); only weights_only checkpoints are accepted ({exc})"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {where!r}: {exc}") from None
    except Exception as exc:  # corrupt zip, truncated file, foreign format ...
        raise CheckpointError(
            f"unreadable checkpoint {where!r}: {type(exc).__name__}: {exc}"
        ) from None
