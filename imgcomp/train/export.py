"""Trained weights as safetensors: the model's state_dict plus what rebuilds it, as metadata.

``export_weights`` reads a training checkpoint and writes float32 (or float16 with ``half``)
tensors; ``load_weights`` rebuilds the model with its family's builder
(:class:`~imgcomp.train.config.TrainFamily`) and loads it strictly, in float32. With ``half`` the
modules the family names in ``TrainFamily.half_float32`` stay float32 (Ballé: the entropy
densities, factorized and Gaussian scale table: tiny, and they fix the coder's tables).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, load_file, save, save_file
from torch import nn

from imgcomp.errors import CheckpointError
from imgcomp.fsutil import atomic_path
from imgcomp.packed import SUFFIX, is_weights_file, pack, read_safetensors_bytes, safetensors_header
from imgcomp.train.checkpoint import read_checkpoint, resolve_checkpoint
from imgcomp.train.config import TrainFamily, train_families

__all__ = [
    "WEIGHTS_FORMAT",
    "export_weights",
    "fit_quantiles",
    "load_weights",
    "read_metadata",
    "read_weight_shapes",
    "read_weight_tensors",
]

WEIGHTS_FORMAT = "imgcomp.weights/1"

#: Metadata keys export writes besides the model's and the objective's arguments.
_FIXED_METADATA = frozenset(
    {"format", "family", "objective", "steps", "target_steps", "finished", "seed", "data"}
    | {"data_fingerprint", "wall_time_s", "config", "dtype", "quantile_fit_steps", "aux_loss"}
)


def _float32_keys(model: nn.Module, training: TrainFamily | None) -> set[str]:
    """State-dict keys kept in float32 even in half exports: those of the modules the family
    declares (``TrainFamily.half_float32``; Ballé: the entropy densities)."""
    kinds = training.half_float32 if training is not None else ()
    keep: set[str] = set()
    if not kinds:
        return keep
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            prefix = f"{name}." if name else ""
            keep.update(prefix + k for k in module.state_dict())
    return keep


def fit_quantiles(model: nn.Module, steps: int = 20000, lr: float = 0.1) -> float:
    """Fit the model's auxiliary parameters on its auxiliary loss alone (``aux_parameters()``,
    ``aux_loss()``: the split :func:`~imgcomp.train.objectives.train_step` steps too; Ballé:
    every density's ``quantiles``, fitted to its learned tails).

    The quantiles set the entropy coder's symbol range and the quantization offset (median).
    Training fits them alongside the main loss, slowly; a short schedule leaves them loose, so
    export refines them: the loss depends on the density parameters only, no data. Adam with the
    learning rate decayed 100x over ``steps``. Returns the final auxiliary loss (0 for a model
    without auxiliary parameters).
    """
    if not hasattr(model, "aux_parameters"):  # no auxiliary parameters (e.g. the RNN)
        return 0.0
    params = model.aux_parameters()
    if steps <= 0 or not params:
        return float(model.aux_loss().detach())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.01 ** (i / steps))
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            model.aux_loss().backward()
            opt.step()
            sched.step()
    return float(model.aux_loss().detach())


def _source(checkpoint: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, str]]:
    """Model and metadata from a training checkpoint (file or run dir) or an exported file."""
    if is_weights_file(checkpoint):
        return load_weights(checkpoint), dict(read_metadata(checkpoint))
    state = read_checkpoint(checkpoint)
    config = state["config"]
    model = config.build_model()
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, KeyError) as exc:
        where = resolve_checkpoint(checkpoint)
        raise CheckpointError(
            f"{where}: weights do not fit {config.family} {config.model}: {exc}"
        ) from None
    # the model's and the objective's arguments at the top level (Ballé rd: arch, N, M, lmbda),
    # as before the config nested them: load_weights and the recovery lambda read them there
    metadata = {
        "format": WEIGHTS_FORMAT,
        "family": config.family,
        **{k: str(v) for k, v in config.model.items()},
        "objective": config.objective,
        **{k: repr(v) for k, v in config.objective_args.items()},
        "steps": str(state["step"]),
        "target_steps": str(config.steps),
        "finished": str(state["finished"]).lower(),
        "seed": str(config.seed),
        "data": config.data,
        "data_fingerprint": state["data_fingerprint"],
        "wall_time_s": f"{state['elapsed']:.1f}",
        "config": json.dumps(config.to_dict(), sort_keys=True),
    }
    clash = (set(config.model) | set(config.objective_args)) & _FIXED_METADATA
    if clash or set(config.model) & set(config.objective_args):
        raise CheckpointError(f"model or objective arguments clash with metadata keys: {clash}")
    return model, metadata


def export_weights(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    half: bool = False,
    fit_quantile_steps: int = 0,
    finalize: bool = True,
) -> Path:
    """Write the weights of a training checkpoint (file or run directory) as safetensors, or
    packed (:mod:`imgcomp.packed`) when ``out_path`` ends in ``.imgw``.

    ``checkpoint`` may also be an exported ``.safetensors`` / ``.imgw`` file (to re-export it,
    e.g. in float16 or packed). With ``fit_quantile_steps`` the density quantiles are refined first
    (:func:`fit_quantiles`); with ``finalize`` the family's export step runs (the RNN fits its
    code model on the run's training data). Metadata (all strings): format, family, the
    model's arguments (Ballé: arch, N, M), objective, its arguments (rd: lmbda), steps
    (reached), target_steps, finished, seed, data, data_fingerprint, wall_time_s, dtype,
    config (JSON of the whole TrainConfig), and quantile_fit_steps / aux_loss when
    quantiles were refined.
    """
    model, metadata = _source(checkpoint)
    training = train_families().get(metadata.get("family", "balle"))
    if finalize and training is not None and training.finalize is not None:
        metadata.update(training.finalize(model, metadata))
    if fit_quantile_steps > 0:
        aux = fit_quantiles(model, fit_quantile_steps)
        done = int(metadata.get("quantile_fit_steps", "0")) + fit_quantile_steps
        metadata.update(quantile_fit_steps=str(done), aux_loss=f"{aux:.6g}")
    keep32 = _float32_keys(model, training) if half else set()
    tensors = {}
    for key, value in model.state_dict().items():
        t = value.detach().to(torch.float32)
        if half and key not in keep32:
            t = t.to(torch.float16)
            if not bool(torch.isfinite(t).all()):
                raise CheckpointError(f"{key} does not fit in float16; export without --half")
        tensors[key] = t.contiguous()
    metadata["dtype"] = "float16" if half else "float32"
    with atomic_path(out_path) as tmp:
        if Path(out_path).suffix == SUFFIX:
            Path(tmp).write_bytes(pack(save(tensors, metadata=metadata)))
        else:
            save_file(tensors, os.fspath(tmp), metadata=metadata)
    return Path(out_path)


def _packed(path: str | os.PathLike[str]) -> bytes | None:
    """The unpacked safetensors bytes of an ``.imgw`` file; None for any other file."""
    return read_safetensors_bytes(path) if Path(path).suffix == SUFFIX else None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of an exported weights file (CheckpointError if it is not one)."""
    packed = _packed(path)
    try:
        if packed is not None:
            meta = safetensors_header(packed)[1]
        else:
            with safe_open(os.fspath(path), framework="pt") as f:
                meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, CheckpointError) as exc:
        raise CheckpointError(f"cannot read weights {os.fspath(path)!r}: {exc}") from None
    if meta.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{os.fspath(path)!r} is not an imgcomp weights file")
    return meta


