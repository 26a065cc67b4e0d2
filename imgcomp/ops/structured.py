"""Structured pruning: remove whole channels of a model, so it really shrinks.

A model's family declares how (:class:`~imgcomp.families.spec.FamilySpec`): its channel groups
(``channel_groups``: units sliced out of named parameters, the RNN's and HiFiC's), which
:func:`prune_declared` ranks and cuts here, or a pruner of its own (``structured_prune``: the
Ballé family's traces its couplings with torch-pruning, :mod:`imgcomp.families.balle.structured`).
:func:`prune_structured` dispatches by that declaration, checks the arguments and writes the
:class:`StructuredReport`.

Ratios are given per component (Ballé: ``encoder``, ``decoder``, ``entropy``). A group is pruned
only when *every* component it touches is selected, at the smallest of their ratios
(:func:`~imgcomp.families.spec.group_ratio`; Ballé: the latent width M couples all three), so a
component that is not selected (or has ratio 0) is never touched. Each group keeps
``max(1, round((1 - r) * C))`` channels (:func:`_kept`), those with the largest L1 (or L2) norm
of their filters, measured on the unpruned model; ``importance="activation"`` (a family's own
pruner only: Ballé) ranks by each channel's contribution to the layers that read it, with input
statistics from calibration images. :func:`recover` fine-tunes.

``round_to`` rounds each kept width down to a multiple (torch-pruning's rule), trading a little
more pruning for widths the kernels run at full vector width (Ballé's measurements: its module
docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from imgcomp.errors import ImgcompError
from imgcomp.families.spec import FamilySpec, GroupPruning, group_ratio
from imgcomp.nn.determinism import single_cpu_thread
from imgcomp.ops.base import check_ratios
from imgcomp.registry import family_of

__all__ = [
    "IMPORTANCES",
    "GroupPruning",
    "LayerWidth",
    "RecoverResult",
    "StructuredReport",
    "check_round_to",
    "prune_declared",
    "prune_structured",
    "recover",
]

#: Importance criteria: norm (p) of each output channel's filter in the group's root layer, or
#: ``activation`` (data-driven, needs calibration images; see the module docstring).
IMPORTANCES: dict[str, int | None] = {"l1": 1, "l2": 2, "activation": None}


# -- report ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerWidth:
    """Channel counts of one layer before and after pruning: a conv or deconv, or a module the
    family's ``layer_width`` gives a row (Ballé: GDN, densities)."""

    name: str
    kind: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int

    @property
    def changed(self) -> bool:
        return (self.in_before, self.out_before) != (self.in_after, self.out_after)


@dataclass(frozen=True)
class StructuredReport:
    """What :func:`prune_structured` did: groups pruned, per-layer widths, parameter counts."""

    arch: str
    ratios: dict[str, float]
    importance: str
    groups: tuple[GroupPruning, ...]
    layers: tuple[LayerWidth, ...]
    params_before: int
    params_after: int
    config_before: dict[str, Any]
    config_after: dict[str, Any]
    round_to: int | None = None

    @property
    def param_fraction(self) -> float:
        """``params_after / params_before``."""
        return self.params_after / self.params_before

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types (for benchmark records)."""
        out = asdict(self)
        out["param_fraction"] = self.param_fraction
        return out

    def summary(self) -> str:
        """Readable table of the changed layers and the parameter counts."""
        lines = [f"{'layer':<10} {'kind':<18} {'in':>11} {'out':>11}"]
        for w in self.layers:
            if w.changed:
                cin, cout = f"{w.in_before}->{w.in_after}", f"{w.out_before}->{w.out_after}"
                lines.append(f"{w.name:<10} {w.kind:<18} {cin:>11} {cout:>11}")
        lines.append(
            f"params {self.params_before} -> {self.params_after} ({self.param_fraction:.1%}); "
            f"config {self.config_before} -> {self.config_after}"
        )
        return "\n".join(lines)


def _widths(
    model: nn.Module, layer_width: Callable[[nn.Module], tuple[str, int, int] | None] | None
) -> dict[str, tuple[str, int, int]]:
    """``(kind, in, out)`` of every conv and of the modules the family's ``layer_width`` names."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            out[name] = (type(m).__name__, m.in_channels, m.out_channels)
        elif layer_width is not None and (row := layer_width(m)) is not None:
            out[name] = row
    return out


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- pruning -----------------------------------------------------------------------------------
def _kept(channels: int, ratio: float, round_to: int | None = None) -> int:
    """Channels a group keeps: ``round((1 - ratio) * channels)`` (at least 1), then, with
    ``round_to``, rounded down to a multiple of it (torch-pruning's rule; a count already below
    ``round_to`` stays), so the achieved ratio is never below the requested one."""
    kept = max(1, round((1.0 - ratio) * channels))
    if round_to and kept >= round_to:
        kept -= kept % round_to
    return kept


