"""``quantize_model``: bf16, static int8 or K-bit weight-only quantization of a model's
quantization units, which its family declares per component (``FamilySpec.quant_units``; Ballé:
g_a for the encoder, g_s for the decoder, h_a/h_s for the entropy component, whose densities stay
float32). int8 quantizes only the family's ``int8_units``, the convolutions of its
``int8_float_layers`` on float32 activations, and calibrates on its ``coding_pass``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError, UnknownCodecError
from imgcomp.families.spec import FamilySpec
from imgcomp.ops.base import copy_model, derive, replace_submodule, require_learned
from imgcomp.ops.config import (
    MODES,
    Int8,
    QuantConfig,
    check_components,
    parse_quant_mode,
    quant_config,
)
from imgcomp.ops.quant.bf16 import Bf16Transform, to_bf16
from imgcomp.ops.quant.calibration import capture_inputs
from imgcomp.ops.quant.int8 import (
    DECONV_MODES,
    GDN_MODES,
    Int8Transform,
    float_layers,
    quantize_int8,
)
from imgcomp.ops.quant.report import LayerInfo, QuantReport, serialized_bytes
from imgcomp.ops.quant.weights import (
    check_bits,
    conv_layers,
    fake_quantize_weight,
    out_channels,
    packed_bytes,
)
from imgcomp.registry import family_of

__all__ = [
    "DEFAULT_COMPONENTS",
    "MODES",
    "packed_weight_bytes",
    "parse_mode",
    "quantize_codec",
    "quantize_model",
    "selected_transforms",
]

#: The Ballé family's components, every one quantized by default (a family's own names are the
#: default of a model of another family): the whole model shrinks (int8: about a quarter).
DEFAULT_COMPONENTS = ("encoder", "decoder", "entropy")

#: ``("bf16", None)``, ``("int8", None)`` or ``("w", K)`` of a mode name (the op config grammar's).
parse_mode = parse_quant_mode


def _family(model: object) -> FamilySpec:
    """The model's family; ImgcompError for a model of none (e.g. a bare layer)."""
    try:
        return family_of(model)  # type: ignore[arg-type]
    except UnknownCodecError:
        raise ImgcompError(
            "quantize_model needs a model of a registered family (e.g. a BalleModel), "
            f"got {type(model).__name__}"
        ) from None


def _components(model: nn.Module, components: object) -> tuple[str, ...]:
    """The selected components (None: all of the family's), each one of the family's."""
    known = _family(model).component_names
    return check_components(known if components is None else components, known)


def selected_transforms(
    model: nn.Module, components: Sequence[str] | None = None
) -> dict[str, nn.Module]:
    """Qualified name -> quantization unit (Ballé: g_a, g_s, h_a, h_s) of the selected components
    (None: all) that the model has (a factorized prior's entropy component has none)."""
    units = _family(model).quant_units
    named = dict(model.named_modules())
    return {
        name: named[name]
        for comp in _components(model, components)
        for name in units.get(comp, ())
        if name in named
    }


def quantize_model(
    model: nn.Module,
    mode: str,
    calibration: Sequence[np.ndarray] | None = None,
    components: Sequence[str] | None = None,
    *,
    deconv: str = "subpixel",
    gdn: str = "int8",
    float_activations: Sequence[str] | None = None,
) -> QuantReport:
    """Quantize, in place, the quantization units of ``model``'s selected components (None:
    every component of its family).

    ``mode``: ``"bf16"`` (bf16 channels_last inside a float32 NCHW interface), ``"int8"``
    (static FX post-training quantization calibrated on ``calibration``, uint8 (H, W, 3) training
    crops, see :func:`calibration_images`; ``deconv`` / ``gdn`` choose how transposed convs and
    GDN are quantized, see :mod:`imgcomp.ops.quant.int8`) or ``"w2"``..``"w8"`` (weight-only
    per-channel fake quantization, float32 kept). Call it on a copy: it replaces submodules.

    int8 runs the layers the family declares (``int8_float_layers``; Ballé: those that read or
    write a latent, g_a's last conv, g_s's first transposed conv, the first and last of h_a /
    h_s) on float32 activations, their weights still stored in int8: ``float_activations``
    replaces that choice with qualified layer names (e.g. ``["g_s.0"]``; ``[]`` makes every
    layer int8 throughout).
    """
    family = _family(model)
    kind, bits = parse_mode(mode)
    comps = _components(model, components)
    if deconv not in DECONV_MODES:
        raise ImgcompError(f"deconv must be one of {DECONV_MODES}, got {deconv!r}")
    if gdn not in GDN_MODES:
        raise ImgcompError(f"gdn must be one of {GDN_MODES}, got {gdn!r}")
    transforms = selected_transforms(model, comps)
    if kind == "int8":
        whole = set(transforms)
        transforms, foreign = _int8_units(model, family, transforms)
        if foreign:
            raise ImgcompError(
                f"int8 needs the family to declare its int8 units (FamilySpec.int8_units): "
                f"family {family.name!r} declares none in {', '.join(foreign)}; use bf16 or wK"
            )
    if float_activations is not None and kind != "int8":
        raise ImgcompError("float_activations applies to the int8 mode only")
    keep = _float_layers(family, transforms, float_activations) if kind == "int8" else {}
    for attr, m in transforms.items():
        if isinstance(m, (Bf16Transform, Int8Transform)):
            raise ImgcompError(f"{attr} is already quantized ({type(m).__name__})")
    notes = [family.quant_notes[c] for c in comps if c in family.quant_notes]
    if not transforms:
        notes.append("the selected components have no transforms to quantize")
    before = serialized_bytes(transforms.values())
    layers: list[LayerInfo] = []
    engine = None
    packed = None
    if kind == "bf16":
        for attr, m in transforms.items():
            wrapped, info = to_bf16(m, attr)
            replace_submodule(model, attr, wrapped)
            layers += info
    elif kind == "int8":
        if calibration is None or len(calibration) == 0:
            raise ImgcompError(
                "int8 needs calibration images (uint8 HxWx3 training crops); "
                "see imgcomp.ops.quant.calibration_images()"
            )
        if any(p.device.type != "cpu" for p in model.parameters()):
            raise ImgcompError("int8 quantization runs on the CPU; move the model there first")
        model.eval()
        run = None
        if family.coding_pass is not None:

            def run(x):  # the family's encode computation (the RNN: 4 iterations)
                return family.coding_pass(model, x, {"iterations": CALIBRATION_ITERATIONS})

        inputs = capture_inputs(model, transforms, calibration, run) if transforms else {}
        for attr, m in transforms.items():
            wrapped, info = quantize_int8(
                m,
                inputs[attr],
                attr,
                deconv=deconv,
                gdn=gdn,
                float_activations=keep.get(attr, {}),
                float_modules=family.int8_float_modules,
                channels_last_out=attr not in whole,  # a unit nested in float code
            )
            replace_submodule(model, attr, wrapped)
            layers += info
            engine = wrapped.engine
    else:
        assert bits is not None
        for attr, m in transforms.items():
            for name, layer in conv_layers(m, attr):
                layer.weight.data.copy_(fake_quantize_weight(layer, bits))
                layers.append(
                    LayerInfo(
                        name,
                        type(layer).__name__,
                        True,
                        f"{bits}-bit symmetric per-output-channel weights (float32 storage)",
                        weights=f"int{bits}",
                    )
                )
        packed = _packed_transforms(transforms.values(), bits)
    after = serialized_bytes(selected_transforms(model, comps).values())
    return QuantReport(mode, comps, layers, before, after, packed, engine, notes)


