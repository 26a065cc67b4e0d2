"""The Ballé family's declaration: factorized prior, scale and mean-scale hyperprior.

Components (the study's tables): encoder (``g_a``), decoder (``g_s``) and probability model
(``entropy``: the hyper transforms and the densities). The factorized prior codes ``y`` with a
:class:`~imgcomp.codecs.latent.FactorizedLatent`, the hyperpriors ``z`` and ``y`` with a
:class:`~imgcomp.codecs.latent.HyperpriorLatent`; images are edge-padded to the architecture's
downsampling factor (16 or 64). Quantization replaces the transforms (``g_a``, ``g_s``, ``h_a``,
``h_s``, int8 included); the entropy densities stay float32, and int8 keeps the convolutions
that read or write a latent on float32 activations. Structured pruning is the family's own
(:mod:`imgcomp.families.balle.structured`: torch-pruning traces the couplings through GDN and the
densities), and a saved pruned codec gets its layers' widths back from the saved tensors.

The models are :mod:`imgcomp.families.balle.model`'s, CompressAI checkpoints load through
:mod:`imgcomp.families.balle.compressai` (the ``compressai`` checkpoint loader), and the family
trains on ``rd`` (:mod:`imgcomp.families.balle.objective`); half exports keep the entropy
densities float32, and an export's model is rebuilt from the ``arch`` / ``N`` / ``M`` at its
metadata's top level.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from torch import Tensor, nn

from imgcomp.codecs.latent import FactorizedLatent, HyperpriorLatent, LatentCodec
from imgcomp.families.balle.compressai import load_compressai
from imgcomp.families.balle.model import (
    ARCHITECTURES,
    BalleModel,
    FactorizedPrior,
    build_model,
    resolve_arch,
)
from imgcomp.families.balle.objective import RateDistortion
from imgcomp.families.balle.structured import layer_width, prune_balle, resize_saved
from imgcomp.families.spec import Component, FamilySpec, Padding
from imgcomp.families.weights import shipped_weights_path
from imgcomp.nn.density import FactorizedDensity, GaussianConditional
from imgcomp.train.config import TrainFamily

__all__ = [
    "BALLE",
    "BALLE_INT8_FLOAT_LAYERS",
    "BALLE_TRAINING",
    "balle_coding_pass",
    "balle_latent",
    "balle_metadata_args",
    "balle_padding",
    "balle_rebuild",
    "balle_train_args",
]


def balle_latent(model: nn.Module) -> LatentCodec:
    """The latent codec of a Ballé model: factorized prior -> :class:`FactorizedLatent`,
    (mean-)scale hyperprior -> :class:`HyperpriorLatent` (the one place that tells them apart)."""
    if isinstance(model, FactorizedPrior):
        return FactorizedLatent(model.y_prior, stride=16)
    if isinstance(model, BalleModel):
        return HyperpriorLatent(
            model.hyper_analysis,
            model.z_prior,
            model.entropy_parameters,
            model.y_conditional,
            stride=16,
            hyper_stride=4,
        )
    raise TypeError(f"no latent codec for {type(model).__name__}; pass latent=")


def balle_padding(model: nn.Module) -> Padding:
    """Edge replication to the architecture's downsampling factor (16, or 64 with a hyperprior)."""
    return Padding(int(model.downsampling_factor), "replicate")


def balle_coding_pass(model: nn.Module, x: Tensor, params: Mapping[str, Any]) -> Tensor:
    """What int8 calibrates on: the quantized latents of ``x`` and their synthesis (every
    transform sees its input; ``params`` change nothing)."""
    return model.synthesis(model.quantize_latents(x)["y_hat"])


def balle_rebuild(config: Mapping[str, Any]) -> nn.Module:
    """A fresh model of ``config`` (arch, N, M); a pruned one's other widths come from
    :func:`~imgcomp.families.balle.structured.resize_saved`."""
    return build_model(config["arch"], config["N"], config["M"])


def _latent_facing(why: str) -> str:
    return f"{why}: 8-bit activations there cost the most quality; low resolution, cheap in float"


