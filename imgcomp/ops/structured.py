"""Structured pruning: remove whole channels of the Ballé/Minnen models, so they really shrink.

torch-pruning's ``DependencyGraph`` finds which layers share a channel index; custom pruners teach
it GDN/IGDN (``beta`` [C], ``gamma`` [C, C] sliced on both axes) and the factorized density
(every per-channel parameter, ``quantiles`` included). The dependency rules live in
:func:`channel_groups` (which groups exist, which components each touches) and
:func:`_coupling_forward` (the data flow torch-pruning traces):

============  =====================================  ============================================
group         root (producer, output channels)       also sliced
============  =====================================  ============================================
encoder x3    ``g_a.0``, ``g_a.2``, ``g_a.4`` (N)    its GDN, the next conv's input channels
decoder x3    ``g_s.0``, ``g_s.2``, ``g_s.4`` (N)    its IGDN, the next deconv's input channels
entropy x4    ``h_a.0``, ``h_a.2``, ``h_s.0``,       the next layer's input channels
              ``h_s.2`` (hyperpriors only)
entropy (z)   ``h_a.4`` (N, hyperpriors)             ``z_prior`` density, ``h_s.0`` input
latent (y)    ``g_a.6`` (M)                          ``g_s.0`` and ``h_a.0`` inputs; ``h_s.4``
                                                     outputs (mean-scale: channel i in both the
                                                     scales and the means half); ``y_prior``
============  =====================================  ============================================

Ratios are given per component (``encoder``, ``decoder``, ``entropy``). A group is pruned only
when *every* component it touches is selected, at the smallest of their ratios: the latent width
M couples encoder, decoder and entropy model, so it shrinks only when all three are pruned, by the
smallest of the three ratios; every other group belongs to one component. So a component that is
not selected (or has ratio 0) is never touched. The factorized model's entropy component is just
``y_prior``: on its own it has nothing to prune. Each group keeps ``max(1, round((1 - r) * C))``
channels, those with the largest L1 (or L2) norm of the root's output filters (a
``ConvTranspose2d`` keeps its output channels in weight dim 1), measured on the unpruned model.
``importance="activation"`` ranks instead by each channel's contribution to the layers that read
it, ``E|input_j| * ||W[:, j]||_1`` summed over those layers, with input statistics from
calibration images. Trained codecs spread their filter norms evenly, so the filter norm alone
picks poorly: shipped mbt2018-mean q3, decoder pruned by 0.3, no fine-tuning, kodim01-04 mean
PSNR 11.9 dB with L1, 19.3 dB with activation (unpruned 28.0). :func:`recover` fine-tunes.

``round_to`` rounds each kept width down to a multiple (torch-pruning's rule), trading a little
more pruning for widths the kernels run at full vector width: on the 2-core AVX-512 CPU the
shipped q3 model pruned by 0.3 everywhere decodes in 0.65x of the unpruned time with 44 / 64
channels (``round_to=4``) against 0.69-0.71x with the exact 45 / 67, at the same Kodak SSIM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn

from imgcomp.errors import ImgcompError
from imgcomp.nn.balle import BalleModel, FactorizedPrior
from imgcomp.nn.density import FactorizedDensity
from imgcomp.nn.determinism import single_cpu_thread
from imgcomp.nn.gdn import GDN
from imgcomp.ops.base import COMPONENTS, check_ratios
from imgcomp.registry import family_of

__all__ = [
    "IMPORTANCES",
    "ChannelGroup",
    "ContributionImportance",
    "DensityPruner",
    "GDNPruner",
    "GroupPruning",
    "LayerWidth",
    "RecoverResult",
    "StructuredReport",
    "channel_groups",
    "check_round_to",
    "prune_structured",
    "recover",
]

#: Importance criteria: norm (p) of each output channel's filter in the group's root layer, or
#: ``activation`` (data-driven, needs calibration images; see the module docstring).
IMPORTANCES: dict[str, int | None] = {"l1": 1, "l2": 2, "activation": None}


# -- custom pruners for torch-pruning ----------------------------------------------------------
def _keep_index(channels: int, idxs: Sequence[int], device: torch.device) -> Tensor:
    drop = set(int(i) for i in idxs)
    return torch.tensor([i for i in range(channels) if i not in drop], device=device)


class GDNPruner(tp.pruner.function.BasePruningFunc):
    """Removes channels from GDN/IGDN: ``beta[keep]`` and ``gamma[keep][:, keep]``.

    GDN maps channel i to channel i, so pruning its input prunes its output (intra-layer rule).
    """

    TARGET_MODULES = (GDN,)

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = _keep_index(layer.channels, idxs, layer.beta.device)
        layer.beta = nn.Parameter(layer.beta.data[keep].clone())
        layer.gamma = nn.Parameter(layer.gamma.data[keep][:, keep].clone())
        layer.channels = int(keep.numel())
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.channels

    get_in_channels = get_out_channels


class DensityPruner(tp.pruner.function.BasePruningFunc):
    """Removes channels from a FactorizedDensity: every per-channel parameter, in dim 0."""

    TARGET_MODULES = (FactorizedDensity,)

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = _keep_index(layer.channels, idxs, layer.quantiles.device)
        for plist in (layer.matrices, layer.biases, layer.factors):
            for k in range(len(plist)):
                plist[k] = nn.Parameter(plist[k].data[keep].clone())
        layer.quantiles = nn.Parameter(layer.quantiles.data[keep].clone())
        layer.channels = int(keep.numel())
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.channels

    get_in_channels = get_out_channels


_CUSTOM_PRUNERS = {GDN: GDNPruner(), FactorizedDensity: DensityPruner()}


# -- dependency rules --------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelGroup:
    """A set of coupled channels: the output channels of ``root`` and all that consume them."""

    root: str
    components: tuple[str, ...]

    def ratio(self, ratios: Mapping[str, float]) -> float | None:
        """The group's pruning ratio: smallest ratio of its components; None unless all given."""
        if not all(c in ratios for c in self.components):
            return None
        return min(float(ratios[c]) for c in self.components)


