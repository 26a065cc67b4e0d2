"""Fitting the RNN codec's learned code model: context statistics of its codes on training images.

The codes' context model (:mod:`imgcomp.entropy.binary_context`) is fitted after training, at
export: the model encodes center crops of training images for 16 iterations, the contexts' bit
counts become 16-bit P(+1) frequencies, stored in the model's ``code_model`` buffer (and so in
the weights file and the codec's fingerprint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from imgcomp.codecs.learned import model_input
from imgcomp.entropy.binary_context import context_counts, fit_frequencies
from imgcomp.families.rnn.model import MAX_ITERATIONS, TodericiRNN
from imgcomp.trainsets import load_training_set

__all__ = ["FIT_CROP", "FIT_IMAGES", "finalize_export", "fit_code_model"]

FIT_IMAGES = 32
FIT_CROP = 256


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return img[top : top + size, left : left + size]


@torch.inference_mode()
def fit_code_model(
    model: TodericiRNN, images: Sequence[np.ndarray], crop: int = FIT_CROP, prior: float = 0.5
) -> np.ndarray:
    """The context frequencies [C, buckets, contexts] of the model's codes of ``images`` (center
    crops of ``crop`` pixels, 16 iterations), set as ``model.code_model`` and returned."""
    model.eval()
    counts = None
    for img in images:
        x = model_input(_center_crop(img, crop), model.input_multiple)
        codes = model.analysis(x, MAX_ITERATIONS).cpu().numpy().astype(np.int8)
        c = context_counts(codes)
        counts = c if counts is None else counts + c
    if counts is None:
        raise ValueError("fitting the code model needs at least one image")
    freqs = fit_frequencies(counts, prior)
    model.code_model = torch.from_numpy(freqs)
    return freqs


def finalize_export(model: TodericiRNN, metadata: Mapping[str, str]) -> dict[str, str]:
    """Export step of the family: fit the code model on the run's training data (its first
    :data:`FIT_IMAGES` images); returns the metadata it adds."""
    from imgcomp.images import load_image

    trainset = load_training_set(metadata["data"], progress=False)
    files = list(trainset.files)[:FIT_IMAGES]
    fit_code_model(model, [load_image(p) for p in files])
    return {"code_model": f"fitted on {len(files)} {metadata['data']} images, {FIT_CROP}px crops"}
