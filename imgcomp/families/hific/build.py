"""Fresh HiFiC inference models at any width (the family's architecture builder)."""

from __future__ import annotations

from collections.abc import Sequence

from imgcomp.errors import ImgcompError
from imgcomp.families.hific.model import (
    ENCODER_FILTERS,
    HYPERLATENT_FILTERS,
    LATENT_CHANNELS,
    RESIDUAL_BLOCKS,
    HiFiC,
)

__all__ = ["build_hific", "scaled_widths"]


def scaled_widths(base: Sequence[int], width: object, what: str = "width") -> tuple[int, ...]:
    """The widths ``base`` (e.g. the encoder filters 60 .. 960) times ``width``, each at least 1;
    ValueError naming ``what`` unless ``width`` is a positive number."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"{what} must be a positive number, got {width!r}")
    return tuple(max(1, round(f * width)) for f in base)


def build_hific(
    channels: int = LATENT_CHANNELS,
    blocks: int = RESIDUAL_BLOCKS,
    hyper_channels: int = HYPERLATENT_FILTERS,
    width: float = 1.0,
    filters: Sequence[int] | None = None,
) -> HiFiC:
    """A fresh inference model (no discriminator): latent channels C, residual blocks, hyper-latent
    filters N and the encoder / generator filters (``filters``, else the original's x ``width``)."""
    try:
        return HiFiC(
            latent_channels=channels,
            n_residual_blocks=blocks,
            hyperlatent_filters=hyper_channels,
            filters=scaled_widths(ENCODER_FILTERS, width) if filters is None else filters,
            discriminator=False,
        )
    except (TypeError, ValueError) as exc:
        raise ImgcompError(f"bad HiFiC model arguments: {exc}") from None
