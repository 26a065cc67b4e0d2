"""Unstructured L1 (magnitude) pruning of the convolution weights of a model's components.

What is pruned: the ``weight`` of every ``nn.Conv2d`` and ``nn.ConvTranspose2d`` inside the selected
components, the modules the model's family names for each (Ballé: ``encoder`` = g_a, ``decoder`` =
g_s, ``entropy`` = h_a and h_s and the densities). Biases, GDN's beta/gamma and the densities'
parameters are never pruned: they are a small fraction of the weights and the codec's numerics
(normalisation, probability tables) depend on them directly.

Ratios are ABSOLUTE targets: after pruning with ratio ``r`` a layer (scope ``"layer"``) holds at
least ``round(r * numel)`` zeros - the weights already zero count, so pruning 0.3 then 0.5 leaves
50% zeros, not 65% (torch.nn.utils.prune's containers would prune a fraction of what is left). A
layer that already has more zeros than the target is left as it is (nothing is un-pruned).
``round`` is Python's (half to even), the same count torch.nn.utils.prune uses.

Scopes: ``"layer"`` zeroes the ``round(r * numel)`` smallest-|w| weights of every layer;
``"global"`` ranks the weights of all the pruned layers of ONE component together and zeroes the
``round(r * total)`` smallest, so each component keeps its own ratio while layers inside it may
end up with different sparsities. Ties in |w| break by position (layer order, then flat index),
so the result is deterministic. This is done directly with a stable sort of |w| rather than
torch.nn.utils.prune, whose topk gives no tie-breaking guarantee and whose repeated calls compose
relatively; the result is the same plain weights with zeros, with no masks or hooks left (masks
from an earlier torch.nn.utils.prune are folded in first).

Storage: :attr:`LayerSparsity.sparse_bytes` is the size of a simple sparse format - a packed
bitmask of the non-zero positions (``ceil(numel / 8)`` bytes) plus the non-zero values as float32
- next to ``dense_bytes`` (float32, 4 bytes per weight); the sparse form wins beyond ~3% zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from imgcomp.errors import ImgcompError
from imgcomp.ops.base import check_ratios, component_modules, component_names

__all__ = [
    "PRUNABLE",
    "LayerSparsity",
    "PruneReport",
    "prunable_layers",
    "prune_unstructured",
    "sparsity",
]

#: Layer types whose weights are pruned.
PRUNABLE = (nn.Conv2d, nn.ConvTranspose2d)
SCOPES = ("layer", "global")


@dataclass(frozen=True)
class LayerSparsity:
    """One convolution's weight after pruning; ``ratio`` is the target applied (0: untouched)."""

    name: str
    component: str
    numel: int
    zeros: int
    ratio: float = 0.0

    @property
    def sparsity(self) -> float:
        """Fraction of the weight's elements that are zero."""
        return self.zeros / self.numel if self.numel else 0.0

    @property
    def dense_bytes(self) -> int:
        """float32 storage of the weight."""
        return 4 * self.numel

    @property
    def sparse_bytes(self) -> int:
        """Packed bitmask of non-zero positions plus the non-zero values as float32."""
        return math.ceil(self.numel / 8) + 4 * (self.numel - self.zeros)


@dataclass(frozen=True)
class PruneReport:
    """Every convolution weight of the model after pruning, by layer, component and in total."""

    layers: tuple[LayerSparsity, ...]
    scope: str = "layer"
    ratios: dict[str, float] = field(default_factory=dict)
    #: every component of the model's family, in table order (those without layers included)
    components: tuple[str, ...] = ()

    def _sum(self, attr: str, component: str | None = None) -> int:
        return sum(
            getattr(layer, attr)
            for layer in self.layers
            if component is None or layer.component == component
        )

    @property
    def component_sparsity(self) -> dict[str, float]:
        """Component -> fraction of its convolution weights that are zero (0.0 if it has none)."""
        out = {}
        for comp in self.components or dict.fromkeys(layer.component for layer in self.layers):
            n = self._sum("numel", comp)
            out[comp] = self._sum("zeros", comp) / n if n else 0.0
        return out

    @property
    def total_sparsity(self) -> float:
        """Fraction of all convolution weights that are zero."""
        n = self._sum("numel")
        return self._sum("zeros") / n if n else 0.0

    @property
    def sparse_bytes(self) -> int:
        """Bitmask + float32 non-zero storage of all the convolution weights."""
        return self._sum("sparse_bytes")

    @property
    def dense_bytes(self) -> int:
        """float32 storage of all the convolution weights."""
        return self._sum("dense_bytes")


