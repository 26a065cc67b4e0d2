"""Model zoo: the learned codecs by name, with shipped weights, checkpoints or fresh weights.

    create_codec("mbt2018-mean", quality=3)                     # shipped weights, no network
    create_codec("mbt2018-mean", checkpoint="x.pth.tar", format="compressai")
    create_codec("mbt2018-mean", pretrained=False, N=128, M=192) # seeded random weights (timing)

Our names are ``factorized-prior``, ``scale-hyperprior`` and ``mean-scale-hyperprior``; the
CompressAI zoo names ``bmshj2018-factorized``, ``bmshj2018-hyperprior`` and ``mbt2018-mean`` are
aliases. Shipped weights live in ``imgcomp/weights/<name>-q<quality>.safetensors``, each with a
model card in ``imgcomp/weights/README.md``. Each codec is built through its model family's
declaration (:func:`imgcomp.registry.get_family`): architectures, checkpoint formats and their
loaders, shipped weights; the codec takes its latent codec and padding from the family too.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from imgcomp.checkpoints import checkpoint_path
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError
from imgcomp.families.weights import (
    WEIGHTS_DIR,
    check_seed,
    check_width,
    shipped_qualities,
    shipped_weights_path,
)
from imgcomp.registry import create_codec, get_family, register_codec

__all__ = [
    "FAMILY",
    "LEARNED",
    "WEIGHTS_DIR",
    "load_codec",
    "load_model",
    "shipped_qualities",
    "shipped_weights_path",
]

#: our registry name -> the family's architecture (the CompressAI zoo name, also an alias)
LEARNED = {
    "factorized-prior": "bmshj2018-factorized",
    "scale-hyperprior": "bmshj2018-hyperprior",
    "mean-scale-hyperprior": "mbt2018-mean",
}
#: our registry name -> its model family
FAMILY = dict.fromkeys(LEARNED, "balle")


def load_model(
    name: str,
    quality: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    format: str = "imgcomp",
    pretrained: bool = True,
    N: int = 128,
    M: int = 192,
    seed: int = 0,
) -> nn.Module:
    """Build the model behind a learned codec from one weight source (see module docstring)."""
    arch, family = LEARNED[name], get_family(FAMILY[name])
    formats = family.checkpoint_formats
    if format not in formats:
        raise ImgcompError(f"unknown checkpoint format {format!r}; use one of {formats}")
    if checkpoint is not None:
        checkpoint = checkpoint_path(checkpoint)
        loader = family.checkpoint_loaders.get(format)
        if loader is not None:  # another implementation's layout (CompressAI's)
            model = loader(checkpoint, arch)
        else:
            from imgcomp.train import load_weights

            model = load_weights(checkpoint)
    elif pretrained:
        if quality is None:
            raise ImgcompError(
                f"{name}: give quality= (shipped: {shipped_qualities(name) or 'none'}), "
                "checkpoint=, or pretrained=False"
            )
        path = family.shipped(name, quality)
        from imgcomp.train import load_weights

        model = load_weights(path)
    else:
        check_width("N", N)
        check_width("M", M)
        check_seed(seed)
        torch.manual_seed(seed)
        model = family.architectures[arch](N=N, M=M)
    if model.arch != arch:
        raise ImgcompError(f"checkpoint holds a {model.arch} model, not {arch} ({name})")
    return model.eval()


def _register(name: str, alias: str) -> None:
    @register_codec(name, alias, family=FAMILY[name], stream_params=("quality",))
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
    name: str,
    checkpoint: str | os.PathLike,
    format: str = "imgcomp",
    device: str = "cpu",
    **params: object,
) -> LearnedCodec:
    """A learned codec from a checkpoint file in one of its family's formats (ours, or e.g.
    CompressAI's layout); ``params`` are the codec's further parameters."""
    return create_codec(
        name, checkpoint=os.fspath(checkpoint), format=format, device=device, **params
    )
