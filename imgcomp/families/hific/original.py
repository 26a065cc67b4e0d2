"""The original checkpoints of ``Justin-Tan/high-fidelity-generative-compression`` (``train.py``).

``utils.save_model`` writes one ``torch.save`` dict: ``model_state_dict`` (``Model.state_dict()``,
CPU tensors), ``compression_optimizer_state_dict`` / ``hyperprior_optimizer_state_dict`` (may hold
CUDA tensors), ``epoch``, ``steps``, ``args`` (a plain dict of the run's public arguments plus
``timestamp``: ``save_model`` converts the argparse Namespace, so a weights-only load reads it)
and, for ``compression_gan``, ``discriminator_state_dict`` / ``discriminator_optimizer_state_dict``.
``utils.load_model`` rebuilds ``Model(Struct(**args))``; this module does the same from the
arguments that shape the network, refuses the options :mod:`imgcomp.families.hific.model` does
not implement, and loads ``model_state_dict`` strictly (missing / extra key, wrong shape, NaN:
:class:`CheckpointError` naming the file). Only ``model_state_dict`` and ``args`` are read.

An evaluation-mode model's state dict also holds entropy-coding tables
(``Hyperprior.hyperprior_entropy_model.*``: a second reference to the density and, after
``build_tables()``, its CDFs; ``Hyperprior.prior_entropy_model.*``: the Gaussian CDFs and scale
table). They are derived from the weights, so they are dropped, never read: a codec rebuilds
them from ``Hyperprior.hyperlatent_likelihood`` and the Gaussian.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from imgcomp.checkpoints import load_plain, load_state_strict
from imgcomp.errors import CheckpointError
from imgcomp.families.hific.model import HYPERLATENT_FILTERS, HiFiC

__all__ = ["DERIVED_PREFIXES", "REQUIRED_ARGS", "config_from_args", "load_original"]

#: ``args`` entries the model is built from (``use_latent_mixture_model`` and ``sample_noise``
#: default to False when absent, as ``load_model``'s backward compatibility does).
REQUIRED_ARGS = (
    "model_type",
    "latent_channels",
    "n_residual_blocks",
    "use_channel_norm",
    "likelihood_type",
    "normalize_input_image",
)

#: Keys of the evaluation-mode entropy-coding modules: derived, so dropped instead of read.
DERIVED_PREFIXES = ("Hyperprior.hyperprior_entropy_model.", "Hyperprior.prior_entropy_model.")

_MODEL_TYPES = ("compression", "compression_gan")


def load_original(path: str | os.PathLike[str]) -> HiFiC:
    """The model of an original ``train.py`` checkpoint, rebuilt from its ``args``, in eval mode.

    The Discriminator is included when the state dict holds its keys (``compression_gan``
    saved in training mode); inference never uses it.
    """
    where = os.fspath(path)
    ckpt = load_plain(path)
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt:
        raise CheckpointError(
            f"{where!r} is not an original HiFiC checkpoint: train.py saves a dict with "
            "'model_state_dict' and 'args'"
        )
    if "args" not in ckpt:
        raise CheckpointError(
            f"{where!r} has no 'args': the original HiFiC checkpoint records the run's "
            "arguments the model is rebuilt from"
        )
    config = config_from_args(ckpt["args"], where)
    state = _state_dict(ckpt["model_state_dict"], where)
    # a compression_gan model saved in training mode; "compression" has none (extra keys)
    gan = ckpt["args"]["model_type"] == "compression_gan"
    with_disc = gan and any(k.startswith("Discriminator.") for k in state)
    model = HiFiC(**config, discriminator=with_disc)
    _load_strict(model, state, where)
    return model.eval()


def config_from_args(args: object, where: str = "checkpoint") -> dict[str, Any]:
    """``HiFiC`` keyword arguments (without ``discriminator``) from an original ``args`` dict.

    Refuses, as :class:`CheckpointError`, what the model does not implement: the latent mixture
    model, a non-Gaussian likelihood, instance norm, generator noise, [-1, 1] images with the
    output tanh, a model type other than ``compression`` / ``compression_gan`` and non-RGB input.
    """
    if not isinstance(args, Mapping):
        raise CheckpointError(
            f"{where!r}: 'args' is {type(args).__name__}, the original saves a dict of the "
            "run's arguments"
        )
    missing = [k for k in REQUIRED_ARGS if k not in args]
    if missing:
        raise CheckpointError(f"{where!r}: 'args' lacks {missing}, needed to rebuild the model")

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"{where!r}: {what} is not implemented by imgcomp's HiFiC")

    if args["model_type"] not in _MODEL_TYPES:
        raise refuse(f"model_type={args['model_type']!r} (only {list(_MODEL_TYPES)})")
    if args.get("use_latent_mixture_model", False) is not False:
        raise refuse("use_latent_mixture_model=True (the discretised logistic mixture prior)")
    if args["likelihood_type"] != "gaussian":
        raise refuse(f"likelihood_type={args['likelihood_type']!r} (only 'gaussian')")
    if args["use_channel_norm"] is not True:
        raise refuse("use_channel_norm=False (instance norm)")
    if args.get("sample_noise", False) is not False:
        raise refuse("sample_noise=True (noise concatenated in the generator)")
    if args["normalize_input_image"] is not False:
        raise refuse("normalize_input_image=True ([-1, 1] images and an output tanh)")
    dims = args.get("image_dims")
    if dims is not None and (not isinstance(dims, (list, tuple)) or not dims or dims[0] != 3):
        raise refuse(f"image_dims={dims!r} (only 3-channel images)")
    config: dict[str, Any] = {"hyperlatent_filters": HYPERLATENT_FILTERS}
    for key, minimum in (("latent_channels", 1), ("n_residual_blocks", 1)):
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CheckpointError(f"{where!r}: args[{key!r}] = {value!r} is not an integer >= 1")
        config[key] = value
    return config


def _state_dict(state: object, where: str) -> dict[str, Tensor]:
    """``model_state_dict`` as str -> Tensor, the derived entropy-coding keys dropped."""
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{where!r}: 'model_state_dict' is not a state dict of tensors")
    return {k: v for k, v in state.items() if not k.startswith(DERIVED_PREFIXES)}


def _load_strict(model: HiFiC, state: dict[str, Tensor], where: str) -> None:
    load_state_strict(model, state, where, f"the original HiFiC model (config {model.config})")
