"""The precision study: a learned codec's quality and rate with its weights at K bits (``wK``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.evaluate import evaluate, summarize
from imgcomp.ops.quant.api import quantize_codec
from imgcomp.ops.quant.weights import WEIGHT_BITS

__all__ = ["WEIGHT_BITS", "weight_bits_table"]


def weight_bits_table(
    codec: LearnedCodec,
    images: Sequence[tuple[str, np.ndarray]],
    bits: Iterable[int] = WEIGHT_BITS,
    components: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean SSIM, PSNR and bpp over ``images`` (real streams) of ``codec`` (row ``float32``)
    and of ``codec`` quantized to ``wK`` for each K in ``bits`` (rows ``w8``, ``w7``, ...);
    ``components``: only those components' weights (None: every component)."""
    variants = {"float32": codec}
    variants.update(
        {f"w{k}": quantize_codec(codec, f"w{k}", components=components)[0] for k in bits}
    )
    table = {}
    for name, variant in variants.items():
        mean = summarize(evaluate(variant, images))
        table[name] = {"ssim": mean["ssim"], "psnr": mean["psnr"], "bpp": mean["bpp"]}
    return table
