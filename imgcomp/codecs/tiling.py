"""Analysis and synthesis in tiles with overlap: memory bounded by the tile, the same numbers.

A convolutional transform reads a bounded neighbourhood for each output pixel. A tile of the
latent grid extended by that neighbourhood (the family's ``synthesis_halo`` / ``analysis_halo``,
in latent pixels) on every side, clipped where the grid ends (the whole-image pass pads there in
the same way), gives each pixel of the tile's interior exactly what the whole-image transform
gives. Decoding writes each tile's interior as uint8 into the output image; encoding cuts each
tile's input from the (padded) uint8 image, converts only that to float and writes the tile's
latents into the latent grid; a tile's activations are freed before the next. Only families
whose transforms the tests show to be bit identical in tiles declare a halo (Ballé: 2 each), and
a module whose results depend on its input's size beyond its receptive field says so with a
``tiles_exactly = False`` attribute (torch's int8 transforms), which keeps its model on the whole
image (:func:`tiles_exactly`). Images that fit in one tile take the whole-image pass unchanged.

The tile edge is ``$IMGCOMP_DECODE_TILE`` / ``$IMGCOMP_ENCODE_TILE`` output / input pixels
(default :data:`DEFAULT_TILE_EDGE`; 0 turns tiling off), or a codec's ``decode_tile`` /
``encode_tile`` attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor, nn

from imgcomp.limits import int_setting
from imgcomp.nn.determinism import single_cpu_thread

__all__ = [
    "DEFAULT_TILE_EDGE",
    "ENCODE_TILE_ENV",
    "TILE_ENV",
    "LatentTile",
    "analyze",
    "encode_tile_edge",
    "latent_tiles",
    "synthesize",
    "tile_edge",
    "tiles_exactly",
]

#: Tile edge in image pixels: images up to 2048 x 2048 (4.2 MP) code in one pass.
DEFAULT_TILE_EDGE = 2048
TILE_ENV = "IMGCOMP_DECODE_TILE"
ENCODE_TILE_ENV = "IMGCOMP_ENCODE_TILE"


def tile_edge(override: int | None = None) -> int:
    """The decode tile edge in force (output pixels; 0: no tiling): ``override``, else
    ``$IMGCOMP_DECODE_TILE``, else the default."""
    return int_setting(override, "decode_tile", TILE_ENV, DEFAULT_TILE_EDGE, minimum=0)


def encode_tile_edge(override: int | None = None) -> int:
    """The encode tile edge in force (input pixels; 0: no tiling): ``override``, else
    ``$IMGCOMP_ENCODE_TILE``, else the default."""
    return int_setting(override, "encode_tile", ENCODE_TILE_ENV, DEFAULT_TILE_EDGE, minimum=0)


def tiles_exactly(model: nn.Module) -> bool:
    """False when a module of ``model`` declares ``tiles_exactly = False``."""
    return all(getattr(m, "tiles_exactly", True) is not False for m in model.modules())


@dataclass(frozen=True)
class LatentTile:
    """One tile of a latent grid: the rows / columns it owns (``[r0, r1) x [c0, c1)``) and the
    rows / columns the synthesis reads for it (``[rr0, rr1) x [cc0, cc1)``, the halo added)."""

    r0: int
    r1: int
    c0: int
    c1: int
    rr0: int
    rr1: int
    cc0: int
    cc1: int


def _spans(size: int, tile: int) -> list[tuple[int, int]]:
    """``size`` cut into ceil(size / tile) spans of near-equal length (no sliver at the end)."""
    count = -(-size // tile)
    edges = [round(i * size / count) for i in range(count + 1)]
    return list(pairwise(edges))


def latent_tiles(height: int, width: int, tile: int, halo: int) -> list[LatentTile]:
    """The tiles covering a ``height`` x ``width`` latent grid, at most ``tile`` latent pixels
    on a side, each read with ``halo`` latent pixels of context (clipped to the grid)."""
    if tile < 1 or halo < 0:
        raise ValueError(f"tile must be positive and halo non-negative, got {tile}, {halo}")
    return [
        LatentTile(
            r0,
            r1,
            c0,
            c1,
            max(0, r0 - halo),
            min(height, r1 + halo),
            max(0, c0 - halo),
            min(width, c1 + halo),
        )
        for r0, r1 in _spans(height, tile)
        for c0, c1 in _spans(width, tile)
    ]


def _plan(lat_h: int, lat_w: int, scale: int, halo: int, edge: int) -> list[LatentTile]:
    """The tiles of a ``lat_h`` x ``lat_w`` latent grid at ``edge`` image pixels a side; empty
    when the whole-image pass applies (no halo, no edge, or one tile would cover the grid)."""
    tile = edge // scale if edge else 0
    if halo <= 0 or tile < 1 or (lat_h <= tile and lat_w <= tile):
        return []
    return latent_tiles(lat_h, lat_w, tile, halo)


def _map_tiles(
    run: Callable[[LatentTile], Tensor | np.ndarray],
    tiles: Sequence[LatentTile],
    device: torch.device,
) -> Iterator[tuple[LatentTile, Tensor | np.ndarray]]:
    """``(tile, run(tile))`` in order. On the CPU each tile runs on one thread, as many tiles at
    once as torch has threads: a convolution on a small input may split its sums across threads
    in another order than on the whole image (measured: 1e-7 apart in one transposed convolution
    of 18-row tiles at 2 threads), while one thread sums each output in the same order at any
    size. Autograd and inference modes carry over into the workers."""
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()
    on_cpu = device.type == "cpu"

    def task(t: LatentTile) -> tuple[LatentTile, Tensor | np.ndarray]:
        if on_cpu:
            torch.set_num_threads(1)  # this worker's own thread team too
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return t, run(t)

    workers = min(torch.get_num_threads(), len(tiles)) if on_cpu else 1
    with single_cpu_thread(device), ThreadPoolExecutor(workers) as pool:
        yield from pool.map(task, tiles)


def synthesize(
    synthesis: Callable[[Tensor], Tensor],
    y_hat: Tensor,
    height: int,
    width: int,
    to_image: Callable[[Tensor, int, int], np.ndarray],
    *,
    scale: int,
    halo: int,
    edge: int,
) -> np.ndarray:
    """The uint8 ``height`` x ``width`` image of ``synthesis(y_hat)`` (cropped), in tiles of
    ``edge`` output pixels when the image needs more than one (``halo`` > 0 and ``edge`` > 0);
    ``to_image(x, h, w)`` converts a reconstruction to uint8, cropping to ``h`` x ``w``."""
    tiles = [
        t
        for t in _plan(*y_hat.shape[-2:], scale, halo, edge)
        if t.r0 * scale < height and t.c0 * scale < width  # not wholly in the padding
    ]
    if not tiles:
        return to_image(synthesis(y_hat), height, width)

    def run(t: LatentTile) -> np.ndarray:
        x = synthesis(y_hat[:, :, t.rr0 : t.rr1, t.cc0 : t.cc1])
        rows = min(t.r1 * scale, height) - t.r0 * scale
        cols = min(t.c1 * scale, width) - t.c0 * scale
        dy, dx = (t.r0 - t.rr0) * scale, (t.c0 - t.cc0) * scale
        return to_image(x[:, :, dy : dy + rows, dx : dx + cols], rows, cols)

    out: np.ndarray | None = None
    for t, part in _map_tiles(run, tiles, y_hat.device):
        if out is None:
            out = np.empty((height, width, part.shape[2]), dtype=np.uint8)
        top, left = t.r0 * scale, t.c0 * scale
        out[top : top + part.shape[0], left : left + part.shape[1]] = part
    assert out is not None  # the first tile always holds pixels
    return out


def analyze(
    analysis: Callable[[Tensor], Tensor],
    tile_input: Callable[[int, int, int, int], Tensor],
    height: int,
    width: int,
    *,
    scale: int,
    halo: int,
    edge: int,
    device: torch.device,
) -> Tensor | None:
    """The latents ``analysis(x)`` of a ``height`` x ``width`` input (sides multiples of
    ``scale``), computed in tiles of ``edge`` input pixels; ``tile_input(top, bottom, left,
    right)`` gives that window of ``x``, so the whole float input never exists. None when one
    pass applies (the caller runs the analysis on the whole image itself)."""
    tiles = _plan(height // scale, width // scale, scale, halo, edge)
    if not tiles:
        return None

    def run(t: LatentTile) -> Tensor:
        y = analysis(tile_input(t.rr0 * scale, t.rr1 * scale, t.cc0 * scale, t.cc1 * scale))
        return y[:, :, t.r0 - t.rr0 : t.r1 - t.rr0, t.c0 - t.cc0 : t.c1 - t.cc0]

    out: Tensor | None = None
    for t, part in _map_tiles(run, tiles, device):
        if out is None:
            out = part.new_empty((*part.shape[:2], height // scale, width // scale))
        out[:, :, t.r0 : t.r1, t.c0 : t.c1] = part
    assert out is not None
    return out
