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
bits); decode 0.34-0.35x of float32 at the original width on a 256x384
crop (2-core AVX512-VNNI host, one thread; seeded random weights: no trained HiFiC yet to give
its SSIM drop). Training (the GAN objective) is future work:
``training=None``, so ``imgcomp train`` does not offer the family and codecs are built from
seeded random weights or the original ``train.py`` checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from imgcomp.errors import ImgcompError
from imgcomp.families.hific.build import build_hific
from imgcomp.families.hific.latent import hific_coding_pass, hific_latent
from imgcomp.families.hific.model import HiFiC
from imgcomp.families.hific.structured import hific_after_resize, hific_channel_groups
from imgcomp.families.spec import Component, FamilySpec, Padding
from imgcomp.families.weights import WEIGHTS_DIR
from imgcomp.nn.channel_norm import ChannelNorm2D

__all__ = [
    "HIFIC",
    "HIFIC_OBJECTIVE",
    "build_hific",
    "hific_padding",
    "hific_shipped",
]

#: The family's objective, by name (rate + MSE + LPIPS + conditional GAN: not implemented yet).
HIFIC_OBJECTIVE = "hific-gan"

_PROBABILITY = ("Hyperprior.analysis_net", "Hyperprior.synthesis_mu", "Hyperprior.synthesis_std")


def hific_padding(model: nn.Module) -> Padding:
    """Reflection to multiples of 16, as the original (sides of 64 or less: see
    :func:`imgcomp.families.hific.latent.pad_image`)."""
    return Padding(int(model.downsampling_factor), "reflect")


def hific_shipped(name: str, quality: int = 0) -> Path:
    """``imgcomp/weights/<name>.safetensors``; none ship yet: a clear error."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.exists():
        raise ImgcompError(
            f"no shipped weights for {name}: load an original train.py checkpoint with "
            f"load_codec({name!r}, checkpoint=PATH, format='original'), or pass "
            "pretrained=False for seeded random weights (timing only)"
        )
    return path


def _hific_codec() -> type:
    from imgcomp.families.hific.codec import HiFiCCodec  # registers the codec, after the family

    return HiFiCCodec


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
    training=None,
    coding_pass=hific_coding_pass,
    study_components=("encoder", "generator", "probability"),
    channel_groups=hific_channel_groups,
    after_resize=hific_after_resize,
    codec=lambda *args, **kwargs: _hific_codec()(*args, **kwargs),
    rebuild=lambda config: HiFiC(**config),
    example=(
        "hific",
        {"pretrained": False, "channels": 16, "blocks": 1, "hyper_channels": 16, "width": 0.125},
    ),
)