def _components(model: nn.Module) -> Mapping[str, list[nn.Module]]:
    """The model's modules by component, as its family declares them."""
    return component_modules(model)


def prunable_layers(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(qualified name, component, layer) of every Conv2d/ConvTranspose2d, in module order."""
    names = {id(m): n for n, m in model.named_modules()}
    out = []
    for comp, modules in _components(model).items():
        for module in modules:
            prefix = names.get(id(module), "")
            for sub_name, sub in module.named_modules():
                if isinstance(sub, PRUNABLE):
                    name = f"{prefix}.{sub_name}" if prefix and sub_name else prefix or sub_name
                    out.append((name, comp, sub))
    return out


def _zeros(w: Tensor) -> int:
    return w.numel() - int(torch.count_nonzero(w))


def _prune_smallest(weights: list[Tensor], k: int) -> None:
    """Zero the ``k`` smallest |w| over ``weights`` taken together (ties: earlier position)."""
    if k <= 0 or k <= sum(_zeros(w) for w in weights):
        return  # absolute target already met: nothing to do, nothing un-pruned
    flat = torch.cat([w.detach().abs().reshape(-1).float() for w in weights])
    order = torch.sort(flat, stable=True).indices[:k]
    drop = torch.zeros(flat.numel(), dtype=torch.bool)
    drop[order] = True
    start = 0
    with torch.no_grad():
        for w in weights:
            n = w.numel()
            w.masked_fill_(drop[start : start + n].view(w.shape), 0)
            start += n


def prune_unstructured(
    model: nn.Module, ratios: Mapping[str, float], scope: str = "layer"
) -> PruneReport:
    """Zero the smallest-magnitude conv weights of the selected components IN PLACE.

    ``ratios``: component -> absolute target sparsity in [0, 1); components missing or at 0 are
    not touched. ``scope``: ``"layer"`` (each layer reaches the ratio) or ``"global"`` (one
    ranking per component). Work on a copy (``imgcomp.ops.base.copy_model``), not a codec's model.
    """
    components = component_names(model)
    targets = check_ratios(ratios, components)
    if scope not in SCOPES:
        raise ImgcompError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    layers = prunable_layers(model)
    for _, comp, layer in layers:
        if targets.get(comp, 0.0) > 0 and torch_prune.is_pruned(layer):
            for hook in list(layer._forward_pre_hooks.values()):
                if isinstance(hook, torch_prune.BasePruningMethod):
                    torch_prune.remove(layer, hook._tensor_name)
    for comp, r in targets.items():
        if r == 0.0:
            continue
        weights = [layer.weight for _, c, layer in layers if c == comp]
        if scope == "layer":
            for w in weights:
                _prune_smallest([w], round(r * w.numel()))
        elif weights:
            _prune_smallest(weights, round(r * sum(w.numel() for w in weights)))
    report = tuple(
        LayerSparsity(name, c, layer.weight.numel(), _zeros(layer.weight), targets.get(c, 0.0))
        for name, c, layer in layers
    )
    return PruneReport(report, scope, targets, components)


def sparsity(model: nn.Module) -> dict[str, float]:
    """Zero fraction of the conv weights per component and ``"total"`` (what pruning targets)."""
    report = PruneReport(
        tuple(
            LayerSparsity(name, comp, layer.weight.numel(), _zeros(layer.weight))
            for name, comp, layer in prunable_layers(model)
        ),
        components=component_names(model),
    )
    return {**report.component_sparsity, "total": report.total_sparsity}
