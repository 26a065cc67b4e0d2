"""The Ballé family's structured pruning: whole channels of the Ballé / Minnen models removed,
so they really shrink (declared as :attr:`FamilySpec.structured_prune`; the engine,
:func:`imgcomp.ops.structured.prune_structured`, checks the arguments and writes the report).

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

The latent width M couples encoder, decoder and entropy model, so it shrinks only when all three
are pruned, by the smallest of the three ratios; every other group belongs to one component. The
factorized model's entropy component is just ``y_prior``: on its own it has nothing to prune.
Each group keeps the channels with the largest L1 (or L2) norm of the root's output filters (a
``ConvTranspose2d`` keeps its output channels in weight dim 1), measured on the unpruned model.
``importance="activation"`` ranks instead by each channel's contribution to the layers that read
it, ``E|input_j| * ||W[:, j]||_1`` summed over those layers, with input statistics from
calibration images. Trained codecs spread their filter norms evenly, so the filter norm alone
picks poorly: shipped mbt2018-mean q3, decoder pruned by 0.3, no fine-tuning, kodim01-04 mean
PSNR 11.9 dB with L1, 19.3 dB with activation (unpruned 28.0). Afterwards ``model.M`` is the
latent width and ``model.N`` the hyper-latent width (hyperpriors; what the codec's stream layout
uses) or the widest transform layer (factorized).

``round_to`` (the engine's width rule) on the 2-core AVX-512 CPU: the shipped q3 model pruned by
0.3 everywhere decodes in 0.65x of the unpruned time with 44 / 64 channels (``round_to=4``)
against 0.69-0.71x with the exact 45 / 67, at the same Kodak SSIM.

A saved pruned codec's config gives only N and M: :func:`resize_saved` gives the rebuilt model
every layer's width from the saved tensors (:attr:`FamilySpec.resize_saved`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import Tensor, nn

from imgcomp.errors import CheckpointError, ImgcompError
from imgcomp.families.balle.model import BalleModel, FactorizedPrior
from imgcomp.families.spec import GroupPruning, group_ratio
from imgcomp.nn.density import FactorizedDensity
from imgcomp.nn.gdn import GDN

__all__ = [
    "ChannelGroup",
    "ContributionImportance",
    "DensityPruner",
    "GDNPruner",
    "channel_groups",
    "layer_width",
    "prune_balle",
    "resize_saved",
]

#: The Ballé family's components (the latent group touches all three).
_COMPONENTS = ("encoder", "decoder", "entropy")

#: The norm (p) of each output channel's filter in the group's root layer, per importance; the
#: ``activation`` importance is :class:`ContributionImportance`.
_NORMS = {"l1": 1, "l2": 2}


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
        return group_ratio(self.components, ratios)


def channel_groups(model: BalleModel) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (see the module docstring's table)."""
    groups = [ChannelGroup(f"g_a.{i}", ("encoder",)) for i in (0, 2, 4)]
    groups += [ChannelGroup(f"g_s.{i}", ("decoder",)) for i in (0, 2, 4)]
    if not isinstance(model, FactorizedPrior):
        groups += [ChannelGroup(f"h_a.{i}", ("entropy",)) for i in (0, 2, 4)]  # h_a.4 makes z
        groups += [ChannelGroup(f"h_s.{i}", ("entropy",)) for i in (0, 2)]
    groups.append(ChannelGroup("g_a.6", _COMPONENTS))  # the latent y
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
    if importance not in _NORMS:
        raise ImgcompError(f"unknown importance {importance!r}; use one of {sorted(_NORMS)}")
    return tp.importance.MagnitudeImportance(
        p=_NORMS[importance], normalizer=None, group_reduction="first"
    )


def _check_coupling(group: tp.Group, spec: ChannelGroup, owner: dict[nn.Module, str]) -> None:
    """Refuse a traced group that reaches a component its rule does not list."""
    reached = {owner[dep.target.module] for dep, _ in group if dep.target.module in owner}
    if not reached <= set(spec.components):
        raise ImgcompError(
            f"channels of {spec.root} reach {sorted(reached)}, expected {list(spec.components)}"
        )


