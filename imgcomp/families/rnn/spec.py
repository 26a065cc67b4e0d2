"""The Toderici RNN family's declaration (``toderici2017``).

Components (the study's Table 1 and the ops): encoder, binarizer and decoder. Codes are coded by
a :class:`~imgcomp.codecs.latent.BinaryLatent`, one section per iteration; images are
edge-padded to multiples of 32, as the original code requires. Training defaults are the
original ``train.py``'s recipe: 32x32 crops in batches of 32, Adam at 5e-4 halved at epochs 3,
10, 20, 50 and 100 of 200 (here: those fractions of the run), no gradient clipping.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcomp.codecs.latent import BinaryLatent, LatentCodec
from imgcomp.entropy.binary_context import AdaptiveContextModel, LearnedContextModel
from imgcomp.errors import ImgcompError
from imgcomp.families.rnn.code_model import finalize_export
from imgcomp.families.rnn.model import CODE_CHANNELS, MAX_ITERATIONS, TodericiRNN, scaled_widths
from imgcomp.families.rnn.objective import ResidualL1
from imgcomp.families.rnn.structured import rnn_after_resize, rnn_channel_groups
from imgcomp.families.spec import Component, FamilySpec, Padding
from imgcomp.families.weights import WEIGHTS_DIR, shipped_file
from imgcomp.train.config import TrainFamily

__all__ = ["RNN", "RNN_TRAINING", "rnn_latent", "rnn_padding", "rnn_train_args"]


#: int8 units: every convolution on its own (int8 weights and input, float32 output), the
#: binarizer's included; the gates' sigmoid / tanh and the cell state stay float32. Quantizing
#: whole cells instead (FX with fixed-range sigmoid / tanh, quantized products; the engine
#: handles multi-input units) broke the codec: kodim01 / kodim05 SSIM 0.334 / 0.388 -> 0.225 /
#: 0.190 on an early checkpoint, against 0.331 / - with float gates.
RNN_INT8_UNITS: tuple[str, ...] = (
    "encoder.conv",
    *(f"encoder.rnn{k}.conv_{g}" for k in (1, 2, 3) for g in ("ih", "hh")),
    "binarizer.conv",
    "decoder.conv1",
    *(f"decoder.rnn{k}.conv_{g}" for k in (1, 2, 3, 4) for g in ("ih", "hh")),
    "decoder.conv2",
)


def rnn_latent(model: nn.Module) -> LatentCodec:
    """Binary codes, one section per iteration, under the model's learned context model, or the
    adaptive context model when it carries none (e.g. one loaded from an original checkpoint)."""
    table = model.code_model
    if table.numel():
        context = LearnedContextModel(table.cpu().numpy())
    else:
        context = AdaptiveContextModel(model.code_channels)
    return BinaryLatent(
        model.code_channels, None, stride=16, max_iterations=MAX_ITERATIONS, context=context
    )


def rnn_padding(model: nn.Module) -> Padding:
    """Edge replication to multiples of 32 (the original's input multiple)."""
    return Padding(int(model.input_multiple), "replicate")


def rnn_train_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Explicit widths of an RNN model from ``width`` (a multiplier of the original widths) or
    ``encoder_widths`` / ``decoder_widths``, and ``code_channels``."""
    unknown = sorted(set(args) - {"width", "encoder_widths", "decoder_widths", "code_channels"})
    if unknown:
        raise ValueError(f"unknown rnn model arguments: {', '.join(map(str, unknown))}")
    enc, dec = scaled_widths(args.get("width", 1.0))
    out = {
        "encoder_widths": list(args.get("encoder_widths", enc)),
        "decoder_widths": list(args.get("decoder_widths", dec)),
        "code_channels": args.get("code_channels", CODE_CHANNELS),
    }
    with torch.device("meta"):  # checks them (ValueError); nothing allocated
        TodericiRNN(**out)
    return out


def rnn_shipped(name: str, quality: int = 0) -> Path:
    """``imgcomp/weights/<name>.imgw`` or ``.safetensors``: one model, every iteration count."""
    path = shipped_file(name, WEIGHTS_DIR)
    if path is None:
        raise ImgcompError(
            f"no shipped weights for {name}; train some with `imgcomp train --family rnn` and "
            "pass checkpoint=..., or pretrained=False for random weights (timing only)"
        )
    return path


def _build(args: Mapping[str, Any]) -> nn.Module:
    return TodericiRNN(**args)


#: The original recipe (``train.py`` of 1zb/pytorch-image-comp-rnn), as TrainConfig defaults.
RNN_TRAINING = TrainFamily(
    name="rnn",
    normalize=rnn_train_args,
    build=_build,
    multiple=lambda a: TodericiRNN.downsampling_factor,
    defaults={
        "batch_size": 32,
        "patch_size": 32,
        "lr": 5e-4,
        "lr_milestones": [3 / 200, 10 / 200, 20 / 200, 50 / 200, 100 / 200],
        "lr_gamma": 0.5,
        "lr_drop_fraction": 0.0,
        "lr_drop_factor": 1.0,
        "clip_max_norm": 0.0,
    },
    finalize=finalize_export,
    example={"width": 0.125},
)

#: The RNN family (registered by :mod:`imgcomp.families.rnn`).
RNN = FamilySpec(
    name="rnn",
    components={
        "encoder": Component("encoder", "encoder", ("encoder",)),
        "binarizer": Component("binarizer", "binarizer", ("binarizer",)),
        "decoder": Component("decoder", "decoder", ("decoder",)),
    },
    model_types=(TodericiRNN,),
    latent=rnn_latent,
    padding=rnn_padding,
    objective=ResidualL1.name,
    checkpoint_formats=("imgcomp", "original"),
    architectures={"toderici2017": lambda width=1.0: TodericiRNN(*scaled_widths(width))},
    shipped=rnn_shipped,
    quant_units={"encoder": ("encoder",), "binarizer": ("binarizer",), "decoder": ("decoder",)},
    int8_units=RNN_INT8_UNITS,
    training=RNN_TRAINING,
    objectives={ResidualL1.name: ResidualL1},
    coding_pass=lambda model, x, params: model.analysis(x, int(params.get("iterations", 1))),
    channel_groups=rnn_channel_groups,
    after_resize=rnn_after_resize,
    study_components=("encoder", "decoder"),
    # recovery lr measured on an interim checkpoint (encoder and decoder at 0.3, 300 steps,
    # kodim01-03 SSIM, unpruned 0.613): 5e-4 0.514, 1e-3 0.553, 2e-3 0.571, 4e-3 0.577
    recovery={"batch_size": 32, "patch_size": 32, "lr": 2e-3},
    rebuild=lambda config: TodericiRNN(**config),
    example=("toderici2017", {"pretrained": False, "width": 0.125, "iterations": 2}),
    codec=lambda *args, **kwargs: _rnn_codec()(*args, **kwargs),
)


def _rnn_codec() -> type:
    from imgcomp.families.rnn.codec import RNNCodec  # it registers the codec, after the family

    return RNNCodec