def channel_groups(model: BalleModel) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (see the module docstring's table)."""
    groups = [ChannelGroup(f"g_a.{i}", ("encoder",)) for i in (0, 2, 4)]
    groups += [ChannelGroup(f"g_s.{i}", ("decoder",)) for i in (0, 2, 4)]
    if not isinstance(model, FactorizedPrior):
        groups += [ChannelGroup(f"h_a.{i}", ("entropy",)) for i in (0, 2, 4)]  # h_a.4 makes z
        groups += [ChannelGroup(f"h_s.{i}", ("entropy",)) for i in (0, 2)]
    groups.append(ChannelGroup("g_a.6", COMPONENTS))  # the latent y
    return groups


def _coupling_forward(model: BalleModel, x: Tensor) -> Tensor:
    """The data flow torch-pruning traces (eval mode): transforms, densities and y's coupling.

    y channel i is coded with ``scales[:, i]`` (and ``means[:, i]``): an elementwise coupling,
    written here with each chunk of h_s's output used exactly once - torch-pruning maps the
    uses of a ``chunk`` to chunk positions and mis-indexes a chunk that is used twice, as the
    Gaussian conditional does with the means.
    """
    y = model.analysis(x)
    if isinstance(model, FactorizedPrior):
        y_hat, _ = model.y_prior(y, training=False)
        return model.synthesis(y_hat)
    z_hat, _ = model.z_prior(model.hyper_analysis(y), training=False)
    scales, means = model.hyper_synthesis(z_hat)
    y_hat = y * scales if means is None else (y - means) * scales
    return model.synthesis(y_hat)


def _dependency_graph(model: BalleModel) -> tp.DependencyGraph:
    f = model.downsampling_factor
    device = next(model.parameters()).device
    x = torch.rand(1, 3, f, f, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode(False), torch.enable_grad():
        return tp.DependencyGraph().build_dependency(
            model,
            example_inputs=x,
            forward_fn=_coupling_forward,
            customized_pruners=_CUSTOM_PRUNERS,
            verbose=False,
        )


def _owners(model: BalleModel) -> dict[nn.Module, str]:
    """Module -> component that holds it."""
    owner = {}
    for name, modules in model.components.items():
        for module in modules:
            for sub in module.modules():
                owner[sub] = name
    return owner


class ContributionImportance(tp.importance.Importance):
    """Channel j of a group scores ``sum over its readers of E|input_j| * ||W[:, j]||_1``.

    The mean absolute inputs of every conv / deconv are recorded once, on ``calibration``
    images passed through the model in eval mode (quantized latents, as the codec runs it).
    """

    def __init__(self, model: BalleModel, calibration: Tensor, batch: int = 4) -> None:
        self.mean_abs: dict[nn.Module, Tensor] = {}
        sums: dict[nn.Module, Tensor] = {}

        def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            v = inputs[0].detach().abs().mean((2, 3)).sum(0)
            sums[module] = sums[module] + v if module in sums else v

        convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        hooks = [m.register_forward_pre_hook(record) for m in convs]
        try:
            with torch.no_grad():
                for x in calibration.split(batch):
                    model.synthesis(model.quantize_latents(x)["y_hat"])
        finally:
            for h in hooks:
                h.remove()
        n = calibration.size(0)
        self.mean_abs = {m: v / n for m, v in sums.items()}

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> Tensor:
        n = len(group[0].idxs)
        scores = torch.zeros(n, dtype=torch.float64)
        for item in group:
            layer = item.dep.target.module
            if item.dep.handler != tp.prune_conv_in_channels or layer not in self.mean_abs:
                continue
            w = layer.weight.detach().abs().double()
            per_input = w.sum((1, 2, 3)) if layer.transposed else w.sum((0, 2, 3))
            local = (self.mean_abs[layer].double().cpu() * per_input.cpu())[item.idxs]
            scores.scatter_add_(0, torch.tensor(item.root_idxs), local)
        return scores


# -- report ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerWidth:
    """Channel counts of one layer (conv, deconv, GDN or density) before and after pruning."""

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
class GroupPruning:
    """One pruned channel group: its root, components, ratio and the channels removed."""

    root: str
    components: tuple[str, ...]
    ratio: float
    channels_before: int
    channels_after: int
    removed: tuple[int, ...]


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


def _widths(model: nn.Module) -> dict[str, tuple[str, int, int]]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            out[name] = (type(m).__name__, m.in_channels, m.out_channels)
        elif isinstance(m, GDN):
            out[name] = ("IGDN" if m.inverse else "GDN", m.channels, m.channels)
        elif isinstance(m, FactorizedDensity):
            out[name] = ("FactorizedDensity", m.channels, m.channels)
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


def prune_structured(
    model: BalleModel,
    ratios: Mapping[str, float],
    importance: str = "l1",
    calibration: Tensor | None = None,
    round_to: int | None = None,
) -> StructuredReport:
    """Remove the least important output channels of ``model``'s channel groups, in place.

    ``model`` is modified (pass a copy, e.g. :func:`imgcomp.ops.base.copy_model`). ``ratios``
    maps components (encoder, decoder, entropy) to the fraction of channels to remove; see the
    module docstring for the groups and the rule coupling them. Afterwards ``model.M`` is the
    latent width and ``model.N`` the hyper-latent width (hyperpriors; what the codec's stream
    layout uses) or the widest transform layer (factorized); the report has every layer's width.
    ``calibration`` (images [B,3,H,W] in [0, 1], sides multiples of the model's downsampling
    factor; never the evaluation set) is required by ``importance="activation"`` only.
    ``round_to`` rounds every kept width down to a multiple of it (see :func:`_kept`).
    """
    if not isinstance(model, BalleModel):
        return prune_declared(model, ratios, importance, calibration, round_to)
    ratios = check_ratios(ratios)
    round_to = check_round_to(round_to)
    if importance not in IMPORTANCES:
        raise ImgcompError(f"unknown importance {importance!r}; use one of {sorted(IMPORTANCES)}")
    if importance == "activation":
        _check_calibration(model, calibration)
    widths_before, params_before = _widths(model), _param_count(model)
    config_before = dict(model.config)
    modules = dict(model.named_modules())
    plan = [(g, g.ratio(ratios)) for g in channel_groups(model)]
    plan = [(g, r) for g, r in plan if r is not None and r > 0]
    for group, _ in plan:
        if type(modules.get(group.root)) not in (nn.Conv2d, nn.ConvTranspose2d):
            raise ImgcompError(
                f"{group.root} is not a float conv layer; apply structured pruning before "
                "ops that replace layers (e.g. quantization)"
            )
    done: list[GroupPruning] = []
    if plan:
        was_training = model.training
        scorer = _scorer(model, importance, calibration)
        graph = _dependency_graph(model)
        owner = _owners(model)
        chosen = []
        for group, ratio in plan:  # importance on the unpruned model: independent of the order
            root = modules[group.root]
            fn = graph.get_pruner_of_module(root).prune_out_channels
            channels = root.out_channels
            full = graph.get_pruning_group(root, fn, list(range(channels)))
            _check_coupling(full, group, owner)
            scores = scorer(full)
            n_drop = channels - _kept(channels, ratio, round_to)
            drop = sorted(torch.argsort(scores, stable=True)[:n_drop].tolist())
            chosen.append((group, ratio, root, fn, channels, drop))
        for group, ratio, root, fn, channels, drop in chosen:
            if drop:
                graph.get_pruning_group(root, fn, drop).prune(record_history=False)
            done.append(
                GroupPruning(
                    group.root, group.components, ratio, channels, channels - len(drop), tuple(drop)
                )
            )
        model.train(was_training)
        _update_config(model)
    widths_after = _widths(model)
    layers = tuple(
        LayerWidth(name, kind, cin, widths_after[name][1], cout, widths_after[name][2])
        for name, (kind, cin, cout) in widths_before.items()
    )
    return StructuredReport(
        arch=model.arch,
        ratios=ratios,
        importance=importance,
        round_to=round_to,
        groups=tuple(done),
        layers=layers,
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
        raise ImgcompError(f"the {family.name} family declares no channel groups to prune")
    ratios = check_ratios(ratios, family.component_names)
    round_to = check_round_to(round_to)
    if importance not in IMPORTANCES:
        raise ImgcompError(f"unknown importance {importance!r}; use one of {sorted(IMPORTANCES)}")
    if importance == "activation":
        raise ImgcompError(
            f"importance='activation' is implemented for the Ballé family; use l1 or l2 for "
            f"{family.name}"
        )
    params = dict(model.named_parameters())
    widths_before, params_before = _widths(model), _param_count(model)
    config_before = dict(model.config)
    plan = []
    for group in family.channel_groups(model):
        ratio = ChannelGroup(group.name, group.components).ratio(ratios)
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
    widths_after = _widths(model)
    return StructuredReport(
        arch=str(model.config.get("arch", family.name)),
        ratios=ratios,
        importance=importance,
        round_to=round_to,
        groups=tuple(done),
        layers=tuple(
            LayerWidth(name, kind, cin, widths_after[name][1], cout, widths_after[name][2])
            for name, (kind, cin, cout) in widths_before.items()
        ),
        params_before=params_before,
        params_after=_param_count(model),
        config_before=config_before,
        config_after=dict(model.config),
    )


def _check_calibration(model: BalleModel, calibration: Tensor | None) -> None:
    if not isinstance(calibration, Tensor) or not calibration.is_floating_point():
        raise ImgcompError("importance='activation' needs calibration images: a float tensor")
    model.check_input(calibration)  # ImageError (an ImgcompError) unless [B,3,H,W], H,W % f == 0
    if calibration.size(0) == 0:
        raise ImgcompError("calibration holds no images")


def _scorer(
    model: BalleModel, importance: str, calibration: Tensor | None
) -> tp.importance.Importance:
    if importance == "activation":
        assert calibration is not None
        device = next(model.parameters()).device
        return ContributionImportance(model, calibration.to(device, torch.float32))
    return tp.importance.MagnitudeImportance(
        p=IMPORTANCES[importance], normalizer=None, group_reduction="first"
    )


def _check_coupling(group: tp.Group, spec: ChannelGroup, owner: dict[nn.Module, str]) -> None:
    """Refuse a traced group that reaches a component its rule does not list."""
    reached = {owner[dep.target.module] for dep, _ in group if dep.target.module in owner}
    if not reached <= set(spec.components):
        raise ImgcompError(
            f"channels of {spec.root} reach {sorted(reached)}, expected {list(spec.components)}"
        )


def _update_config(model: BalleModel) -> None:
    """Keep ``model.N`` / ``model.M`` equal to the widths the codec reads (see prune_structured)."""
    model.M = int(model.g_a[-1].out_channels)
    if isinstance(model, FactorizedPrior):
        model.N = max(int(m.out_channels) for m in (*model.g_a[:-1:2], *model.g_s[:-1:2]))
    else:
        model.N = int(model.h_a[-1].out_channels)


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
) -> RecoverResult:
    """Fine-tune a pruned ``model`` in place with the training objective, then refit quantiles.

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
    opts = objectives.make_optimizers(model, lr=lr, aux_lr=1e-3)
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
            aux_final = fit_quantiles(model, steps=quantile_steps)
    finally:
        model.eval().to(home)
    q = max(1, steps // 4)
    first = torch.tensor(history[:q]).mean(0).tolist()
    last = torch.tensor(history[-q:]).mean(0).tolist()
    if not all(map(math.isfinite, last[:2])):
        raise ImgcompError(f"recovery diverged (loss {last[0]})")
    return RecoverResult(steps, first[0], last[0], last[1], last[2], aux_final)
