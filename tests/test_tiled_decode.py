"""Tiled synthesis (imgcomp.codecs.tiling): bounded decode memory with the whole-image pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

import imgcomp
from imgcomp.codecs.tiling import TILE_ENV, latent_tiles, synthesize, tile_edge, tiles_exactly
from imgcomp.errors import ImgcompError
from imgcomp.registry import family_of

pytestmark = pytest.mark.usefixtures("one_thread")

#: output pixels per tile in these tests: a 1000 x 700 image decodes in 4 x 3 tiles
EDGE = 256


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 1000 x 700 photo (odd multiples of nothing: padded and cropped on both sides)."""
    a = skdata.astronaut()  # 512 x 512
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    return np.concatenate([a, a[::-1]], axis=0)[:1000, :700].copy()


@pytest.fixture(scope="module")
def shipped():
    return imgcomp.create_codec("mbt2018-mean", quality=3)


def _decode(codec, stream: bytes, tile: int) -> np.ndarray:
    codec.decode_tile = tile
    try:
        return codec.decode(stream)
    finally:
        codec.decode_tile = None


def _count_synthesis_calls(codec, monkeypatch) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    inner = codec.model.synthesis

    def spy(y):
        shapes.append(tuple(y.shape))
        return inner(y)

    monkeypatch.setattr(codec.model, "synthesis", spy)
    return shapes


# -- the tile plan -----------------------------------------------------------------------------
@pytest.mark.parametrize(("h", "w", "tile", "halo"), [(64, 44, 16, 2), (7, 5, 3, 1), (9, 9, 9, 4)])
def test_tiles_partition_the_grid_and_read_their_halo(h, w, tile, halo) -> None:
    owned = np.zeros((h, w), dtype=int)
    for t in latent_tiles(h, w, tile, halo):
        assert t.r1 - t.r0 <= tile and t.c1 - t.c0 <= tile
        owned[t.r0 : t.r1, t.c0 : t.c1] += 1
        assert (t.rr0, t.cc0) == (max(0, t.r0 - halo), max(0, t.c0 - halo))
        assert (t.rr1, t.cc1) == (min(h, t.r1 + halo), min(w, t.c1 + halo))
    assert (owned == 1).all()


def test_tiles_are_near_equal() -> None:
    sizes = {t.r1 - t.r0 for t in latent_tiles(33, 1, 16, 0)}
    assert sizes == {11}  # 3 spans of 11, not 16 + 16 + 1


def test_tile_plan_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        latent_tiles(4, 4, 0, 1)
    with pytest.raises(ValueError):
        latent_tiles(4, 4, 2, -1)


def test_tile_edge_default_environment_and_override(monkeypatch) -> None:
    monkeypatch.delenv(TILE_ENV, raising=False)
    assert tile_edge() == 2048
    monkeypatch.setenv(TILE_ENV, "1_024")
    assert tile_edge() == 1024
    assert tile_edge(0) == 0
    monkeypatch.setenv(TILE_ENV, "0")
    assert tile_edge() == 0
    for bad in ("big", "-1"):
        monkeypatch.setenv(TILE_ENV, bad)
        with pytest.raises(ImgcompError, match=TILE_ENV):
            tile_edge()
    with pytest.raises(ImgcompError, match="decode_tile"):
        tile_edge(-5)


def test_small_images_take_one_whole_pass() -> None:
    calls = []

    def synthesis(y):
        calls.append(tuple(y.shape))
        return y[:, :3].repeat_interleave(4, 2).repeat_interleave(4, 3)

    y = torch.rand(1, 3, 8, 8)
    to_image = lambda x, h, w: (x[0, :, :h, :w].permute(1, 2, 0) * 255).to(torch.uint8).numpy()  # noqa: E731
    synthesize(synthesis, y, 30, 31, to_image, scale=4, halo=1, edge=32)
    assert calls == [(1, 3, 8, 8)]
    calls.clear()
    out = synthesize(synthesis, y, 30, 31, to_image, scale=4, halo=1, edge=16)
    assert len(calls) == 4 and out.shape == (30, 31, 3)
    assert np.array_equal(out, to_image(synthesis(y), 30, 31))


