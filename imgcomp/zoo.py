"""Model zoo: the learned codecs by name, with shipped weights, checkpoints or fresh weights.

    create_codec("mbt2018-mean", quality=3)                     # shipped weights, no network
    create_codec("mbt2018-mean", checkpoint="x.pth.tar", format="compressai")
    create_codec("mbt2018-mean", pretrained=False, N=128, M=192) # seeded random weights (timing)

Our names are ``factorized-prior``, ``scale-hyperprior`` and ``mean-scale-hyperprior``; the
CompressAI zoo names ``bmshj2018-factorized``, ``bmshj2018-hyperprior`` and ``mbt2018-mean`` are
aliases. Shipped weights live in ``imgcomp/weights/<name>-q<quality>.safetensors``, each with a
model card in ``imgcomp/weights/README.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError
from imgcomp.nn.balle import BalleModel, build_model
from imgcomp.registry import create_codec, register_codec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: our registry name -> (architecture in imgcomp.nn.balle, CompressAI alias)
LEARNED = {
    "factorized-prior": "bmshj2018-factorized",
    "scale-hyperprior": "bmshj2018-hyperprior",
    "mean-scale-hyperprior": "mbt2018-mean",
}
FORMATS = ("imgcomp", "compressai")


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


def load_model(
    name: str,
    quality: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    format: str = "imgcomp",
    pretrained: bool = True,
    N: int = 128,
    M: int = 192,
    seed: int = 0,
) -> BalleModel:
    """Build the model behind a learned codec from one weight source (see module docstring)."""
    arch = LEARNED[name]
    if format not in FORMATS:
        raise ImgcompError(f"unknown checkpoint format {format!r}; use one of {FORMATS}")
    if checkpoint is not None:
        if format == "compressai":
            from imgcomp.compat.compressai import load_compressai

            model = load_compressai(checkpoint, arch=arch)
        else:
            from imgcomp.train import load_weights

            model = load_weights(checkpoint)
    elif pretrained:
        if quality is None:
            raise ImgcompError(
                f"{name}: give quality= (shipped: {shipped_qualities(name) or 'none'}), "
                "checkpoint=, or pretrained=False"
            )
        path = shipped_weights_path(name, quality)
        from imgcomp.train import load_weights

        model = load_weights(path)
    else:
        torch.manual_seed(seed)
        model = build_model(arch, N, M)
    if model.arch != arch:
        raise ImgcompError(f"checkpoint holds a {model.arch} model, not {arch} ({name})")
    return model.eval()


def _register(name: str, alias: str) -> None:
    @register_codec(name, alias)
    def factory(
        quality: int | None = None,
        checkpoint: str | None = None,
        format: str = "imgcomp",
        pretrained: bool = True,
        N: int = 128,
        M: int = 192,
        seed: int = 0,
        device: str = "cpu",
    ) -> LearnedCodec:
        model = load_model(name, quality, checkpoint, format, pretrained, N, M, seed)
        if checkpoint is not None:
            params = {"checkpoint": os.fspath(checkpoint), "format": format}
        elif pretrained:
            params = {"quality": quality}
        else:
            params = {"pretrained": False, "N": N, "M": M, "seed": seed}
        return LearnedCodec(model, name, params, device=device)

    factory.__doc__ = f"{name} ({alias}) as a codec; see imgcomp.zoo."


for _name, _alias in LEARNED.items():
    _register(_name, _alias)


def load_codec(
    name: str, checkpoint: str | os.PathLike, format: str = "imgcomp", device: str = "cpu"
) -> LearnedCodec:
    """A learned codec from a checkpoint file: ours (safetensors) or CompressAI's layout."""
    return create_codec(name, checkpoint=os.fspath(checkpoint), format=format, device=device)
