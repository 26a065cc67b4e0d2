"""``hific`` (alias ``mentzer2020``): HiFiC as a real bitstream codec.

    load_codec("hific", checkpoint=".../run_epoch3_idx51234_....pt", format="original")
    create_codec("hific", pretrained=False)                 # seeded random: C=220, 9 blocks
    create_codec("hific", pretrained=False, channels=16, blocks=1, hyper_channels=16, width=0.125)

A stream holds three sections: the hyper-latents ``z`` under the hyper-latent density's integer
tables, ``y - mu`` under the Gaussian conditional and the 4-byte scale-table index checksum
(:mod:`imgcomp.families.hific.latent`). Images of any size: reflect-padded to multiples of 16 as
the original, each side to at least 80 (the original refuses sides of 64 or less), latents
reflect-padded to multiples of 4; the reconstruction is cropped back. ``decode(encode(x))``
equals :meth:`HiFiCCodec.reconstruct`, the model's own quantized reconstruction.

Random weights: ``channels`` (latent channels C, 220), ``blocks`` (generator residual blocks, 9),
``hyper_channels`` (hyper-latent filters N, 320) and ``width`` (multiplier of the encoder /
generator filters 60 .. 960, 1.0), drawn after ``torch.manual_seed(seed)`` (the caller's RNG is
left as it was). An original checkpoint's discriminator is dropped (inference never uses it).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from imgcomp.bitstream import ParamValue, StreamHeader
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.families.hific.build import build_hific
from imgcomp.families.hific.latent import pad_image, padded_side
from imgcomp.families.hific.model import (
    HYPERLATENT_FILTERS,
    LATENT_CHANNELS,
    RESIDUAL_BLOCKS,
    HiFiC,
)
from imgcomp.families.weights import load_family_model
from imgcomp.registry import register_codec

__all__ = ["NAME", "HiFiCCodec", "load_hific_model"]

NAME = "hific"


class HiFiCCodec(LearnedCodec):
    """A :class:`LearnedCodec` whose input padding is HiFiC's (reflection to 16, at least 80)."""

    def _to_input(self, img: np.ndarray) -> torch.Tensor:
        src = img if img.flags.writeable else img.astype(np.float32)
        x = torch.from_numpy(src).permute(2, 0, 1)[None].to(self.device, torch.float32) / 255.0
        return pad_image(x, self.pad_multiple)

    def _latent_hw(self, header: StreamHeader) -> tuple[int, int]:
        f, s = self.pad_multiple, self.latent.stride
        return padded_side(header.height, f) // s, padded_side(header.width, f) // s


def _inference_only(model: HiFiC) -> HiFiC:
    """``model`` without its discriminator (it neither encodes nor decodes)."""
    if model.has_discriminator:
        del model.Discriminator
        model.has_discriminator = False
    return model


def load_hific_model(
    checkpoint: str | os.PathLike[str] | None = None,
    format: str = "imgcomp",
    pretrained: bool = True,
    channels: int = LATENT_CHANNELS,
    blocks: int = RESIDUAL_BLOCKS,
    hyper_channels: int = HYPERLATENT_FILTERS,
    width: float = 1.0,
    seed: int = 0,
) -> HiFiC:
    """The model behind ``hific`` from one weight source (see the module docstring)."""
    from imgcomp.families.hific.original import load_original

    model = load_family_model(
        "hific",
        NAME,
        HiFiC,
        checkpoint,
        format,
        pretrained,
        load_original,
        lambda: build_hific(channels, blocks, hyper_channels, width),
        seed,
    )
    return _inference_only(model).eval()


@register_codec(NAME, "mentzer2020", family="hific")
def hific(
    checkpoint: str | None = None,
    format: str = "imgcomp",
    pretrained: bool = True,
    channels: int = LATENT_CHANNELS,
    blocks: int = RESIDUAL_BLOCKS,
    hyper_channels: int = HYPERLATENT_FILTERS,
    width: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
) -> HiFiCCodec:
    """HiFiC (Mentzer et al. 2020) as a codec; see :mod:`imgcomp.families.hific.codec`."""
    model = load_hific_model(
        checkpoint, format, pretrained, channels, blocks, hyper_channels, width, seed
    )
    params: dict[str, ParamValue]
    if checkpoint is not None:
        params = {"checkpoint": os.fspath(checkpoint), "format": format}
    elif pretrained:
        params = {}
    else:
        params = {
            "pretrained": False,
            "channels": channels,
            "blocks": blocks,
            "hyper_channels": hyper_channels,
            "width": width,
            "seed": seed,
        }
    return HiFiCCodec(model, NAME, params, device=device)
