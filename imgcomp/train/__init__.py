"""Training of the learned codecs (every family that declares ``training``) and export of their
weights.

``train(TrainConfig(...))`` runs or resumes ``<out>/checkpoint.pt``; ``export_weights`` turns a
checkpoint into a safetensors file that ``load_weights`` rebuilds into a model. The objectives
(``OBJECTIVES``: those the families declare, e.g. Ballé's ``rd`` in
:mod:`imgcomp.families.balle.objective`) and the one optimiser step they share (``train_step``,
also used by the recovery fine-tuning of structured pruning) live in
:mod:`imgcomp.train.objectives`.
"""

from imgcomp.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    read_checkpoint,
    resolve_checkpoint,
    write_checkpoint,
)
from imgcomp.train.config import (
    GLOBAL_DEFAULTS,
    RESUME_FREE_FIELDS,
    TrainConfig,
    TrainFamily,
    resume_mismatches,
    train_families,
)
from imgcomp.train.data import PatchSampler, step_seed
from imgcomp.train.export import (
    WEIGHTS_FORMAT,
    export_weights,
    fit_quantiles,
    load_weights,
    read_metadata,
    read_weight_tensors,
)
from imgcomp.train.loop import LOG_NAME, resolve_device, train
from imgcomp.train.objectives import (
    OBJECTIVES,
    Objective,
    Optimizers,
    make_objective,
    make_optimizers,
    psnr_from_mse,
    train_step,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "GLOBAL_DEFAULTS",
    "LOG_NAME",
    "OBJECTIVES",
    "RESUME_FREE_FIELDS",
    "WEIGHTS_FORMAT",
    "Objective",
    "Optimizers",
    "PatchSampler",
    "TrainConfig",
    "TrainFamily",
    "export_weights",
    "fit_quantiles",
    "load_weights",
    "make_objective",
    "make_optimizers",
    "psnr_from_mse",
    "read_checkpoint",
    "read_metadata",
    "read_weight_tensors",
    "resolve_checkpoint",
    "resolve_device",
    "resume_mismatches",
    "step_seed",
    "train",
    "train_families",
    "train_step",
    "write_checkpoint",
]
