"""The family protocol: what a model family declares once, so the engines never name its layers.

A :class:`FamilySpec` says which parts of a model play which role (:class:`Component`, with the
display names the study's tables use), which latent codec turns its latents into stream sections,
how images are padded before analysis, which modules quantization replaces, its training
objective, the checkpoint formats it loads, its architectures and its shipped weights. A family
registers its spec with :func:`imgcomp.registry.register_family`; engines look it up with
:func:`imgcomp.registry.family_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: the spec module imports no engine
    from torch import Tensor, nn

    from imgcomp.codecs.latent import LatentCodec

__all__ = [
    "INT8_FLOAT_POSITIONS",
    "ChannelSlice",
    "Component",
    "FamilySpec",
    "GroupPruning",
    "Padding",
    "PrunableGroup",
    "group_ratio",
]

#: Padding modes a codec may ask for (those of ``torch.nn.functional.pad``).
PAD_MODES = ("replicate", "reflect", "constant")
#: Where an ``int8_float_layers`` declaration points: a unit's first or last convolution (or,
#: besides these, a convolution's name relative to the unit).
INT8_FLOAT_POSITIONS = ("first", "last")


@dataclass(frozen=True)
class Component:
    """One role of a model: its name (op configs, case ids), its display name (the study's
    tables) and the qualified-name prefixes of the model's modules that make it up."""

    name: str
    display: str
    modules: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.modules:
            raise ValueError(f"component {self.name!r} needs a name and module prefixes")


