"""Calibration data for static int8 quantization: training crops (never Kodak) and the inputs
each transform sees on them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from imgcomp.codecs.learned import model_input
from imgcomp.errors import ImgcompError
from imgcomp.images import validate_rgb8
from imgcomp.registry import family_of

__all__ = ["calibration_images", "capture_inputs", "image_tensor"]


def calibration_images(
    n: int = 8, size: int = 256, seed: int = 0, data_dir: str | os.PathLike[str] | None = None
) -> list[np.ndarray]:
    """``n`` uint8 (H, W, 3) crops of at most ``size`` x ``size`` from the training images.

    Files and crop positions come from ``numpy.random.default_rng(seed)`` over the files of
    :func:`imgcomp.trainsets.load_training_set` (which refuses Kodak), so the same arguments
    give the same crops. ``data_dir`` is a training-data spec: by default ``$IMGCOMP_TRAIN_DIR``,
    else the offline bundled set.
    """
    from imgcomp.train.data import load_training_image
    from imgcomp.trainsets import load_training_set

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ImgcompError(f"n must be a positive integer, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ImgcompError(f"size must be an integer >= 16, got {size!r}")
    files = load_training_set(data_dir).files
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(files), size=n, replace=n > len(files))
    crops = []
    for i in picks:
        img = load_training_image(files[int(i)])
        h, w = img.shape[:2]
        ch, cw = min(size, h), min(size, w)
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        crops.append(np.ascontiguousarray(img[top : top + ch, left : left + cw]))
    return crops


def image_tensor(img: np.ndarray, factor: int) -> Tensor:
    """[1, 3, H', W'] float32 in [0, 1], edge-padded to multiples of ``factor`` (as codecs do)."""
    return model_input(validate_rgb8(img), factor)


def _clone(value: object) -> object:
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    return value


def _coding_pass(model: nn.Module) -> Callable[[Tensor], object]:
    """``x -> `` the coding pass of ``model``'s family on ``x`` (ImgcompError if it has none)."""
    family = family_of(model)
    coding_pass = family.coding_pass
    if coding_pass is None:
        raise ImgcompError(f"the {family.name} family declares no coding pass to calibrate on")
    return lambda x: coding_pass(model, x, {})


def capture_inputs(
    model: nn.Module,
    modules: dict[str, nn.Module],
    images: Sequence[np.ndarray],
    run: Callable[[Tensor], object] | None = None,
) -> dict[str, list[Tensor]]:
    """The input of each of ``modules`` (name -> submodule of ``model``) while the float model
    encodes and reconstructs each image in eval mode: what calibration must see. ``run(x)`` is
    that computation, by default the coding pass the model's family declares
    (``FamilySpec.coding_pass``; Ballé: the quantized latents and their synthesis); ``x`` is
    padded to the model's ``input_multiple`` (else its downsampling factor)."""
    if len(images) == 0:
        raise ImgcompError("calibration needs at least one image")
    if run is None:
        run = _coding_pass(model)
    seen: dict[str, list[Tensor]] = {name: [] for name in modules}

    def record(name: str, args: tuple) -> None:
        # one input: the tensor; several (a recurrent cell's x, (h, c)): the argument tuple
        kept = _clone(args[0] if len(args) == 1 else args)
        seen[name].append(kept)

    hooks = [
        m.register_forward_pre_hook(lambda _m, args, name=name: record(name, args))
        for name, m in modules.items()
    ]
    try:
        with torch.no_grad():
            factor = int(getattr(model, "input_multiple", model.downsampling_factor))
            for img in images:
                run(image_tensor(img, factor))
    finally:
        for h in hooks:
            h.remove()
    return seen
