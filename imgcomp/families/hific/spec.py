"""The HiFiC family's declaration (Mentzer et al. 2020, Justin Tan's PyTorch code).

Components (the study's Table 2: "Encoder pruning ratio", "Generator pruning ratio",
"Probability model pruning ratio"): encoder (``Encoder``), generator (``Generator``) and
probability model (the hyperprior's ``analysis_net``, ``synthesis_mu`` and ``synthesis_std``;
its hyper-latent density has no convolution, codes through integer tables and stays float32, but
its parameters are counted with the component by the profile, through ``HiFiC.components``).
Streams: :mod:`imgcomp.families.hific.latent` (z under the density's own tables, y - mu under a
Gaussian conditional, index checksum); images reflect-padded to 16 as the original, at least 80 a
side. Quantization (bf16, wK) replaces the encoder, the generator and the three hyper transforms;
int8 (FX static, calibrated) replaces the same units: the transposed convolutions as exact
sub-pixel convolutions (fbgemm's fast int8 kernels), ChannelNorm's statistics in float32 between
a dequantize and a quantize (``int8_float_modules``; FX alone quantized its variance to 8
bits), and three layers on float activations (``int8_float_layers``: the encoder's last
convolution, which writes the latent, and the generator's two last upsampling convolutions,
which draw the GAN texture at half and full resolution). Training (``imgcomp train
--family hific``): the ``hific-gan`` objective
(:mod:`imgcomp.families.hific.objective`: rate-distortion warm-up, then the conditional GAN) on
the original's recipe (256x256 crops in batches of 8, Adam at 1e-4, x0.1 halfway); export drops
the discriminator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcomp.errors import ImgcompError
from imgcomp.families.hific.build import build_hific, scaled_widths
from imgcomp.families.hific.latent import hific_coding_pass, hific_latent
from imgcomp.families.hific.model import (
    DISCRIMINATOR_FILTERS,
    ENCODER_FILTERS,
    HYPERLATENT_FILTERS,
    LATENT_CHANNELS,
    RESIDUAL_BLOCKS,
    HiFiC,
)
from imgcomp.families.hific.objective import HiFiCGAN
from imgcomp.families.hific.structured import hific_after_resize, hific_channel_groups
from imgcomp.families.spec import Component, FamilySpec, Padding
from imgcomp.families.weights import WEIGHTS_DIR, shipped_file
from imgcomp.nn.channel_norm import ChannelNorm2D
from imgcomp.train.config import TrainFamily

__all__ = [
    "HIFIC",
    "HIFIC_OBJECTIVE",
    "HIFIC_TRAINING",
    "build_hific",
    "hific_padding",
    "hific_shipped",
    "hific_train_args",
]

#: The family's objective, by name (rate + MSE + SSIM + conditional GAN).
HIFIC_OBJECTIVE = HiFiCGAN.name

_PROBABILITY = ("Hyperprior.analysis_net", "Hyperprior.synthesis_mu", "Hyperprior.synthesis_std")


def hific_padding(model: nn.Module) -> Padding:
    """Reflection to multiples of 16, as the original (sides of 64 or less: see
    :func:`imgcomp.families.hific.latent.pad_image`)."""
    return Padding(int(model.downsampling_factor), "reflect")


def hific_shipped(name: str, quality: int = 0) -> Path:
    """``imgcomp/weights/<name>.imgw`` (or ``.safetensors``); a clear error where it is missing."""
    path = shipped_file(name, WEIGHTS_DIR)
    if path is None:
        raise ImgcompError(
            f"no shipped weights for {name} ({WEIGHTS_DIR / name}.imgw is missing): load an "
            "original train.py checkpoint with "
            f"load_codec({name!r}, checkpoint=PATH, format='original'), or pass "
            "pretrained=False for seeded random weights (timing only)"
        )
    return path


#: Training-model arguments: the constructor's names, and shorthands for them.
_ALIASES = {
    "channels": "latent_channels",
    "blocks": "n_residual_blocks",
    "hyper_channels": "hyperlatent_filters",
}
_CANONICAL = (
    "latent_channels",
    "n_residual_blocks",
    "hyperlatent_filters",
    "filters",
    "discriminator",
    "discriminator_filters",
)


def hific_train_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Complete training-model arguments (the constructor's names) from the given ones:
    ``channels`` / ``blocks`` / ``hyper_channels`` shorthands, ``width`` (x the original
    encoder / generator filters) and ``discriminator_width`` (x its filters) allowed."""
    args = dict(args)
    for short, full in _ALIASES.items():
        if short in args:
            if full in args:
                raise ValueError(f"give {short} or {full}, not both")
            args[full] = args.pop(short)
    known = {*_CANONICAL, "width", "discriminator_width"}
    unknown = sorted(set(args) - known, key=str)
    if unknown:
        raise ValueError(f"unknown hific model arguments: {', '.join(map(str, unknown))}")
    for given, derived in (("width", "filters"), ("discriminator_width", "discriminator_filters")):
        if given in args and derived in args:
            raise ValueError(f"give {given} or {derived}, not both")
    filters = args.get("filters", scaled_widths(ENCODER_FILTERS, args.get("width", 1.0)))
    disc = args.get(
        "discriminator_filters",
        scaled_widths(
            DISCRIMINATOR_FILTERS, args.get("discriminator_width", 1.0), "discriminator_width"
        ),
    )
    out = {
        "latent_channels": args.get("latent_channels", LATENT_CHANNELS),
        "n_residual_blocks": args.get("n_residual_blocks", RESIDUAL_BLOCKS),
        "hyperlatent_filters": args.get("hyperlatent_filters", HYPERLATENT_FILTERS),
        "filters": [int(f) for f in filters] if isinstance(filters, (list, tuple)) else filters,
        "discriminator": args.get("discriminator", True),
        "discriminator_filters": list(disc) if isinstance(disc, (list, tuple)) else disc,
    }
    if not isinstance(out["discriminator"], bool):
        raise ValueError(f"discriminator must be true or false, got {out['discriminator']!r}")
    with torch.device("meta"):  # checks them (ValueError); nothing allocated
        HiFiC(**out)
    return out