def _update_config(model: BalleModel) -> None:
    """Keep ``model.N`` / ``model.M`` equal to the widths the codec reads (module docstring)."""
    model.M = int(model.g_a[-1].out_channels)
    if isinstance(model, FactorizedPrior):
        model.N = max(int(m.out_channels) for m in (*model.g_a[:-1:2], *model.g_s[:-1:2]))
    else:
        model.N = int(model.h_a[-1].out_channels)


# -- the family's pruner -----------------------------------------------------------------------
def prune_balle(
    model: nn.Module,
    ratios: Mapping[str, float],
    importance: str,
    calibration: Tensor | None,
    kept: Callable[[int, float], int],
) -> list[GroupPruning]:
    """Remove, in place, the least important output channels of ``model``'s channel groups
    (:func:`channel_groups`; ``ratios`` and ``importance`` checked by the engine, ``kept`` its
    width rule), then update ``model.N`` / ``model.M``; one :class:`GroupPruning` per group.
    ``calibration`` (images [B,3,H,W] in [0, 1], sides multiples of the model's downsampling
    factor; never the evaluation set) is required by ``importance="activation"`` only."""
    assert isinstance(model, BalleModel)
    if importance == "activation":
        _check_calibration(model, calibration)
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
            n_drop = channels - kept(channels, ratio)
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
    return done


def layer_width(module: nn.Module) -> tuple[str, int, int] | None:
    """The report row of a GDN / IGDN or a factorized density (``(kind, in, out)``), else None."""
    if isinstance(module, GDN):
        return ("IGDN" if module.inverse else "GDN", module.channels, module.channels)
    if isinstance(module, FactorizedDensity):
        return ("FactorizedDensity", module.channels, module.channels)
    return None


# -- saved codecs ------------------------------------------------------------------------------
def _fit(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``t`` tiled then cropped to ``shape`` (same rank): plausible values for calibration."""
    reps = [-(-s // d) for s, d in zip(shape, t.shape, strict=True)]
    return t.repeat(*reps)[tuple(slice(0, s) for s in shape)].clone()


def resize_saved(
    model: nn.Module,
    conv_shape: Callable[[str, nn.Module], tuple[int, int]],
    saved: Mapping[str, Tensor],
) -> None:
    """Give every conv, GDN and density of a rebuilt ``model`` the channel counts of the saved
    state: convs from ``conv_shape(name, layer)`` (their saved ``(in, out)``), each GDN the
    width of the conv before it, each density its saved ``quantiles``' (CheckpointError if
    missing)."""
    for attr in ("g_a", "g_s", "h_a", "h_s"):
        seq = getattr(model, attr, None)
        if not isinstance(seq, nn.Sequential):
            continue
        width = None
        for idx, layer in seq.named_children():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                cin, cout = conv_shape(f"{attr}.{idx}", layer)
                w = layer.weight
                shape = (cin, cout) if isinstance(layer, nn.ConvTranspose2d) else (cout, cin)
                w.data = _fit(w.data, (*shape, *w.shape[2:]))
                if layer.bias is not None:
                    layer.bias.data = _fit(layer.bias.data, (cout,))
                layer.in_channels, layer.out_channels = cin, cout
                width = cout
            elif isinstance(layer, GDN) and width is not None:
                layer.beta.data = _fit(layer.beta.data, (width,))
                layer.gamma.data = _fit(layer.gamma.data, (width, width))
                layer.channels = width
    for name, density in model.named_modules():
        if isinstance(density, FactorizedDensity):
            q = saved.get(f"{name}.quantiles")
            if q is None or q.dim() != 3 or q.shape[0] < 1:
                raise CheckpointError(f"no valid saved quantiles for {name}")
            c = int(q.shape[0])
            for p in density.parameters():
                p.data = _fit(p.data, (c, *p.shape[1:]))
            density.channels = c
