"""Training objectives and the one optimiser step that every training path runs.

An :class:`Objective` names what a model is trained for: its ``forward`` (the training-mode pass)
and its ``loss`` (a scalar plus named metrics). :func:`train_step` is the single step shared by
``imgcomp.train`` and the recovery fine-tuning of structured pruning: the main step (gradient
clipping included), then, when the model has auxiliary parameters (the entropy models' quantiles),
their step on ``model.aux_loss()``. ``OBJECTIVES`` maps a config's ``objective`` name to its class:
the objectives the families declare (:attr:`imgcomp.families.spec.FamilySpec.objectives`; Ballé's
``rd``, CompressAI's rate-distortion loss, lives in :mod:`imgcomp.families.balle.objective`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from imgcomp.registry import get_family, list_families

__all__ = [
    "OBJECTIVES",
    "Objective",
    "Optimizers",
    "adversary_parameters",
    "known_objectives",
    "make_objective",
    "make_optimizers",
    "objective_args",
    "psnr_from_mse",
    "scheduled",
    "split_parameters",
    "train_step",
]


@runtime_checkable
class Objective(Protocol):
    """What a model is trained for: a name, its parameters (dataclass fields), forward and loss.

    ``loss`` returns the scalar to minimise and named float32 scalar metrics (logged, averaged);
    ``derived`` turns averaged metrics into further log fields; ``progress_keys`` are the fields
    the progress bar shows besides the loss.
    """

    name: ClassVar[str]
    progress_keys: ClassVar[tuple[str, ...]]

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        """Training-mode forward pass of ``model`` on the batch ``x``."""
        ...

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, metrics)`` of the forward output ``out`` for the batch ``x``."""
        ...

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        """Log fields computed from the averaged metrics (e.g. PSNR from MSE)."""
        ...


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error over [0, 1] values (inf for 0)."""
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def known_objectives() -> dict[str, type]:
    """Objective name -> class: those every registered family declares
    (:attr:`imgcomp.families.spec.FamilySpec.objectives`; Ballé: ``rd``)."""
    out: dict[str, type] = {}
    for family in map(get_family, list_families()):
        out.update(family.objectives)
    return out


class _KnownObjectives(Mapping[str, type]):
    """A read-only live view of :func:`known_objectives` (the engine defines no objective: the
    families declare them, and the registry loads them at the first lookup)."""

    def __getitem__(self, name: str) -> type:
        return known_objectives()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(known_objectives())

    def __len__(self) -> int:
        return len(known_objectives())

    def __repr__(self) -> str:
        return f"OBJECTIVES({known_objectives()!r})"


#: Objective name (a TrainConfig's ``objective``) -> its class, as the families declare them.
OBJECTIVES: Mapping[str, type] = _KnownObjectives()


def make_objective(name: str, args: Mapping[str, Any] | None = None) -> Objective:
    """The objective ``name`` built with ``args``; ValueError for an unknown name or argument."""
    known = known_objectives()
    cls = known.get(name)
    if cls is None:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(sorted(known))}")
    args = dict(args or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(args) - fields)
    if unknown:
        raise ValueError(f"unknown arguments of objective {name!r}: {', '.join(map(str, unknown))}")
    return cls(**args)


def objective_args(objective: Objective) -> dict[str, Any]:
    """The parameters of ``objective`` as a plain dict (what a config stores)."""
    return dataclasses.asdict(objective)  # type: ignore[call-overload]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(main, aux)`` parameters: the model's own split where it declares one
    (``main_parameters``, ``aux_parameters``), else all are main."""
    main = model.main_parameters() if hasattr(model, "main_parameters") else model.parameters()
    aux = model.aux_parameters() if hasattr(model, "aux_parameters") else []
    return list(main), list(aux)


def adversary_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the model's adversary (a GAN's discriminator), if it declares one."""
    return list(model.adversary_parameters()) if hasattr(model, "adversary_parameters") else []


@dataclass
class Optimizers:
    """The main optimiser (and the parameters it clips), the auxiliary one and the adversary's
    (a discriminator's), each only when the model has such parameters."""

    main: torch.optim.Optimizer
    main_params: list[nn.Parameter]
    aux: torch.optim.Optimizer | None = None
    adversary: torch.optim.Optimizer | None = None
    adversary_params: list[nn.Parameter] = dataclasses.field(default_factory=list)


def make_optimizers(
    model: nn.Module, lr: float, aux_lr: float, fused: bool | None = None
) -> Optimizers:
    """Adam over the main parameters, and over the auxiliary and adversary ones where the model
    has some (the adversary at the main learning rate, as HiFiC's discriminator)."""
    main_params, aux_params = split_parameters(model)
    adv_params = adversary_parameters(model)
    main = torch.optim.Adam(main_params, lr=lr, fused=fused)
    aux = torch.optim.Adam(aux_params, lr=aux_lr, fused=fused) if aux_params else None
    adv = torch.optim.Adam(adv_params, lr=lr, fused=fused) if adv_params else None
    return Optimizers(main, main_params, aux, adv, adv_params)


def scheduled(objective: Objective, step: int, steps: int) -> Objective:
    """The objective in force at the 0-based ``step`` of ``steps``: its ``at(step, steps)`` for
    staged objectives (HiFiC's warm-up, then GAN), else the objective itself."""
    at = getattr(objective, "at", None)
    return at(step, steps) if at is not None else objective


def train_step(
    model: nn.Module,
    optimizers: Optimizers,
    x: Tensor,
    objective: Objective,
    clip: float,
    amp: bool = False,
) -> dict[str, Tensor]:
    """One optimiser step on the batch ``x``: main (gradients clipped to ``clip``; 0: not
    clipped), then aux, then the adversary's, when the objective has an ``adversary_loss``
    (a discriminator trained on the same batch, on the detached reconstruction).

    Returns ``{"loss", *metrics, "aux", "adversary"}`` (``aux`` only with an auxiliary
    optimiser, ``adversary`` only with an adversary step), detached and on the device: no
    synchronisation here. The caller seeds the step's noise.
    """
    opt = optimizers.main
    opt.zero_grad(set_to_none=True)
    out = objective.forward(model, x, amp=amp)
    loss, metrics = objective.loss(x, out)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(optimizers.main_params, clip)
    opt.step()
    stats = {"loss": loss.detach(), **{k: v.detach() for k, v in metrics.items()}}
    if optimizers.aux is not None:
        optimizers.aux.zero_grad(set_to_none=True)
        aux = model.aux_loss()
        aux.backward()
        optimizers.aux.step()
        stats["aux"] = aux.detach()
    adversary_loss = getattr(objective, "adversary_loss", None)
    if optimizers.adversary is not None and adversary_loss is not None:
        optimizers.adversary.zero_grad(set_to_none=True)
        d_loss = adversary_loss(model, x, out, amp=amp)
        d_loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(optimizers.adversary_params, clip)
        optimizers.adversary.step()
        stats["adversary"] = d_loss.detach()
    return stats