def load_weights(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model an exported weights file describes; float32, eval mode, strict load."""
    meta = read_metadata(path)
    _check_shapes_first(path, meta)
    try:
        model, what = _build_from_metadata(meta)
    except (KeyError, ValueError, TypeError) as exc:  # UnknownCodecError is a KeyError
        raise CheckpointError(f"{os.fspath(path)!r}: bad metadata: {exc}") from None
    tensors = read_weight_tensors(path)
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{os.fspath(path)!r} does not fit {what}: {exc}") from None
    return model.to(device).eval()


def _check_shapes_first(path: str | os.PathLike[str], meta: Mapping[str, str]) -> None:
    """CheckpointError unless the model the metadata describes, built on the meta device (no
    memory), has exactly the tensor names and shapes of the file's header: metadata claiming
    N=M=2048 over small tensors must not make the loader allocate a 5 GiB model first.
    Placeholder buffers built empty (a table the load fills, e.g. the RNN's code model) match
    any shape; buffers a module lists in ``sized_by_file`` (a scale table) any shape of their
    rank."""
    where = os.fspath(path)
    try:
        with torch.device("meta"):
            model, what = _build_from_metadata(meta)
    except (KeyError, ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointError(f"{where!r}: bad metadata: {exc}") from None
    stored = read_weight_shapes(where)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sized = {
        f"{name}.{buf}" if name else buf
        for name, m in model.named_modules()
        for buf in getattr(m, "sized_by_file", ())
    }

    def fits(k: str) -> bool:
        if own[k] == stored[k] or math.prod(own[k]) == 0:
            return True
        return k in sized and len(own[k]) == len(stored[k])

    wrong = [
        k for k in sorted(set(own) | set(stored)) if k not in own or k not in stored or not fits(k)
    ]
    if wrong:
        shown = ", ".join(
            f"{k}: {stored.get(k, 'absent')} vs {own.get(k, 'absent')}" for k in wrong[:4]
        )
        raise CheckpointError(
            f"{where!r}: its metadata describes {what}, whose tensors differ from the file's "
            f"({len(wrong)} of them; file vs metadata: {shown})"
        )


def read_weight_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file's header declares, no tensor read (CheckpointError
    if unreadable): what loaders check a file's metadata against before building anything."""
    where = os.fspath(path)
    packed = _packed(path)
    try:
        if packed is not None:
            tensors = safetensors_header(packed)[0]
            return {k: tuple(int(d) for d in info["shape"]) for k, info in tensors.items()}
        with safe_open(where, "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, TypeError, CheckpointError) as exc:
        raise CheckpointError(f"cannot read weights {where!r}: {exc}") from None


def read_weight_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors or ``.imgw``) as stored (CheckpointError if
    unreadable)."""
    packed = _packed(path)
    try:
        return load(packed) if packed is not None else load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, CheckpointError) as exc:
        raise CheckpointError(f"cannot read weights {os.fspath(path)!r}: {exc}") from None


def _build_from_metadata(meta: Mapping[str, str]) -> tuple[nn.Module, str]:
    """A fresh model of the family and arguments an export's metadata names: those of its
    top level where the family reads them there (``TrainFamily.metadata_args``; Ballé exports
    before the family seam carry nothing else), else the ``config``'s."""
    family = meta.get("family", "balle")
    training = train_families().get(family)
    if training is not None and training.metadata_args is not None:
        args = training.metadata_args(meta)
        if args is not None:
            return training.build(args), f"{family} {args}"
    model_args = json.loads(meta["config"])["model"]
    if training is None:
        raise ValueError(f"unknown model family {family!r}")
    args = training.normalize(model_args)
    return training.build(args), f"{family} {args}"