# -- the same pixels -----------------------------------------------------------------------------
def test_shipped_model_decodes_the_same_pixels_in_tiles(shipped, photo, monkeypatch) -> None:
    stream = shipped.encode(photo)
    whole = _decode(shipped, stream, 0)
    shapes = _count_synthesis_calls(shipped, monkeypatch)
    tiled = _decode(shipped, stream, EDGE)
    assert len(shapes) == 12  # padded to 1024 x 704: 64 x 44 latents in 4 x 3 tiles
    assert max(s[2] for s in shapes) <= EDGE // 16 + 4
    assert tiled.shape == photo.shape
    assert np.array_equal(tiled, whole)


def test_tiles_match_the_whole_image_at_two_threads(shipped, photo) -> None:
    """Two tiles at a time, each on one thread: at 2 threads small inputs sum in another order
    (18 pixels one level apart when the tiles themselves ran on 2 threads)."""
    stream = shipped.encode(photo)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        whole = _decode(shipped, stream, 0)
        for edge in (EDGE, 512):
            assert np.array_equal(_decode(shipped, stream, edge), whole)
        assert torch.get_num_threads() == 2  # restored after the tiles
    finally:
        torch.set_num_threads(threads)


def test_reconstruct_and_decode_agree_in_tiles(shipped, photo) -> None:
    shipped.decode_tile = EDGE
    try:
        assert np.array_equal(shipped.decode(shipped.encode(photo)), shipped.reconstruct(photo))
    finally:
        shipped.decode_tile = None


def test_too_small_a_halo_changes_pixels(shipped, photo) -> None:
    """The declared halo is what exactness needs: one latent pixel less changes the image."""
    assert family_of(shipped.model).synthesis_halo == 2
    stream = shipped.encode(photo)
    whole = _decode(shipped, stream, 0)
    shipped.synthesis_halo = 1
    try:
        assert not np.array_equal(_decode(shipped, stream, EDGE), whole)
    finally:
        shipped.synthesis_halo = 2


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"])
def test_every_balle_architecture_tiles_exactly(arch, photo) -> None:
    codec = imgcomp.create_codec(arch, quality=1, pretrained=False, N=16, M=24)
    stream = codec.encode(photo[:300, :260])
    assert np.array_equal(_decode(codec, stream, 64), _decode(codec, stream, 0))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda c: imgcomp.quantize(c, "bf16"), id="bf16"),
        pytest.param(lambda c: imgcomp.quantize(c, "w4"), id="w4"),
        pytest.param(
            lambda c: imgcomp.prune(c, 0.3, 0.3, 0.3, method="structured", recover_steps=0),
            id="structured",
        ),
    ],
)
def test_ops_keep_the_same_pixels_in_tiles(shipped, photo, make) -> None:
    codec = make(shipped)
    assert codec.synthesis_halo == 2
    stream = codec.encode(photo)
    assert np.array_equal(_decode(codec, stream, EDGE), _decode(codec, stream, 0))


def test_int8_decodes_on_the_whole_image(shipped, photo, monkeypatch) -> None:
    """torch's int8 convolutions round by input size, so int8 models are never tiled."""
    codec = imgcomp.quantize(shipped, "int8")
    assert not tiles_exactly(codec.model) and codec.synthesis_halo == 0
    shapes = _count_synthesis_calls(codec, monkeypatch)
    _decode(codec, codec.encode(photo[:520, :520]), EDGE)
    assert len(shapes) == 1


def test_onnxruntime_float_tiles_exactly(shipped, photo) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed ('imgcomp[onnx]')")
    from imgcomp.backends import to_backend

    codec = to_backend(shipped)
    stream = codec.encode(photo[:600, :500])
    assert np.array_equal(_decode(codec, stream, EDGE), _decode(codec, stream, 0))


@pytest.mark.parametrize("name", ["hific", "toderici2017"])
def test_families_without_a_proven_halo_are_not_tiled(name) -> None:
    codec = imgcomp.create_codec(name, pretrained=False)
    assert codec.synthesis_halo == 0
