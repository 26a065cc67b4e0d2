"""Safe checkpoint reading: plain tensors and containers only; a file carrying code is refused."""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from imgcomp.errors import CheckpointError


def checkpoint_path(path: object) -> str:
    """``path`` as a string, or CheckpointError when it is no file path (a number, ``b""``...)."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"a checkpoint is a file path, got {path!r}")
    where = os.fspath(path)
    if not isinstance(where, str) or not where:
        raise CheckpointError(f"a checkpoint is a non-empty file path, got {path!r}")
    return where


def load_plain(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU, every failure as a CheckpointError."""
    where = checkpoint_path(path)
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


def load_state_strict(module: torch.nn.Module, state: object, where: str, what: str) -> None:
    """Load ``state`` into ``module`` strictly, as float32: a dict of tensors with exactly the
    module's keys, each of its shape, floating point and finite; anything else is a
    :class:`CheckpointError` naming ``where`` and ``what`` the file should hold."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{where!r} is not a state dict of tensors ({what})")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{where!r} does not hold {what}: missing keys {missing}, unexpected keys {extra}"
        )
    for key, ref in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape) or not got.is_floating_point():
            raise CheckpointError(
                f"{where!r}: {key} is {got.dtype} {list(got.shape)}, {what} has "
                f"{ref.dtype} {list(ref.shape)}"
            )
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{where!r}: {key} holds NaN or infinite values")
    module.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
