"""Training configuration: one JSON-serialisable dataclass that names a run completely.

``TrainConfig.to_dict()`` is what a checkpoint stores; ``TrainConfig.from_dict`` rebuilds it and
``resume_mismatches`` says which fields forbid resuming a checkpoint under a new config.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from imgcomp.errors import UnknownCodecError
from imgcomp.nn.balle import ARCHITECTURES
from imgcomp.trainsets import default_training_spec

__all__ = [
    "ARCH_ALIASES",
    "RESUME_FREE_FIELDS",
    "TrainConfig",
    "resolve_arch",
    "resume_mismatches",
]

#: Short names accepted wherever an architecture is named (canonical names are CompressAI's).
ARCH_ALIASES: dict[str, str] = {
    "factorized": "bmshj2018-factorized",
    "hyperprior": "bmshj2018-hyperprior",
    "scale-hyperprior": "bmshj2018-hyperprior",
    "mean-scale": "mbt2018-mean",
    "mean-scale-hyperprior": "mbt2018-mean",
}

#: Fields that may change between a checkpoint and the run resuming it: they do not change what
#: is computed (``steps`` may not drop below the checkpoint's step; ``data`` may move, but the
#: file list must stay the same, which the checkpoint's data fingerprint checks).
RESUME_FREE_FIELDS: frozenset[str] = frozenset(
    {
        "steps",
        "data",
        "out",
        "device",
        "channels_last",
        "checkpoint_every",
        "log_every",
        "num_threads",
        "max_seconds",
        "progress",
    }
)


def resolve_arch(name: str) -> str:
    """Canonical architecture name of ``name`` (a key of ARCHITECTURES or an alias)."""
    key = str(name).strip()
    key = ARCH_ALIASES.get(key.lower(), key)
    if key not in ARCHITECTURES:
        known = sorted(ARCHITECTURES) + sorted(ARCH_ALIASES)
        raise UnknownCodecError(f"unknown architecture {name!r}; known: {', '.join(known)}")
    return key


@dataclass
class TrainConfig:
    """Everything a training run depends on; loss = lmbda * 255**2 * MSE + bpp (CompressAI).

    The learning rate drops by ``lr_drop_factor`` for the last ``lr_drop_fraction`` of ``steps``.
    ``max_seconds`` is a wall-clock budget for one ``train()`` call (checkpoint, then stop).
    ``channels_last`` and ``amp`` (bf16 autocast, rate terms kept in float32) apply on CUDA.
    """

    arch: str = "mbt2018-mean"
    N: int = 128
    M: int = 192
    lmbda: float = 0.0067
    steps: int = 100_000
    batch_size: int = 16
    patch_size: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_drop_fraction: float = 0.1
    lr_drop_factor: float = 0.1
    clip_max_norm: float = 1.0
    seed: int = 0
    data: str = field(default_factory=default_training_spec)
    out: str = "runs/train"
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = True
    checkpoint_every: int = 1000
    log_every: int = 100
    num_threads: int | None = None
    max_seconds: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.arch = resolve_arch(self.arch)
        positive = ("N", "M", "steps", "batch_size", "patch_size", "checkpoint_every", "log_every")
        for name in positive:
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, minimum=1)
        factor = ARCHITECTURES[self.arch].downsampling_factor
        if self.patch_size % factor:
            raise ValueError(f"patch_size must be a multiple of {factor} for {self.arch}")
        for name in ("lmbda", "lr", "aux_lr", "clip_max_norm"):
            _check_float(name, getattr(self, name), low=0.0, low_open=True)
        _check_float("lr_drop_fraction", self.lr_drop_fraction, low=0.0, high=1.0)
        _check_float("lr_drop_factor", self.lr_drop_factor, low=0.0, high=1.0, low_open=True)
        if self.max_seconds is not None:
            _check_float("max_seconds", self.max_seconds, low=0.0)
        for name in ("amp", "channels_last", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("data", "out", "device"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
                setattr(self, name, value)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of JSON types (what checkpoints and exported metadata carry)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(map(str, unknown))}")
        return cls(**data)

    def lr_at(self, step: int) -> float:
        """Main learning rate for the 0-based ``step``: dropped in the last fraction of steps."""
        drop_start = self.steps - int(self.steps * self.lr_drop_fraction)
        return self.lr * self.lr_drop_factor if step >= drop_start else self.lr


def resume_mismatches(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Human-readable ``field: saved -> new`` for each field that forbids resuming."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUME_FREE_FIELDS:
            continue
        old, cur = getattr(saved, f.name), getattr(new, f.name)
        if old != cur:
            out.append(f"{f.name}: {old!r} -> {cur!r}")
    return out


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(
    name: str,
    value: object,
    low: float,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = v == v and (v > low if low_open else v >= low) and (high is None or v <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