#: Iterations a progressive family's calibration pass runs (the RNN's study rate is 3).
CALIBRATION_ITERATIONS = 4


def _int8_units(
    model: nn.Module, family: FamilySpec, transforms: dict[str, nn.Module]
) -> tuple[dict[str, nn.Module], list[str]]:
    """The family's int8 units inside the selected quantization units, and the selected units
    that hold none (an error: the family has no int8 path for them)."""
    named = dict(model.named_modules())
    out: dict[str, nn.Module] = {}
    foreign = []
    for unit in transforms:
        inside = [
            n for n in family.int8_units if (n == unit or n.startswith(unit + ".")) and n in named
        ]
        if not inside:
            foreign.append(unit)
        out.update({n: named[n] for n in inside})
    return out, foreign


def _float_layers(
    family: FamilySpec, transforms: dict[str, nn.Module], names: Sequence[str] | None
) -> dict[str, dict[str, str]]:
    """Per transform: the layers on float32 activations and why (default: the family's
    ``int8_float_layers``)."""
    if names is None:
        declared = family.int8_float_layers
        return {attr: float_layers(m, declared.get(attr, {})) for attr, m in transforms.items()}
    if isinstance(names, str):
        names = [names]
    out: dict[str, dict[str, str]] = {attr: {} for attr in transforms}
    for name in names:
        attr, _, rest = str(name).partition(".")
        if attr not in transforms or not rest:
            raise ImgcompError(
                f"float_activations names layers of the selected transforms "
                f"({', '.join(transforms)}), e.g. 'g_s.0'; got {name!r}"
            )
        out[attr][rest] = "requested (float_activations)"
    return out


def _packed_transforms(modules, bits: int) -> int:
    modules = list(modules)
    convs = {id(layer.weight): out_channels(layer) for m in modules for _, layer in conv_layers(m)}
    state = [(k, t) for m in modules for k, t in m.state_dict(keep_vars=True).items()]
    return packed_bytes(state, convs, bits)


def packed_weight_bytes(
    model: nn.Module, bits: int, components: Sequence[str] | None = None
) -> int:
    """Bytes of the whole model with the conv / transposed-conv weights of the selected
    components packed at ``bits`` bits each plus one float32 scale per output channel; every
    other tensor of the state dict (biases, GDN, entropy model, ...) at its own size."""
    bits = check_bits(bits)
    convs = {
        id(layer.weight): out_channels(layer)
        for m in selected_transforms(model, components).values()
        for _, layer in conv_layers(m)
    }
    return packed_bytes(model.state_dict(keep_vars=True).items(), convs, bits)


def quantize_codec(
    codec: LearnedCodec,
    mode: str | QuantConfig,
    calibration: Sequence[np.ndarray] | None = None,
    components: Sequence[str] | None = None,
    **options: object,
) -> tuple[LearnedCodec, QuantReport]:
    """A new codec whose model copy is quantized (the given codec is left as it is): ``mode`` a
    quantization config, or a mode name with ``components`` (None: all of the codec's family)
    and int8 ``options``."""
    codec = require_learned(codec)
    known = _family(codec.model).component_names
    if isinstance(mode, QuantConfig):
        if options or (components is not None and tuple(components) != DEFAULT_COMPONENTS):
            raise ImgcompError("give components and options in the config, not beside it")
        config = mode.within(known)
    else:
        config = quant_config(mode, known if components is None else components, **options)
        config.within(known)
    if isinstance(config, Int8) and codec.device.type != "cpu":
        raise ImgcompError("int8 codecs run on the CPU; create the codec with device='cpu'")
    model = copy_model(codec)
    options = config.options()
    report = quantize_model(model, config.mode, calibration, config.components, **options)
    return derive(codec, model, config.record()), report
