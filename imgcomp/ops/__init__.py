"""Model compression ops on learned codecs: ``prune``, ``quantize`` and ``profile``.

Every op returns a new codec around a modified copy of the model (the caller's codec is never
touched); the op is recorded in ``codec.ops`` and enters the stream fingerprint, so streams of a
pruned or quantized model decode only with that model. ``codec.op_report`` holds the report of
the last op (sparsity per layer, channel widths, quantized layers and sizes).

    codec = imgcomp.create_codec("mbt2018-mean", quality=3)
    pruned = imgcomp.prune(codec, encoder=0.3, decoder=0.3, entropy=0.3)         # L1, unstructured
    slim = imgcomp.prune(codec, decoder=0.3, method="structured", recover_steps=200)
    fast = imgcomp.quantize(codec, "int8")                                         # or bf16, w2..w8
    print(imgcomp.ops.format_profile(imgcomp.profile(slim)))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError
from imgcomp.nn.determinism import single_cpu_thread
from imgcomp.ops.base import (
    check_ratios,
    component_names,
    copy_model,
    derive,
    require_learned,
)
from imgcomp.ops.config import (
    Bf16,
    Int8,
    L1Prune,
    OpConfig,
    PruneConfig,
    QuantConfig,
    StructuredPrune,
    WeightOnly,
    parse_record,
    parse_tag,
    quant_config,
)
from imgcomp.ops.profile import ModelProfile, format_profile, profile_model
from imgcomp.packed import is_weights_file
from imgcomp.registry import family_of

__all__ = [
    "METHODS",
    "Bf16",
    "Int8",
    "L1Prune",
    "ModelProfile",
    "OpConfig",
    "PruneConfig",
    "QuantConfig",
    "StructuredPrune",
    "WeightOnly",
    "format_profile",
    "parse_record",
    "parse_tag",
    "profile",
    "prune",
    "quantize",
]

#: Pruning methods: L1-magnitude unstructured (weights zeroed) or structured (channels removed).
METHODS = ("l1", "structured")


def prune(
    codec: LearnedCodec,
    encoder: float | PruneConfig = 0.0,
    decoder: float = 0.0,
    entropy: float = 0.0,
    *,
    method: str = "l1",
    scope: str = "layer",
    importance: str = "l1",
    recover_steps: int = 0,
    lmbda: float | None = None,
    data: str | Path | None = None,
    round_to: int | None = None,
) -> LearnedCodec:
    """Prune each component by its own ratio in [0, 1): ``prune(codec, config)`` with an
    :class:`L1Prune` or :class:`StructuredPrune`, or ``prune(codec, encoder, decoder, entropy,
    method=..., ...)``, a convenience that builds one.

    ``method="l1"`` zeroes the smallest-magnitude conv / transposed-conv weights (``scope``
    "layer": per layer, "global": one threshold per component); ``method="structured"`` removes
    whole channels so the network really shrinks (``importance`` l1, l2 or activation), and
    ``recover_steps`` then fine-tunes it with the rate-distortion objective (``lmbda``: the
    model's training lambda by default; ``data``: a training-data spec of
    :func:`imgcomp.trainsets.load_training_set`, by default ``$IMGCOMP_TRAIN_DIR`` or the
    offline bundled set, never Kodak; also the calibration images of ``importance="activation"``).
    ``round_to`` (structured only) rounds every kept width down to a multiple of it, as
    torch-pruning's ``round_to`` does: widths that fill whole vector registers, so the achieved
    ratio is at least the requested one (0.3 on 64 channels keeps 45, with ``round_to=8`` 40).
    """
    codec = require_learned(codec)
    components = component_names(codec.model)
    if isinstance(encoder, PruneConfig):
        given = {"decoder": decoder, "entropy": entropy, "method": method, "scope": scope}
        given |= {"importance": importance, "recover_steps": recover_steps, "lmbda": lmbda}
        given["round_to"] = round_to
        defaults = {"decoder": 0.0, "entropy": 0.0, "method": "l1", "scope": "layer"}
        defaults |= {"importance": "l1", "recover_steps": 0, "lmbda": None, "round_to": None}
        extra = [k for k, v in given.items() if v != defaults[k]]
        if extra:
            raise ImgcompError(f"give {', '.join(extra)} in the config, not beside it")
        config = encoder
    else:
        given = {"encoder": encoder, "decoder": decoder, "entropy": entropy}
        config = _prune_config(
            {k: v for k, v in given.items() if k in components or v != 0.0},
            components,
            method,
            scope=scope,
            importance=importance,
            recover_steps=recover_steps,
            lmbda=lmbda,
            round_to=round_to,
        )
    config = config.over(components)
    ratios = config.ratio_map
    model = copy_model(codec)
    if isinstance(config, L1Prune):
        from imgcomp.ops.pruning import prune_unstructured

        report = prune_unstructured(model, ratios, scope=config.scope)
    elif isinstance(config, StructuredPrune):
        from imgcomp.ops.structured import prune_structured, recover

        calibration = None
        if config.importance == "activation":
            from imgcomp.ops.quant.calibration import calibration_images, image_tensor

            images = calibration_images(data_dir=data)
            calibration = _stack(images, codec.pad_multiple, image_tensor)
        with single_cpu_thread(codec.device):  # rankings independent of the thread count
            report = prune_structured(
                model, ratios, config.importance, calibration, config.round_to
            )
        if config.recover_steps:
            # the loss the weights were trained with, at the codec's own settings (the RNN's
            # iterations); rd's lambda: the config's, else the weights'
            args = {**_weights_objective_args(codec), **_codec_objective_args(codec)}
            if family_of(model).objective == "rd" and config.lmbda is None:
                lmbda = float(args["lmbda"]) if "lmbda" in args else _training_lambda(codec)
                config = replace(config, lmbda=lmbda)
            if config.distill is None:
                distill = bool(family_of(model).recovery.get("distill", False))
                config = replace(config, distill=distill)
            teacher = None
            if config.distill:
                from imgcomp.ops.distill import frozen_teacher

                teacher = frozen_teacher(codec.model)
            recover(
                model,
                config.recover_steps,
                config.lmbda,
                data,
                objective_args=args,
                teacher=teacher,
                train_only=_recovery_modules(model, ratios),
            )
    else:
        raise ImgcompError(f"unknown pruning config {config!r}")
    new = derive(codec, model, config.record())
    new.op_report = report
    return new


def _recovery_modules(model, ratios: Mapping[str, float]) -> list[str] | None:
    """The modules recovery fine-tunes: the pruned components' where the family's
    ``recovery["train"]`` says ``"pruned"`` (HiFiC), else None (all of them)."""
    family = family_of(model)
    if family.recovery.get("train", "all") != "pruned":
        return None
    return [m for name, r in ratios.items() if r > 0 for m in family.components[name].modules]


def _prune_config(
    ratios: dict[str, float],
    components: Sequence[str],
    method: str,
    *,
    scope: str,
    importance: str,
    recover_steps: int,
    lmbda: float | None,
    round_to: int | None,
) -> PruneConfig:
    """The config the keyword form of :func:`prune` names."""
    check_ratios(ratios, components)
    if method not in METHODS:
        raise ImgcompError(f"unknown pruning method {method!r}; use one of {METHODS}")
    if recover_steps and method != "structured":
        raise ImgcompError("recover_steps applies to method='structured'")
    if round_to is not None and method != "structured":
        raise ImgcompError("round_to applies to method='structured'")
    if method == "l1":
        return L1Prune(ratios, scope=scope)
    return StructuredPrune(
        ratios, importance=importance, recover_steps=recover_steps, lmbda=lmbda, round_to=round_to
    )


def quantize(
    codec: LearnedCodec,
    mode: str | QuantConfig,
    *,
    components: Sequence[str] | None = None,
    calibration: Sequence[np.ndarray] | None = None,
    data: str | Path | None = None,
) -> LearnedCodec:
    """Quantize the quantization units of the selected components (every component of the
    codec's family by default; Ballé: g_a, g_s and the entropy component's h_a / h_s, its
    densities staying float32; int8: the family's int8 units only): a :class:`Bf16`,
    :class:`Int8` or :class:`WeightOnly` config, or its mode name: ``bf16`` (channels_last),
    ``int8`` (static, calibrated on training images; transposed convolutions included) or
    ``wK`` (K = 2..8, per-channel weight-only fake quantization, a precision study).

    ``int8`` calibrates on ``calibration`` (uint8 HxWx3 images) or, by default, on 8 fixed
    crops of the training set ``data`` names (:func:`imgcomp.trainsets.load_training_set`: by
    default ``$IMGCOMP_TRAIN_DIR``, else the offline bundled set; never Kodak).
    """
    from imgcomp.ops.quant.api import quantize_codec

    if isinstance(mode, QuantConfig):
        if components is not None:
            raise ImgcompError("give components in the config, not beside it")
        config = mode
    else:
        if components is None:  # every component of the codec's family
            components = component_names(require_learned(codec).model)
        config = quant_config(mode, components)
    if isinstance(config, Int8) and calibration is None:
        from imgcomp.ops.quant.calibration import calibration_images

        calibration = calibration_images(data_dir=data)

    new, report = quantize_codec(codec, config, calibration=calibration)
    new.op_report = report
    return new


def profile(codec: LearnedCodec, input_hw: tuple[int, int] = (512, 768)) -> ModelProfile:
    """Parameters, non-zeros, serialized and compressed size, MACs, per component."""
    codec = require_learned(codec)
    return profile_model(codec.model, input_hw=input_hw, params=codec.params)


def _stack(images, factor, to_tensor):
    import torch

    return torch.cat([to_tensor(img, factor) for img in images])


def _codec_objective_args(codec: LearnedCodec) -> dict[str, object]:
    """Objective arguments the codec's own parameters set (the RNN's ``iterations``: recovery
    fine-tunes for the rate the codec runs at)."""
    import dataclasses

    from imgcomp.train.objectives import known_objectives

    cls = known_objectives().get(family_of(codec.model).objective)
    if cls is None:  # no such objective (HiFiC's): recover() refuses it
        return {}
    return {f.name: codec.params[f.name] for f in dataclasses.fields(cls) if f.name in codec.params}


def _weights_file(codec: LearnedCodec) -> str | None:
    """The exported weights file the codec was built from: its ``checkpoint`` (our format, a
    ``.safetensors`` or ``.imgw``), else its family's shipped file; None when it has neither."""
    checkpoint = codec.params.get("checkpoint")
    if isinstance(checkpoint, str):
        ours = codec.params.get("format", "imgcomp") == "imgcomp"
        return checkpoint if ours and is_weights_file(checkpoint) else None
    if codec.params.get("pretrained") is False:
        return None
    try:
        quality = int(codec.params.get("quality", 0))
        return os.fspath(family_of(codec.model).shipped(codec.name, quality))
    except ImgcompError:
        return None


def _weights_objective_args(codec: LearnedCodec) -> dict[str, object]:
    """The objective arguments the codec's weights were trained with (their metadata's config):
    recovery fine-tunes under the loss that made them (HiFiC: its rate target and weights)."""
    path = _weights_file(codec)
    return {} if path is None else _trained_objective_args(path)


def _trained_objective_args(path: str | os.PathLike[str]) -> dict[str, object]:
    """The objective arguments in the config of exported weights ``path`` ({} without one)."""
    import json

    from imgcomp.train import read_metadata

    config = read_metadata(path).get("config")
    if not config:
        return {}
    data = json.loads(config)
    if "objective_args" not in data and "lmbda" in data:  # the flat layout of early exports
        return {"lmbda": data["lmbda"]}
    return dict(data.get("objective_args", {}))


def _training_lambda(codec: LearnedCodec) -> float:
    """The lambda of the shipped weights at the codec's quality (a codec of random weights
    recovers at the lambda its quality names), for recovery."""
    quality = codec.params.get("quality")
    if quality is None:
        raise ImgcompError("give lmbda= for recovery: the codec has no shipped training lambda")
    path = family_of(codec.model).shipped(codec.name, int(quality))
    return float(_trained_objective_args(path)["lmbda"])