@dataclass(frozen=True)
class Padding:
    """How an image is padded (bottom / right) before analysis: to multiples of ``multiple``."""

    multiple: int
    mode: str = "replicate"

    def __post_init__(self) -> None:
        if self.multiple < 1:
            raise ValueError(f"padding multiple must be positive, got {self.multiple}")
        if self.mode not in PAD_MODES:
            raise ValueError(f"padding mode must be one of {PAD_MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class ChannelSlice:
    """Where the channels of a :class:`PrunableGroup` live in one parameter: along ``dim``,
    unit ``u`` is the indices ``r * stride + u * block + b`` for ``r < repeats``, ``b < block``
    (a ConvLSTM's gates: ``repeats=4, stride=H``; channels before a 2x pixel shuffle:
    ``block=4``)."""

    param: str
    dim: int
    block: int = 1
    repeats: int = 1
    stride: int = 0

    def indices(self, units: Sequence[int]) -> list[int]:
        """The parameter indices of ``units``, in order."""
        return [
            r * self.stride + u * self.block + b
            for r in range(self.repeats)
            for u in units
            for b in range(self.block)
        ]


@dataclass(frozen=True)
class PrunableGroup:
    """Channels structured pruning removes together: ``units`` units, each sliced out of every
    parameter in ``slices``; owned by ``components`` (pruned only when all are selected, at the
    smallest of their ratios)."""

    name: str
    components: tuple[str, ...]
    units: int
    slices: tuple[ChannelSlice, ...]


def group_ratio(components: Sequence[str], ratios: Mapping[str, float]) -> float | None:
    """The pruning ratio of a group owned by ``components``: the smallest of their ratios;
    None unless every one of them is given (structured pruning's coupling rule)."""
    if not all(c in ratios for c in components):
        return None
    return min(float(ratios[c]) for c in components)


@dataclass(frozen=True)
class GroupPruning:
    """One pruned channel group (what a structured-pruning report lists, and a family's own
    ``structured_prune`` returns): its root, components, ratio and the channels removed."""

    root: str
    components: tuple[str, ...]
    ratio: float
    channels_before: int
    channels_after: int
    removed: tuple[int, ...]


@dataclass(frozen=True)
class FamilySpec:
    """A model family's declaration (see the module docstring).

    ``components`` maps role -> :class:`Component` in table order; ``model_types`` are the model
    classes of the family (:func:`imgcomp.registry.family_of` tells a model's family by them);
    ``latent`` and ``padding`` are read per model (architectures differ, e.g. in their
    downsampling); ``architectures`` maps names to builders of fresh models; ``shipped(name,
    quality)`` is the path of the shipped weights of a codec of the family.

    ``quant_units`` maps a role to the qualified names of the modules quantization replaces,
    each as one unit (a filter by name, as torchao's); modules named nowhere (e.g. entropy
    densities) stay float32 islands. ``int8_units`` are the modules int8's FX static
    quantization replaces, each a quantization unit or inside one (the RNN: single convolutions,
    its gates stay float; empty: the family has no int8 path yet). ``training`` says how
    ``imgcomp train`` builds the family's models (None: not trainable here) and ``objectives``
    are the objective classes the family adds by name (``objective`` is its default).
    """

    name: str
    components: Mapping[str, Component]
    model_types: tuple[type, ...]
    latent: Callable[[nn.Module], LatentCodec]
    padding: Callable[[nn.Module], Padding]
    objective: str
    checkpoint_formats: tuple[str, ...]
    architectures: Mapping[str, Callable[..., nn.Module]]
    shipped: Callable[[str, int], Path]
    quant_units: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    int8_units: tuple[str, ...] = ()
    #: a :class:`imgcomp.train.config.TrainFamily` (not imported: the spec sits below training)
    training: object | None = None
    #: module classes int8 keeps whole in float32 inside its units (HiFiC's ChannelNorm)
    int8_float_modules: tuple[type, ...] = ()
    #: the convolutions int8 runs on float32 activations by default (weights still int8), per
    #: int8 unit: position among the unit's convolutions (``"first"``, ``"last"``) or a
    #: convolution's name relative to the unit -> why
    #: (Ballé: those that read or write a latent); a caller's ``float_activations`` replaces it
    int8_float_layers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: per component, a note a quantization report carries when the component is selected
    #: (what stays float32 in it: Ballé's entropy densities)
    quant_notes: Mapping[str, str] = field(default_factory=dict)
    #: per component, a note the profile carries when the model has none of the component's
    #: MACs modules (Ballé's factorized prior: no hyper transforms)
    macs_notes: Mapping[str, str] = field(default_factory=dict)
    #: MACs (:mod:`imgcomp.ops.profile`): a chain of single-input modules ``(module, input,
    #: output)`` from the image ``"x"`` (Ballé), or a ``coding_pass(model, x, codec_params)``
    #: that runs what encoding computes; MACs are counted per component module either way.
    #: int8 calibrates its units on the inputs they get in the ``coding_pass`` (Ballé's: the
    #: quantized latents and the synthesis, so that the decoder's units see theirs too).
    macs_chain: tuple[tuple[str, str, str | None], ...] = ()
    coding_pass: Callable[[nn.Module, Any, Mapping[str, Any]], object] | None = None
    #: structured pruning by declaration: the model's channel groups, and what updates the
    #: model's own widths (attributes, config) after the engine sliced its parameters
    channel_groups: Callable[[nn.Module], list[PrunableGroup]] | None = None
    after_resize: Callable[[nn.Module], None] | None = None
    #: structured pruning by the family's own pruner, where no channel slices describe the
    #: couplings (Ballé: torch-pruning traces them through GDN and the densities); used when
    #: ``channel_groups`` is None. ``structured_prune(model, ratios, importance, calibration,
    #: kept)`` removes channels in place and updates the model's widths (attributes, config);
    #: the engine has checked ``ratios`` (component -> ratio), ``importance`` (``l1``, ``l2``,
    #: ``activation``) and ``round_to``, and ``kept(channels, ratio)`` is its rule for the
    #: width a group keeps. It returns a :class:`GroupPruning` per group it pruned; the engine
    #: writes the report (:mod:`imgcomp.ops.structured`).
    structured_prune: (
        Callable[
            [nn.Module, Mapping[str, float], str, Tensor | None, Callable[[int, float], int]],
            Sequence[GroupPruning],
        ]
        | None
    ) = None
    #: the row a structured-pruning report gives a module other than a convolution (whose
    #: widths it lists anyway): ``(kind, in channels, out channels)``, or None for no row
    #: (Ballé: GDN / IGDN and the factorized densities)
    layer_width: Callable[[nn.Module], tuple[str, int, int] | None] | None = None
    #: recovery fine-tuning after structured pruning: ``batch_size``, ``patch_size``, ``lr``
    recovery: Mapping[str, Any] = field(
        default_factory=lambda: {"batch_size": 8, "patch_size": 128, "lr": 1e-4}
    )
    #: the components the study's tables give a pruning-ratio column (and its grids prune), in
    #: table order; empty: every component (the Toderici RNN's Table 1: encoder and decoder)
    study_components: tuple[str, ...] = ()
    #: the components the study's structured row prunes; empty: the table components (HiFiC:
    #: the generator alone, as its target says; the latent spans all three components)
    structured_components: tuple[str, ...] = ()
    #: a fresh model from its ``model.config`` (saved codecs rebuild with it; None: the
    #: training builder)
    rebuild: Callable[[Mapping[str, Any]], nn.Module] | None = None
    #: for a config that does not name every width (Ballé: ``N`` / ``M``, while structured
    #: pruning sets each layer's): ``resize_saved(model, conv_shape, saved)`` gives the rebuilt
    #: float model the widths of the saved tensors ``saved``; ``conv_shape(name, layer)`` is
    #: ``(in, out)`` channels of conv / transposed conv ``name`` as saved, in whichever form
    #: the ops left it (:mod:`imgcomp.saved` knows those). Values need only be plausible (int8
    #: calibrates on them); the saved ones replace them. None: ``rebuild`` gives every width.
    resize_saved: (
        Callable[[nn.Module, Callable[[str, nn.Module], tuple[int, int]], Mapping[str, Any]], None]
        | None
    ) = None
    #: the components whose outputs choose the entropy coder's tables, so that encoder and
    #: decoder must compute them bit for bit alike: another runtime (the ONNX backend) runs
    #: their transforms on one thread, as the torch path does (Ballé: the hyper transforms)
    coding_components: tuple[str, ...] = ()
    #: a small seeded codec of the family: ``(codec name, params of create_codec)`` (what the
    #: family contract tests and smoke runs build; seconds on a CPU)
    example: tuple[str, Mapping[str, Any]] | None = None
    #: the codec class of the family's models (``(model, name, params, device=, ops=)``);
    #: None: :class:`imgcomp.codecs.learned.LearnedCodec`
    codec: Callable[..., Any] | None = None
    objectives: Mapping[str, type] = field(default_factory=dict)
    #: format -> ``loader(path, arch)``, the model of a checkpoint written by another
    #: implementation, for the formats of ``checkpoint_formats`` that the model zoo
    #: (:mod:`imgcomp.zoo`) loads (Ballé: ``compressai``); ``imgcomp`` (our exports) is
    #: :func:`imgcomp.train.load_weights` for every family. A family with its own ``codec``
    #: loads its formats there (the RNN's and HiFiC's ``original``).
    checkpoint_loaders: Mapping[str, Callable[[Any, str], nn.Module]] = field(default_factory=dict)
    #: latent pixels of context each output pixel of the synthesis reads beyond its own latent
    #: (its receptive field, rounded up), declared only where tiles of the latent grid with this
    #: overlap give the whole-image synthesis bit for bit (:mod:`imgcomp.codecs.tiling`, tests
    #: in ``tests/test_tiling.py``); 0: the synthesis always runs on the whole image
    synthesis_halo: int = 0
    #: the same for the analysis: latent pixels of input each latent reads beyond its own
    #: (:func:`imgcomp.codecs.tiling.analyze`); 0: the analysis always runs on the whole image
    analysis_halo: int = 0

    def __post_init__(self) -> None:
        for role, component in self.components.items():
            if role != component.name:
                raise ValueError(f"component {component.name!r} is listed under {role!r}")
        if not self.components:
            raise ValueError(f"family {self.name!r} declares no components")
        if self.synthesis_halo < 0 or self.analysis_halo < 0:
            raise ValueError(
                f"halos must be non-negative, got {self.synthesis_halo}, {self.analysis_halo}"
            )
        for role in self.quant_units:
            if role not in self.components:
                raise ValueError(f"quantization units of {role!r}, which is no component")
        units = {n for names in self.quant_units.values() for n in names}
        unknown = [
            n for n in self.int8_units if not any(n == u or n.startswith(u + ".") for u in units)
        ]
        if unknown:
            raise ValueError(f"int8 units {sorted(unknown)} lie in no quantization unit")
        for unit, where in self.int8_float_layers.items():
            if unit not in self.int8_units:
                raise ValueError(f"int8 float layers of {unit!r}, which is no int8 unit")
            if not all(isinstance(w, str) and w for w in where):
                raise ValueError(
                    f"int8 float layers are given by {INT8_FLOAT_POSITIONS} or layer names"
                )
        loaders = sorted(set(self.checkpoint_loaders) - set(self.checkpoint_formats))
        if loaders:
            raise ValueError(f"checkpoint loaders of {loaders}, which are no checkpoint formats")
        if not set(self.coding_components) <= set(self.components):
            raise ValueError(f"coding components {self.coding_components} are no components")
        for notes in (self.quant_notes, self.macs_notes):
            if not set(notes) <= set(self.components):
                raise ValueError(f"notes of {sorted(set(notes) - set(self.components))}")

    @property
    def table_components(self) -> tuple[str, ...]:
        """The study's ratio columns: ``study_components``, else every component."""
        return self.study_components or self.component_names

    @property
    def component_names(self) -> tuple[str, ...]:
        """The roles in table order (what op configs and case ids are keyed by)."""
        return tuple(self.components)

    def owns(self, model: object) -> bool:
        """Whether ``model`` is one of this family's models."""
        return isinstance(model, self.model_types)
