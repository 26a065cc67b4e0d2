"""Training of the learned codecs (Ballé / Minnen models) and export of their weights.

``train(TrainConfig(...))`` runs or resumes ``<out>/checkpoint.pt``; ``export_weights`` turns a
checkpoint into a safetensors file that ``load_weights`` rebuilds into a model. The objectives
(``OBJECTIVES``, today ``rd``) and the one optimiser step they share (``train_step``, also used by
the recovery fine-tuning of structured pruning) live in :mod:`imgcomp.train.objectives`.
"""

from imgcomp.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    read_checkpoint,
    resolve_checkpoint,
    write_checkpoint,
)
from imgcomp.train.config import (
    ARCH_ALIASES,
    GLOBAL_DEFAULTS,
    RESUME_FREE_FIELDS,
    TrainConfig,
    TrainFamily,
    resolve_arch,
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
)
from imgcomp.train.loop import LOG_NAME, resolve_device, train
from imgcomp.train.objectives import (
    OBJECTIVES,
    Objective,
    Optimizers,
    RateDistortion,
    make_objective,
    make_optimizers,
    psnr_from_mse,
    rd_forward,
    rd_loss,
    train_step,
)

__all__ = [
    "ARCH_ALIASES",
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
    "RateDistortion",
    "TrainConfig",
    "TrainFamily",
    "export_weights",
    "fit_quantiles",
    "load_weights",
    "make_objective",
    "make_optimizers",
    "psnr_from_mse",
    "rd_forward",
    "rd_loss",
    "read_checkpoint",
    "read_metadata",
    "resolve_arch",
    "resolve_checkpoint",
    "resolve_device",
    "resume_mismatches",
    "step_seed",
    "train",
    "train_families",
    "train_step",
    "write_checkpoint",
]
