"""Shipped weights: ``imgcomp/weights/<codec name>-q<quality>.imgw`` (packed safetensors,
:mod:`imgcomp.packed`; a plain ``.safetensors`` of the same stem also counts), each with a model
card in ``imgcomp/weights/README.md`` (the lookup a family's spec declares as ``shipped``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from imgcomp.checkpoints import checkpoint_path
from imgcomp.errors import ImgcompError
from imgcomp.packed import WEIGHT_SUFFIXES

__all__ = [
    "WEIGHTS_DIR",
    "check_seed",
    "check_width",
    "load_family_model",
    "shipped_file",
    "shipped_qualities",
    "shipped_weights_path",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def shipped_file(stem: str, folder: Path | None = None) -> Path | None:
    """The shipped weights file ``<stem>.imgw`` (or ``<stem>.safetensors``) in ``folder``
    (default :data:`WEIGHTS_DIR`); None when neither exists."""
    folder = WEIGHTS_DIR if folder is None else folder
    for suffix in WEIGHT_SUFFIXES[::-1]:  # packed first
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def shipped_qualities(name: str) -> list[int]:
    """Quality levels with weights shipped in the package for codec ``name``."""
    prefix = f"{name}-q"
    return sorted(
        {
            int(p.stem[len(prefix) :])
            for suffix in WEIGHT_SUFFIXES
            for p in WEIGHTS_DIR.glob(f"{prefix}*{suffix}")
            if p.stem[len(prefix) :].isdigit()
        }
    )


def shipped_weights_path(name: str, quality: int) -> Path:
    """Path of the shipped weights of ``name`` at ``quality``; ImgcompError when none ship."""
    path = shipped_file(f"{name}-q{quality}")
    if path is None:
        have = shipped_qualities(name)
        raise ImgcompError(
            f"no shipped weights for {name} quality {quality}; shipped qualities: "
            f"{have or 'none'}. Train some with `imgcomp train` and pass checkpoint=..., or use "
            "pretrained=False for random weights (timing only)."
        )
    return path


def load_family_model(
    family: str,
    name: str,
    model_type: type,
    checkpoint: str | os.PathLike[str] | None,
    format: str,
    pretrained: bool,
    load_original: Callable[[str | os.PathLike[str]], object],
    build_random: Callable[[], object],
    seed: int = 0,
) -> object:
    """The model of codec ``name`` from one weight source: ``checkpoint`` in ``format`` (ours,
    safetensors from ``imgcomp export``, or ``"original"``: ``load_original``), the shipped
    weights (``pretrained``), else ``build_random()`` seeded with ``seed`` (the caller's RNG
    state kept); ImgcompError for an unknown format or a model of another type."""
    import torch

    from imgcomp.registry import get_family

    spec = get_family(family)
    if format not in spec.checkpoint_formats:
        raise ImgcompError(
            f"unknown checkpoint format {format!r}; use one of {spec.checkpoint_formats}"
        )
    if checkpoint is not None:
        checkpoint = checkpoint_path(checkpoint)
    if checkpoint is not None and format == "original":
        model = load_original(checkpoint)
    elif checkpoint is not None or pretrained:
        from imgcomp.train import load_weights

        model = load_weights(checkpoint if checkpoint is not None else spec.shipped(name, 0))
    else:
        check_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model = build_random()
            except (ValueError, TypeError) as exc:  # the architecture's own argument checks
                raise ImgcompError(f"{name}: {exc}") from None
    if not isinstance(model, model_type):
        raise ImgcompError(f"{checkpoint!r} holds a {type(model).__name__}, not a {name} model")
    return model.eval()


def check_seed(seed: object) -> int:
    """``seed`` as the integer ``torch.manual_seed`` takes (ImgcompError otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ImgcompError(f"seed must be an integer in 0..2**63-1, got {seed!r}")
    return seed


def check_width(name: str, value: object, maximum: int = 4096) -> int:
    """A layer count or channel width of a freshly built model: an integer in 1..``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ImgcompError(f"{name} must be an integer in 1..{maximum}, got {value!r}")
    return value
