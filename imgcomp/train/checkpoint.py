"""Training checkpoints: plain dicts of tensors and JSON values, written atomically.

A checkpoint is read with ``torch.load(weights_only=True)``: anything that would need pickled
objects (code) is refused with CheckpointError, as is a dict that lacks the expected fields.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from imgcomp.checkpoints import load_plain
from imgcomp.errors import CheckpointError
from imgcomp.fsutil import atomic_path
from imgcomp.train.config import TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "read_checkpoint",
    "resolve_checkpoint",
    "write_checkpoint",
]

CHECKPOINT_FORMAT = "imgcomp.train.checkpoint/1"
CHECKPOINT_NAME = "checkpoint.pt"

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "step": int,
    "finished": bool,
    "elapsed": (int, float),
    "config": dict,
    "data_fingerprint": str,
    "num_images": int,
    "model": dict,
    "optimizer": dict,
    "aux_optimizer": dict,
}


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or ``path/checkpoint.pt`` when ``path`` is a run directory."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def write_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """``torch.save`` to ``path`` atomically (:mod:`imgcomp.fsutil`): never torn."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a training checkpoint (file or run directory) onto the CPU.

    The returned dict has every field of ``write_checkpoint``'s payload; ``config`` is a
    :class:`TrainConfig` (also from the flat layout of earlier versions); ``aux_optimizer`` is
    ``{}`` for a model without auxiliary parameters.
    """
    p = resolve_checkpoint(path)
    data = load_plain(p)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{os.fspath(p)!r} is not an imgcomp training checkpoint")
    for key, kind in _REQUIRED.items():
        value = data.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"checkpoint {os.fspath(p)!r}: field {key!r} is missing or bad")
    try:
        data["config"] = TrainConfig.from_dict(data["config"])
    except (ValueError, TypeError, KeyError) as exc:  # UnknownCodecError is a KeyError
        raise CheckpointError(f"checkpoint {os.fspath(p)!r}: bad config: {exc}") from None
    if data["step"] < 0:
        raise CheckpointError(f"checkpoint {os.fspath(p)!r}: negative step")
    return data