def hific_finalize(model: nn.Module, metadata: Mapping[str, str]) -> dict[str, str]:
    """Export step: drop the discriminator (it neither encodes nor decodes); the exported
    config says so, so the weights rebuild without it."""
    if not getattr(model, "has_discriminator", False):
        return {}
    del model.Discriminator
    model.has_discriminator = False
    config = json.loads(metadata["config"])
    config["model"]["discriminator"] = False
    return {"config": json.dumps(config, sort_keys=True), "discriminator": "False"}


#: The original recipe (``default_config.py`` of Justin Tan's code), as TrainConfig defaults.
HIFIC_TRAINING = TrainFamily(
    name="hific",
    normalize=hific_train_args,
    build=lambda args: HiFiC(**args),
    multiple=lambda a: 64,  # x to 16, the latents to 4 more: no padding in training
    min_patch=128,  # the hyper transforms' reflect padding needs latents of at least 8 a side
    defaults={
        "batch_size": 8,
        "patch_size": 256,
        "lr": 1e-4,
        "lr_milestones": [0.5],
        "lr_gamma": 0.1,
        "lr_drop_fraction": 0.0,
        "lr_drop_factor": 1.0,
        "clip_max_norm": 0.0,
    },
    finalize=hific_finalize,
    # --compile on a 2-core CPU (width 0.2, 256x256 crops, bf16): about 1.4x the steps/s
    compile_modules=(
        "Encoder",
        "Generator",
        "Hyperprior.analysis_net",
        "Hyperprior.synthesis_mu",
        "Hyperprior.synthesis_std",
        "Discriminator",
    ),
    example={
        "width": 0.05,
        "channels": 8,
        "hyper_channels": 8,
        "blocks": 1,
        "discriminator_width": 0.0625,
    },
)


def _hific_codec() -> type:
    from imgcomp.families.hific.codec import HiFiCCodec  # registers the codec, after the family

    return HiFiCCodec


#: Layers int8 runs on float32 activations (their weights still int8), as Ballé keeps the layers
#: that read or write a latent: the encoder's last convolution writes y, whose rounding 8-bit
#: activations shift; the generator's full- and half-resolution upsampling convolutions
#: synthesize the fine texture 8-bit activations flatten (most of int8's SSIM drop on the
#: GAN-trained weights), and their few channels make int8 buy little time there. Chosen by a
#: per-layer probe (the weights card): kept float, no other layer gained more than 0.001.
_HIFIC_INT8_FLOAT_LAYERS = {
    "Encoder": {"conv_block_out.1": "writes the latent y"},
    "Generator": {
        "upconv_block3.0": "synthesizes the texture at half resolution",
        "upconv_block4.0": "synthesizes the texture at full resolution",
    },
}

#: The HiFiC family (registered by :mod:`imgcomp.families.hific`).
HIFIC = FamilySpec(
    name="hific",
    components={
        "encoder": Component("encoder", "encoder", ("Encoder",)),
        "generator": Component("generator", "generator", ("Generator",)),
        "probability": Component("probability", "probability model", _PROBABILITY),
    },
    model_types=(HiFiC,),
    latent=hific_latent,
    padding=hific_padding,
    objective=HIFIC_OBJECTIVE,
    checkpoint_formats=("imgcomp", "original"),
    architectures={"hific": build_hific},
    shipped=hific_shipped,
    quant_units={"encoder": ("Encoder",), "generator": ("Generator",), "probability": _PROBABILITY},
    int8_units=("Encoder", "Generator", *_PROBABILITY),
    int8_float_modules=(ChannelNorm2D,),
    int8_float_layers=_HIFIC_INT8_FLOAT_LAYERS,
    training=HIFIC_TRAINING,
    objectives={HiFiCGAN.name: HiFiCGAN},
    coding_pass=hific_coding_pass,
    study_components=("encoder", "generator", "probability"),
    # the target's configuration ("structured generator pruning at 0.3 after recovery"): decode
    # time is the generator's, and pruning all three would cut the latent and change the rate
    structured_components=("generator",),
    # recovery fine-tunes the pruned generator alone, so the stream stays the unpruned model's
    # byte for byte; trained with the rest, 300 steps let the encoder raise the rate (+12% on 6
    # Kodak images) for less SSIM. lr by a probe on the shipped weights (generator 0.3, 300
    # steps, 6 Kodak images): 1e-4 / 2e-4 / 3e-4 / 5e-4 / 1e-3 lost 0.048 / 0.031 / 0.020 /
    # 0.016 / 0.054 SSIM
    recovery={"batch_size": 8, "patch_size": 128, "lr": 5e-4, "train": "pruned"},
    channel_groups=hific_channel_groups,
    after_resize=hific_after_resize,
    codec=lambda *args, **kwargs: _hific_codec()(*args, **kwargs),
    rebuild=lambda config: HiFiC(**config),
    example=(
        "hific",
        {"pretrained": False, "channels": 16, "blocks": 1, "hyper_channels": 16, "width": 0.125},
    ),
)
