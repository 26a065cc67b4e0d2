"""Training configuration: one JSON-serialisable dataclass that names a run completely.

A config names the model ``family`` with its ``model`` arguments (Ballé: ``arch``, ``N``, ``M``)
and the ``objective`` with its ``objective_args`` (``rd``: ``lmbda``). ``TrainConfig.to_dict()``
is what a checkpoint stores; ``TrainConfig.from_dict`` rebuilds it, also from the flat layout of
earlier versions (``arch``, ``N``, ``M``, ``lmbda`` at the top level: old checkpoints and the
``config`` of the shipped weights), and ``resume_mismatches`` says which fields forbid resuming a
checkpoint under a new config.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from imgcomp.registry import get_family, list_families
from imgcomp.train.objectives import Objective, make_objective, objective_args
from imgcomp.trainsets import default_training_spec

__all__ = [
    "GLOBAL_DEFAULTS",
    "RESUME_FREE_FIELDS",
    "TrainConfig",
    "TrainFamily",
    "check_float",
    "resume_mismatches",
    "train_families",
]

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
        "compile",
        "checkpoint_every",
        "log_every",
        "num_threads",
        "max_seconds",
        "stop_at",
        "progress",
    }
)


@dataclass(frozen=True)
class TrainFamily:
    """How training builds one family's model: its arguments (defaults, checks) and its builder.

    ``normalize`` returns the complete arguments (defaults filled, ValueError / UnknownCodecError
    when bad), ``build`` the freshly initialised model, ``multiple`` the patch side's divisor and
    ``defaults`` the family's training recipe (TrainConfig fields a config leaves unset),
    ``finalize(model, metadata)`` what export does to a trained model before writing it (e.g.
    fit the RNN's code model), returning metadata to add, ``min_patch`` the smallest patch side
    the model trains on and ``example`` the arguments of a tiny model (contract tests train it).

    Export reads two more: ``half_float32``, the module classes whose state a half (float16)
    export keeps in float32 (Ballé: its entropy densities, tiny, and they fix the coder's
    tables; none: every floating tensor is halved), and ``metadata_args(metadata)``, the model
    arguments an export's metadata gives at its top level, where the family wrote them before
    the ``config`` did (Ballé: ``arch``, ``N``, ``M``); None (or a hook returning None): the
    arguments are the ``config``'s ``model``.

    ``compile_modules`` names the submodules ``torch.compile`` pays off on (``--compile``;
    Ballé: its four transforms); empty: the family has none measured, and ``--compile`` refuses.
    """

    name: str
    normalize: Callable[[Mapping[str, Any]], dict[str, Any]]
    build: Callable[[Mapping[str, Any]], nn.Module]
    multiple: Callable[[Mapping[str, Any]], int]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    finalize: Callable[[nn.Module, Mapping[str, str]], dict[str, str]] | None = None
    min_patch: int = 1
    example: Mapping[str, Any] = field(default_factory=dict)
    half_float32: tuple[type[nn.Module], ...] = ()
    metadata_args: Callable[[Mapping[str, str]], dict[str, Any] | None] | None = None
    compile_modules: tuple[str, ...] = ()


#: Training defaults of every family (a family's ``TrainFamily.defaults`` override them).
GLOBAL_DEFAULTS: dict[str, Any] = {
    "steps": 100_000,
    "batch_size": 16,
    "patch_size": 256,
    "lr": 1e-4,
    "lr_drop_fraction": 0.1,
    "lr_drop_factor": 0.1,
    "lr_milestones": [],
    "lr_gamma": 0.5,
    "lr_schedule": "step",
    "warmup_steps": 0,
    "clip_max_norm": 1.0,
}

#: Learning-rate schedules: ``step`` (milestones, then the final drop) and ``cosine``.
LR_SCHEDULES = ("step", "cosine")
#: Where the ``cosine`` schedule ends, as a fraction of ``lr``, for every family (the ``step``
#: schedule's final drop, ``lr_drop_factor``, is a family's recipe: 1.0, none, for HiFiC and
#: the RNN, which would have made their cosine flat)
COSINE_FLOOR = 0.1

#: The top-level fields of the layout before ``family`` / ``model`` / ``objective``.
_FLAT_FIELDS = {"arch": "model", "N": "model", "M": "model", "lmbda": "objective_args"}
_NESTED_FIELDS = ("family", "model", "objective", "objective_args")


def train_families() -> dict[str, TrainFamily]:
    """Family name -> how training builds its model: every registered family that trains."""
    return {s.name: s.training for s in map(get_family, list_families()) if s.training}


def _train_family(name: object) -> TrainFamily:
    families = train_families()
    family = families.get(name) if isinstance(name, str) else None
    if family is None:
        known = ", ".join(sorted(families))
        raise ValueError(f"unknown model family {name!r}; known: {known}")
    return family


def _family_objective(name: str) -> str:
    return get_family(name).objective


@dataclass
class TrainConfig:
    """Everything a training run depends on: the family's model, the objective and the schedule.

    ``model`` holds the family's model arguments (Ballé: ``arch``, ``N``, ``M``; missing ones
    take their defaults), ``objective_args`` the objective's parameters (``rd``: ``lmbda``, with
    loss = lmbda * 255**2 * MSE + bpp as in CompressAI).

    Fields left None take the family's recipe (``TrainFamily.defaults``), else
    :data:`GLOBAL_DEFAULTS`; ``objective`` defaults to the family's. The learning rate is
    multiplied by ``lr_gamma`` at each of ``lr_milestones`` (fractions of ``steps``) and by
    ``lr_drop_factor`` for the last ``lr_drop_fraction`` of ``steps`` (``lr_schedule`` ``step``),
    or follows a cosine from ``lr`` down to ``lr *`` :data:`COSINE_FLOOR` at the last step
    (``cosine``, which fits any step budget); either starts with ``warmup_steps`` of linear
    warm-up (fresh optimiser moments on warm-started weights). ``clip_max_norm`` 0 turns gradient
    clipping off.
    ``max_seconds`` is a wall-clock budget for one ``train()`` call (checkpoint, then stop);
    ``stop_at`` stops at that step the same way (a run resumed later computes what one
    uninterrupted run would: how a recipe records where a run was stopped and continued).
    ``warm_start`` names weights (an export or a training checkpoint) a new run starts from, with
    fresh optimisers (the original HiFiC's ``warmstart``; also how a run continues in a session
    that lacks its run directory); an adversary absent from them starts fresh.
    ``channels_last`` and ``amp`` (bf16 autocast, rate terms kept in float32) apply on CUDA;
    ``compile`` runs the family's ``compile_modules`` through ``torch.compile`` (CPU or CUDA).
    """

    family: str = "balle"
    model: dict[str, Any] = field(default_factory=dict)
    objective: str | None = None
    objective_args: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    batch_size: int | None = None
    patch_size: int | None = None
    lr: float | None = None
    aux_lr: float = 1e-3
    lr_drop_fraction: float | None = None
    lr_drop_factor: float | None = None
    lr_milestones: list[float] | None = None
    lr_gamma: float | None = None
    lr_schedule: str | None = None
    warmup_steps: int | None = None
    clip_max_norm: float | None = None
    seed: int = 0
    warm_start: str | None = None
    data: str = field(default_factory=default_training_spec)
    out: str = "runs/train"
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = True
    compile: bool = False
    checkpoint_every: int = 1000
    log_every: int = 100
    num_threads: int | None = None
    max_seconds: float | None = None
    stop_at: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        family = _train_family(self.family)
        for name, value in {**GLOBAL_DEFAULTS, **family.defaults}.items():
            if getattr(self, name) is None:
                setattr(self, name, list(value) if isinstance(value, list) else value)
        if self.objective is None:
            self.objective = _family_objective(self.family)
        for name in ("model", "objective_args"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        self.model = family.normalize(self.model)
        if self.compile is True and not family.compile_modules:
            raise ValueError(f"compile: the {self.family} family declares no modules to compile")
        if not isinstance(self.objective, str):
            raise ValueError(f"objective must be a name, got {self.objective!r}")
        self.objective_args = objective_args(make_objective(self.objective, self.objective_args))
        positive = ("steps", "batch_size", "patch_size", "checkpoint_every", "log_every")
        for name in positive:
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, minimum=1)
        factor = family.multiple(self.model)
        if self.patch_size % factor:
            raise ValueError(
                f"patch_size must be a multiple of {factor} for {self.family} {self.model}"
            )
        if self.patch_size < family.min_patch:
            raise ValueError(f"patch_size must be at least {family.min_patch} for {self.family}")
        for name in ("lr", "aux_lr"):
            check_float(name, getattr(self, name), low=0.0, low_open=True)
        check_float("clip_max_norm", self.clip_max_norm, low=0.0)
        check_float("lr_gamma", self.lr_gamma, low=0.0, high=1.0, low_open=True)
        if not isinstance(self.lr_milestones, (list, tuple)):
            raise ValueError(f"lr_milestones must be a list, got {self.lr_milestones!r}")
        self.lr_milestones = [
            float(m) if isinstance(m, int) and not isinstance(m, bool) else m
            for m in self.lr_milestones
        ]
        for m in self.lr_milestones:
            check_float("each lr milestone", m, low=0.0, high=1.0, low_open=True)
        if list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing, got {self.lr_milestones}")
        check_float("lr_drop_fraction", self.lr_drop_fraction, low=0.0, high=1.0)
        check_float("lr_drop_factor", self.lr_drop_factor, low=0.0, high=1.0, low_open=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        _check_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.max_seconds is not None:
            check_float("max_seconds", self.max_seconds, low=0.0)
        if self.stop_at is not None:
            _check_int("stop_at", self.stop_at, 1)
        for name in ("amp", "channels_last", "compile", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.warm_start is not None:
            if isinstance(self.warm_start, os.PathLike):
                self.warm_start = os.fspath(self.warm_start)
            if not isinstance(self.warm_start, str) or not self.warm_start:
                raise ValueError(f"warm_start must be a path, got {self.warm_start!r}")
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
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`, also of the old flat layout; unknown keys: ValueError."""
        data = dict(data)
        flat = sorted(set(data) & set(_FLAT_FIELDS))
        if flat:  # written before family / model / objective existed: always a Ballé rd run
            nested = sorted(set(data) & set(_NESTED_FIELDS))
            if nested:
                raise ValueError(f"TrainConfig mixes the old fields {flat} with {nested}")
            data["family"], data["objective"] = "balle", "rd"
            data["model"], data["objective_args"] = {}, {}
            for key in flat:
                data[_FLAT_FIELDS[key]][key] = data.pop(key)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(map(str, unknown))}")
        return cls(**data)

    def make_objective(self) -> Objective:
        """The objective this run trains for, with its arguments."""
        return make_objective(self.objective, self.objective_args)

    def build_model(self) -> nn.Module:
        """A freshly initialised model of the family (seed torch first for reproducibility)."""
        return _train_family(self.family).build(self.model)

    def lr_at(self, step: int) -> float:
        """Main learning rate for the 0-based ``step`` under ``lr_schedule``, warm-up included."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.lr_schedule == "cosine":
            span = max(self.steps - 1 - self.warmup_steps, 1)
            t = min(max(step - self.warmup_steps, 0) / span, 1.0)
            floor = self.lr * COSINE_FLOOR
            return warm * (floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))
        lr = self.lr
        for m in self.lr_milestones:
            if step >= int(self.steps * m):
                lr *= self.lr_gamma
        drop_start = self.steps - int(self.steps * self.lr_drop_fraction)
        return warm * (lr * self.lr_drop_factor if step >= drop_start else lr)


def resume_mismatches(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Human-readable ``field: saved -> new`` for each field that forbids resuming.

    A difference inside ``model`` or ``objective_args`` names the argument (``model.N: 8 -> 16``).
    """
    out = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUME_FREE_FIELDS:
            continue
        old, cur = getattr(saved, f.name), getattr(new, f.name)
        if old == cur:
            continue
        if isinstance(old, dict) and isinstance(cur, dict):
            for key in sorted(set(old) | set(cur), key=str):
                a, b = old.get(key, "(unset)"), cur.get(key, "(unset)")
                if a != b:
                    out.append(f"{f.name}.{key}: {a!r} -> {b!r}")
        else:
            out.append(f"{f.name}: {old!r} -> {cur!r}")
    return out


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_float(
    name: str,
    value: object,
    low: float,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """ValueError naming ``name`` unless ``value`` is a real number (no bool, no NaN) within
    ``low`` (exclusive with ``low_open``) and ``high``: the check of configs and objectives."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = v == v and (v > low if low_open else v >= low) and (high is None or v <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
