"""Shipped weights: ``imgcomp/weights/<codec name>-q<quality>.safetensors``, each with a model
card in ``imgcomp/weights/README.md`` (the lookup a family's spec declares as ``shipped``)."""

from __future__ import annotations

from pathlib import Path

from imgcomp.errors import ImgcompError

__all__ = ["WEIGHTS_DIR", "shipped_qualities", "shipped_weights_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def shipped_qualities(name: str) -> list[int]:
    """Quality levels with weights shipped in the package for codec ``name``."""
    prefix = f"{name}-q"
    return sorted(
        int(p.stem[len(prefix) :])
        for p in WEIGHTS_DIR.glob(f"{prefix}*.safetensors")
        if p.stem[len(prefix) :].isdigit()
    )


def shipped_weights_path(name: str, quality: int) -> Path:
    """Path of the shipped weights of ``name`` at ``quality``; ImgcompError when none ship."""
    path = WEIGHTS_DIR / f"{name}-q{quality}.safetensors"
    if not path.exists():
        have = shipped_qualities(name)
        raise ImgcompError(
            f"no shipped weights for {name} quality {quality}; shipped qualities: "
            f"{have or 'none'}. Train some with `imgcomp train` and pass checkpoint=..., or use "
            "pretrained=False for random weights (timing only)."
        )
    return path