#: The convolutions int8 runs on float32 activations (their weights int8), those that read or
#: write a latent: clipped rare large latents and a coarse y before rounding cost the most
#: quality, and at 1/16 resolution float is cheap (:mod:`imgcomp.ops.quant.int8`).
BALLE_INT8_FLOAT_LAYERS = {
    "g_a": {"last": _latent_facing("writes the latents y")},
    "g_s": {"first": _latent_facing("reads the latents y_hat")},
    "h_a": {
        "first": _latent_facing("reads the latents y"),
        "last": _latent_facing("writes the hyper-latents z"),
    },
    "h_s": {
        "first": _latent_facing("reads the hyper-latents z_hat"),
        "last": _latent_facing("writes y's Gaussian parameters"),
    },
}


def balle_train_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """``{"arch", "N", "M"}`` of a Ballé model: arch resolved, widths positive integers."""
    unknown = sorted(set(args) - {"arch", "N", "M"})
    if unknown:
        raise ValueError(f"unknown balle model arguments: {', '.join(map(str, unknown))}")
    out = {
        "arch": resolve_arch(args.get("arch", "mbt2018-mean")),
        "N": args.get("N", 128),
        "M": args.get("M", 192),
    }
    for name in ("N", "M"):
        v = out[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return out


def balle_metadata_args(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """``{"arch", "N", "M"}`` from the top level of an export's metadata, where every Ballé
    export writes them (those before the family seam carry no ``config``); None without
    ``arch``."""
    if "arch" not in metadata:
        return None
    return {
        "arch": resolve_arch(metadata["arch"]),
        "N": int(metadata["N"]),
        "M": int(metadata["M"]),
    }


#: How ``imgcomp train`` builds a Ballé model (the recipe is the global defaults: CompressAI's).
#: Half exports keep the entropy densities in float32 (tiny, and they fix the coder's tables).
BALLE_TRAINING = TrainFamily(
    name="balle",
    normalize=balle_train_args,
    build=lambda a: build_model(a["arch"], a["N"], a["M"]),
    multiple=lambda a: ARCHITECTURES[a["arch"]].downsampling_factor,
    example={"arch": "mbt2018-mean", "N": 8, "M": 12},
    half_float32=(FactorizedDensity, GaussianConditional),
    metadata_args=balle_metadata_args,
    compile_modules=("g_a", "g_s", "h_a", "h_s"),
)

#: The Ballé family (registered by :mod:`imgcomp.families.balle`).
BALLE = FamilySpec(
    name="balle",
    components={
        "encoder": Component("encoder", "encoder", ("g_a",)),
        "decoder": Component("decoder", "decoder", ("g_s",)),
        "entropy": Component(
            "entropy", "probability model", ("h_a", "h_s", "y_prior", "z_prior", "y_conditional")
        ),
    },
    model_types=(BalleModel,),
    latent=balle_latent,
    padding=balle_padding,
    objective="rd",
    checkpoint_formats=("imgcomp", "compressai"),
    checkpoint_loaders={"compressai": load_compressai},
    architectures={arch: partial(build_model, arch) for arch in ARCHITECTURES},
    shipped=shipped_weights_path,
    quant_units={"encoder": ("g_a",), "decoder": ("g_s",), "entropy": ("h_a", "h_s")},
    int8_units=("g_a", "g_s", "h_a", "h_s"),
    int8_float_layers=BALLE_INT8_FLOAT_LAYERS,
    quant_notes={"entropy": "entropy densities (factorized / Gaussian conditional) stay float32"},
    training=BALLE_TRAINING,
    macs_chain=(("g_a", "x", "y"), ("g_s", "y", None), ("h_a", "y", "z"), ("h_s", "z", None)),
    macs_notes={"entropy": "entropy MACs: no hyperprior; factorized densities are not counted"},
    coding_pass=balle_coding_pass,
    structured_prune=prune_balle,
    layer_width=layer_width,
    rebuild=balle_rebuild,
    resize_saved=resize_saved,
    coding_components=("entropy",),
    example=("mean-scale-hyperprior", {"pretrained": False, "N": 8, "M": 12}),
    objectives={"rd": RateDistortion},
    # g_s: four 5x5 stride-2 transposed convolutions, each reading one input pixel either
    # side: 1 + 1/2 + 1/4 + 1/8 latent pixels, so 2 (1 is measurably not enough)
    synthesis_halo=2,
    # g_a: four 5x5 stride-2 convolutions, each reading two input pixels either side:
    # 2/16 + 2/8 + 2/4 + 2/2 = 1.875 latent pixels, so 2
    analysis_halo=2,
)