def check_round_to(round_to: object) -> int | None:
    """``round_to`` as a positive int, or None; ImgcompError for anything else."""
    if round_to is None:
        return None
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ImgcompError(f"round_to must be a positive integer or None, got {round_to!r}")
    return None if round_to == 1 else int(round_to)


def _check_importance(importance: object) -> None:
    if importance not in IMPORTANCES:
        raise ImgcompError(f"unknown importance {importance!r}; use one of {sorted(IMPORTANCES)}")


def prune_structured(
    model: nn.Module,
    ratios: Mapping[str, float],
    importance: str = "l1",
    calibration: Tensor | None = None,
    round_to: int | None = None,
) -> StructuredReport:
    """Remove the least important output channels of ``model``'s channel groups, in place.

    ``model`` is modified (pass a copy, e.g. :func:`imgcomp.ops.base.copy_model`). ``ratios``
    maps components of the model's family to the fraction of channels to remove; see the module
    docstring for the rule coupling them. The family's declaration says how: its
    ``channel_groups`` (:func:`prune_declared`), else its own ``structured_prune`` (Ballé's;
    afterwards ``model.M`` is the latent width and ``model.N`` the hyper-latent or widest
    transform width). The report has every layer's width. ``calibration`` (images [B,3,H,W]
    in [0, 1], sides multiples of the model's downsampling factor; never the evaluation set)
    is required by ``importance="activation"`` only. ``round_to`` rounds every kept width down
    to a multiple of it (see :func:`_kept`).
    """
    family = family_of(model)
    if family.channel_groups is not None or family.structured_prune is None:
        return prune_declared(model, ratios, importance, calibration, round_to)
    ratios = check_ratios(ratios, family.component_names)
    round_to = check_round_to(round_to)
    _check_importance(importance)
    before = _snapshot(model, family)
    done = family.structured_prune(
        model, ratios, importance, calibration, lambda c, r: _kept(c, r, round_to)
    )
    return _report(model, family, before, ratios, importance, round_to, done)


#: What a report compares: every layer's ``(kind, in, out)``, the parameter count, the config.
_Snapshot = tuple[dict[str, tuple[str, int, int]], int, dict[str, Any]]


def _snapshot(model: nn.Module, family: FamilySpec) -> _Snapshot:
    return _widths(model, family.layer_width), _param_count(model), dict(model.config)


def _report(
    model: nn.Module,
    family: FamilySpec,
    before: _Snapshot,
    ratios: dict[str, float],
    importance: str,
    round_to: int | None,
    groups: Sequence[GroupPruning],
) -> StructuredReport:
    widths_before, params_before, config_before = before
    widths_after = _widths(model, family.layer_width)
    return StructuredReport(
        arch=str(model.config.get("arch", family.name)),
        ratios=ratios,
        importance=importance,
        round_to=round_to,
        groups=tuple(groups),
        layers=tuple(
            LayerWidth(name, kind, cin, widths_after[name][1], cout, widths_after[name][2])
            for name, (kind, cin, cout) in widths_before.items()
        ),
        params_before=params_before,
        params_after=_param_count(model),
        config_before=config_before,
        config_after=dict(model.config),
    )


