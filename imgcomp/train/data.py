"""Training patches: every image of a folder held in memory, random crops drawn per step.

The crops of step ``k`` come from a generator seeded by ``(seed, k)`` alone, so a resumed run sees
exactly the batches an uninterrupted one would. On CUDA the images live on the GPU and are cropped
there; only the few random integers are drawn on the CPU.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from imgcomp.errors import DatasetError
from imgcomp.images import load_image
from imgcomp.trainsets import refuse_kodak_pixels

__all__ = [
    "PatchSampler",
    "load_training_image",
    "step_seed",
]


def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for random stream ``stream`` of ``step``, independent across all three."""
    state = np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(2, np.uint64)
    return int(state[0]) & (2**63 - 1)


def load_training_image(path: Path) -> np.ndarray:
    """A training image as uint8 H x W x 3, refused when its pixels are a Kodak image's."""
    return refuse_kodak_pixels(load_image(path), path)


def _load_all(files: list[Path], workers: int) -> list[np.ndarray]:
    if workers <= 1 or len(files) < 2:
        return [load_training_image(p) for p in files]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without the GIL
        return list(pool.map(load_training_image, files))


def _pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad (mirror without repeating the edge) an H x W x 3 image to at least size^2."""
    h, w = img.shape[:2]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if not ph and not pw:
        return img
    mode = "reflect" if min(h, w) > 1 else "symmetric"  # a 1-pixel side has nothing to mirror
    return np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=mode)


class PatchSampler:
    """uint8 images [3,H,W] held on ``device``; ``batch(seed, step, n)`` gives float crops in [0,1].

    Images smaller than the patch in either side are reflect-padded once at load time.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        patch_size: int,
        device: torch.device | str = "cpu",
    ) -> None:
        if not images:
            raise DatasetError("no training images")
        self.patch_size = int(patch_size)
        self.device = torch.device(device)
        self.images: list[Tensor] = [
            torch.from_numpy(np.ascontiguousarray(_pad_to(img, self.patch_size).transpose(2, 0, 1)))
            .to(self.device)
            .contiguous()
            for img in images
        ]
        self._sizes = [(int(t.shape[1]), int(t.shape[2])) for t in self.images]

    @classmethod
    def from_files(
        cls,
        files: list[Path],
        patch_size: int,
        device: torch.device | str = "cpu",
        workers: int | None = None,
    ) -> PatchSampler:
        """Read ``files`` with imgcomp.images.load_image (threaded) and hold them."""
        n = workers if workers is not None else min(8, os.cpu_count() or 1)
        return cls(_load_all(files, n), patch_size, device)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        """Bytes the images take on their device."""
        return sum(t.numel() for t in self.images)

    def crop_params(self, seed: int, step: int, n: int) -> list[tuple[int, int, int, bool]]:
        """``(image index, top, left, hflip)`` of each crop; a function of (seed, step, n) only."""
        g = torch.Generator().manual_seed(step_seed(seed, step, 0))
        index = torch.randint(len(self.images), (n,), generator=g).tolist()
        u = torch.rand(n, 3, generator=g, dtype=torch.float64).tolist()
        p = self.patch_size
        out = []
        for i, (ut, ul, uf) in zip(index, u, strict=True):
            h, w = self._sizes[i]
            top = min(int(ut * (h - p + 1)), h - p)
            left = min(int(ul * (w - p + 1)), w - p)
            out.append((i, top, left, uf < 0.5))
        return out

    def batch(self, seed: int, step: int, batch_size: int) -> Tensor:
        """``batch_size`` random crops (random horizontal flips) as float32 [B,3,P,P] in [0,1]."""
        p = self.patch_size
        crops = []
        for i, top, left, flip in self.crop_params(seed, step, batch_size):
            crop = self.images[i][:, top : top + p, left : left + p]
            crops.append(torch.flip(crop, dims=(2,)) if flip else crop)
        return torch.stack(crops).to(torch.float32).div_(255.0)