def prune_declared(
    model: nn.Module,
    ratios: Mapping[str, float],
    importance: str = "l1",
    calibration: Tensor | None = None,
    round_to: int | None = None,
) -> StructuredReport:
    """Structured pruning of a family that declares its channel groups (``channel_groups``):
    each group keeps its units with the largest L1 (L2) norm over all its slices, ranked on
    the unpruned model; then every slice is cut and the family's ``after_resize`` runs."""
    family = family_of(model)
    if family.channel_groups is None:
        raise ImgcompError(
            f"the {family.name} family declares no channel groups to prune (nor a structured "
            "pruner of its own)"
        )
    ratios = check_ratios(ratios, family.component_names)
    round_to = check_round_to(round_to)
    _check_importance(importance)
    if importance == "activation":
        raise ImgcompError(
            f"importance='activation' is implemented for the Ballé family; use l1 or l2 for "
            f"{family.name}"
        )
    params = dict(model.named_parameters())
    before = _snapshot(model, family)
    plan = []
    for group in family.channel_groups(model):
        ratio = group_ratio(group.components, ratios)
        if ratio is None or ratio <= 0:
            continue
        for sl in group.slices:
            p = params.get(sl.param)
            if p is None or type(p) is not nn.Parameter or not p.is_floating_point():
                raise ImgcompError(
                    f"{sl.param} is not a float parameter; apply structured pruning before "
                    "ops that replace layers (e.g. quantization)"
                )
            if len(sl.indices(range(group.units))) != p.shape[sl.dim]:
                raise ImgcompError(f"{sl.param} dim {sl.dim} does not hold {group.name}'s units")
        p_norm = IMPORTANCES[importance]
        with torch.no_grad():
            scores = torch.zeros(group.units, dtype=torch.float64)
            for sl in group.slices:
                w = params[sl.param].detach().double().abs() ** p_norm
                for u in range(group.units):
                    idx = torch.tensor(sl.indices([u]))
                    scores[u] += w.index_select(sl.dim, idx).sum()
        # round_to counts channels: a unit of a block of b channels (before a pixel shuffle)
        # rounds to multiples of round_to / b units
        block = group.slices[0].block
        unit_round = max(1, round_to // block) if round_to else None
        n_drop = group.units - _kept(group.units, ratio, unit_round)
        drop = sorted(torch.argsort(scores, stable=True)[:n_drop].tolist())
        plan.append((group, ratio, drop))
    modules = dict(model.named_modules())
    done = []
    with torch.no_grad():
        for group, ratio, drop in plan:
            keep = [u for u in range(group.units) if u not in set(drop)]
            for sl in group.slices:
                owner, _, attr = sl.param.rpartition(".")
                module = modules[owner]
                old = getattr(module, attr)
                idx = torch.tensor(sl.indices(keep), device=old.device)
                setattr(module, attr, nn.Parameter(old.data.index_select(sl.dim, idx).clone()))
            done.append(
                GroupPruning(
                    group.name, group.components, ratio, group.units, len(keep), tuple(drop)
                )
            )
    for module in model.modules():  # conv attributes from the sliced weights
        if isinstance(module, nn.ConvTranspose2d):
            module.in_channels = int(module.weight.shape[0])
            module.out_channels = int(module.weight.shape[1]) * module.groups
        elif isinstance(module, nn.Conv2d):
            module.out_channels = int(module.weight.shape[0])
            module.in_channels = int(module.weight.shape[1]) * module.groups
    if family.after_resize is not None:
        family.after_resize(model)
    return _report(model, family, before, ratios, importance, round_to, done)


# -- recovery fine-tuning ----------------------------------------------------------------------
@dataclass(frozen=True)
class RecoverResult:
    """Mean loss / MSE / bpp over the first and the last quarter of the recovery steps."""

    steps: int
    first_loss: float
    last_loss: float
    last_mse: float
    last_bpp: float
    aux_loss: float


def recover(
    model: nn.Module,
    steps: int,
    lmbda: float | None,
    data_dir: str | Path | None,
    batch_size: int | None = None,
    patch_size: int | None = None,
    lr: float | None = None,
    device: str = "cpu",
    seed: int = 0,
    quantile_steps: int = 1000,
    objective_args: Mapping[str, Any] | None = None,
    teacher: nn.Module | None = None,
    train_only: Sequence[str] | None = None,
) -> RecoverResult:
    """Fine-tune a pruned ``model`` in place with the training objective, then refit quantiles.

    With a ``teacher`` (the model before pruning, see :func:`imgcomp.ops.distill.frozen_teacher`)
    the objective's distortion target is the teacher's reconstruction, not the image
    (:class:`imgcomp.ops.distill.Distilled`). ``train_only`` (qualified module prefixes) limits
    the fine-tuning to those modules, the rest frozen (HiFiC's generator: the stream stays
    byte for byte the unpruned model's); the quantiles are then refitted only if a density
    lies among them.

    ``batch_size``, ``patch_size`` and ``lr`` default to the family's ``recovery`` settings
    (Ballé: 8 crops of 128 at 1e-4; the RNN: 32 of 32, its training recipe's crops).

    The step is :mod:`imgcomp.train`'s own (:func:`imgcomp.train.objectives.train_step`: Adam,
    the ``rd`` objective, gradient clipping at 1, aux Adam for the quantiles) on random crops of
    the training set ``data_dir`` names (a spec of :func:`imgcomp.trainsets.load_training_set`;
    ``None``: the default set; never Kodak). Afterwards
    ``fit_quantiles`` runs ``quantile_steps`` steps so the coder's ranges follow the new
    densities; the model ends in eval mode on its original device. On the CPU it trains on one
    thread: multi-threaded float sums differ with the thread count and 300 steps amplify that
    (Kodak bpp +1.1% between 1 and 2 threads), while the result must not depend on the machine
    or on pytest-xdist (baselines are shared). A codec caches its coding
    tables and fingerprint: wrap the recovered model in a new one (``derive``).
    """
    from imgcomp.train import PatchSampler, fit_quantiles, objectives
    from imgcomp.train.data import step_seed
    from imgcomp.trainsets import load_training_set

    if (family := family_of(model)).objective not in objectives.known_objectives():  # HiFiC's
        raise ImgcompError(
            f"{family.name} has no training objective ({family.objective!r}) yet: "
            "no recovery fine-tuning; use recover_steps=0"
        )
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ImgcompError(f"steps must be a positive integer, got {steps!r}")
    family = family_of(model)
    batch_size = batch_size or int(family.recovery["batch_size"])
    patch_size = patch_size or int(family.recovery["patch_size"])
    lr = lr or float(family.recovery["lr"])
    args = dict(objective_args or {})
    if family.objective == "rd":
        if not (isinstance(lmbda, (int, float)) and math.isfinite(lmbda) and lmbda > 0):
            raise ImgcompError(f"lmbda must be a positive number, got {lmbda!r}")
        args["lmbda"] = lmbda
    if patch_size % model.downsampling_factor:
        raise ImgcompError(f"patch_size must be a multiple of {model.downsampling_factor}")
    home = next(model.parameters()).device
    dev = torch.device(device)
    sampler = PatchSampler.from_files(list(load_training_set(data_dir).files), patch_size, dev)
    model.to(dev).train()
    # the family's training objective (Ballé: rd, weighted by lmbda)
    objective = objectives.make_objective(family.objective, args)
    if teacher is not None:
        from imgcomp.ops.distill import Distilled

        objective = Distilled(objective, teacher.to(dev))
    frozen = _freeze_all_but(model, train_only) if train_only is not None else []
    # the densities' quantiles (the aux parameters): trained and refitted unless frozen
    aux_live = any(p.requires_grad for p in objectives.split_parameters(model)[1])
    refit = train_only is None or aux_live
    opts = objectives.make_optimizers(model, lr=lr, aux_lr=1e-3)
    if not aux_live:
        opts.aux = None
    history = []
    try:
        # the caller's RNG is left alone; each step's quantisation noise is seeded like training's
        with (
            torch.random.fork_rng(),
            torch.inference_mode(False),
            torch.enable_grad(),
            single_cpu_thread(dev),
        ):
            for step in range(steps):
                torch.manual_seed(step_seed(seed, step, 1))
                x = sampler.batch(seed, step, batch_size)
                stats = objectives.train_step(model, opts, x, objective, clip=1.0)
                history.append([float(stats.get(k, math.nan)) for k in ("loss", "mse", "bpp")])
            aux_final = fit_quantiles(model, steps=quantile_steps) if refit else math.nan
    finally:
        for param in frozen:
            param.requires_grad_(True)
        model.eval().to(home)
    q = max(1, steps // 4)
    first = torch.tensor(history[:q]).mean(0).tolist()
    last = torch.tensor(history[-q:]).mean(0).tolist()
    if not all(map(math.isfinite, last[:2])):
        raise ImgcompError(f"recovery diverged (loss {last[0]})")
    return RecoverResult(steps, first[0], last[0], last[1], last[2], aux_final)


def _freeze_all_but(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Parameter]:
    """Stop the gradients of every parameter outside the modules ``prefixes`` name; returns
    those it froze (to thaw afterwards)."""
    names = {n for n, _ in model.named_modules()}
    unknown = sorted(set(prefixes) - names)
    if unknown or not prefixes:
        raise ImgcompError(f"train_only names no modules of the model: {unknown or prefixes}")
    frozen = []
    for name, param in model.named_parameters():
        inside = any(name == p or name.startswith(p + ".") for p in prefixes)
        if not inside and param.requires_grad:
            param.requires_grad_(False)
            frozen.append(param)
    return frozen
