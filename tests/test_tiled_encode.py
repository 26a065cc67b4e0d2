"""Tiled analysis (imgcomp.codecs.tiling.analyze): bounded encode memory, the same streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

import imgcomp
from imgcomp.codecs.learned import model_input, pad_image
from imgcomp.codecs.tiling import ENCODE_TILE_ENV, analyze, encode_tile_edge, tiles_exactly
from imgcomp.errors import ImgcompError
from imgcomp.registry import family_of

pytestmark = pytest.mark.usefixtures("one_thread")

#: input pixels per tile in these tests: a 1000 x 700 image (padded to 1024 x 704) in 4 x 3 tiles
EDGE = 256


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 1000 x 700 photo: padded on both sides (to 1024 x 704 for the hyperpriors)."""
    a = skdata.astronaut()  # 512 x 512
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    return np.concatenate([a, a[::-1]], axis=0)[:1000, :700].copy()


@pytest.fixture(scope="module")
def shipped():
    return imgcomp.create_codec("mbt2018-mean", quality=3)


def _encode(codec, img: np.ndarray, tile: int) -> bytes:
    codec.encode_tile = tile
    try:
        return codec.encode(img)
    finally:
        codec.encode_tile = None


def _count_analysis_calls(codec, monkeypatch) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    inner = codec.model.analysis

    def spy(x):
        shapes.append(tuple(x.shape))
        return inner(x)

    monkeypatch.setattr(codec.model, "analysis", spy)
    return shapes


# -- the pieces ----------------------------------------------------------------------------------
def test_encode_tile_edge_default_environment_and_override(monkeypatch) -> None:
    monkeypatch.delenv(ENCODE_TILE_ENV, raising=False)
    assert encode_tile_edge() == 2048
    monkeypatch.setenv(ENCODE_TILE_ENV, "1_024")
    assert encode_tile_edge() == 1024
    assert encode_tile_edge(0) == 0
    monkeypatch.setenv(ENCODE_TILE_ENV, "lots")
    with pytest.raises(ImgcompError, match=ENCODE_TILE_ENV):
        encode_tile_edge()
    with pytest.raises(ImgcompError, match="encode_tile"):
        encode_tile_edge(-1)


@pytest.mark.parametrize("mode", ["replicate", "reflect", "constant"])
def test_padded_uint8_image_converts_to_the_padded_model_input(mode) -> None:
    img = np.random.default_rng(0).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    padded = pad_image(img, 16, mode)
    assert padded.shape == (48, 32, 3) and padded.dtype == np.uint8
    assert torch.equal(model_input(padded, 1), model_input(img, 16, mode=mode))
    fits = img[:32, :16]
    assert pad_image(fits, 16, mode) is fits  # nothing to pad: no copy
    with pytest.raises(ImgcompError, match="padding mode"):
        pad_image(img, 16, "circular")


def test_images_within_one_tile_take_one_whole_pass() -> None:
    calls: list[tuple[int, ...]] = []
    x = torch.rand(1, 3, 32, 48)

    def analysis(t):
        calls.append(tuple(t.shape))
        return torch.nn.functional.avg_pool2d(t, 4)

    def window(top, bottom, left, right):
        return x[:, :, top:bottom, left:right]

    assert analyze(analysis, window, 32, 48, scale=4, halo=1, edge=48, device=x.device) is None
    assert calls == []  # the caller runs its own whole-image pass
    y = analyze(analysis, window, 32, 48, scale=4, halo=1, edge=16, device=x.device)
    assert len(calls) == 6 and y is not None
    assert torch.equal(y, analysis(x))  # pooling reads nothing beyond its own block


# -- the same streams ----------------------------------------------------------------------------
def test_shipped_model_encodes_the_same_stream_in_tiles(shipped, photo, monkeypatch) -> None:
    whole = _encode(shipped, photo, 0)
    shapes = _count_analysis_calls(shipped, monkeypatch)
    tiled = _encode(shipped, photo, EDGE)
    assert len(shapes) == 12  # 64 x 44 latents in 4 x 3 tiles
    assert max(max(s[2], s[3]) for s in shapes) <= EDGE + 4 * 16  # a tile and its halo
    assert tiled == whole
    assert np.array_equal(shipped.decode(tiled), shipped.reconstruct(photo))


def test_tiles_match_the_whole_image_at_two_threads(shipped, photo) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        whole = _encode(shipped, photo, 0)
        for edge in (EDGE, 512):
            assert _encode(shipped, photo, edge) == whole
        assert torch.get_num_threads() == 2  # restored after the tiles
    finally:
        torch.set_num_threads(threads)


def test_the_environment_setting_tiles_the_encoder(shipped, photo, monkeypatch) -> None:
    whole = _encode(shipped, photo, 0)
    shapes = _count_analysis_calls(shipped, monkeypatch)
    monkeypatch.setenv(ENCODE_TILE_ENV, "512")
    assert shipped.encode(photo) == whole
    assert len(shapes) == 4  # 64 x 44 latents in 2 x 2 tiles of at most 32


def test_read_only_images_encode_in_tiles(shipped, photo) -> None:
    frozen = photo[:600, :520].copy()
    frozen.flags.writeable = False
    assert _encode(shipped, frozen, EDGE) == _encode(shipped, frozen, 0)


def test_too_small_a_halo_changes_the_stream(shipped, photo) -> None:
    """The declared halo is what exactness needs: one latent pixel less changes the latents."""
    assert family_of(shipped.model).analysis_halo == 2
    whole = _encode(shipped, photo, 0)
    shipped.analysis_halo = 1
    try:
        assert _encode(shipped, photo, EDGE) != whole
    finally:
        shipped.analysis_halo = 2


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"])
def test_every_balle_architecture_encodes_exactly_in_tiles(arch, photo) -> None:
    codec = imgcomp.create_codec(arch, quality=1, pretrained=False, N=16, M=24)
    img = photo[:300, :260]
    assert _encode(codec, img, 64) == _encode(codec, img, 0)


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
def test_ops_keep_the_same_stream_in_tiles(shipped, photo, make) -> None:
    codec = make(shipped)
    assert codec.analysis_halo == 2
    img = photo[:700, :600]
    assert _encode(codec, img, EDGE) == _encode(codec, img, 0)


def test_int8_encodes_the_whole_image(shipped, photo, monkeypatch) -> None:
    """torch's int8 convolutions round by input size, so int8 models are never tiled."""
    codec = imgcomp.quantize(shipped, "int8")
    assert not tiles_exactly(codec.model) and codec.analysis_halo == 0
    shapes = _count_analysis_calls(codec, monkeypatch)
    _encode(codec, photo[:520, :520], EDGE)
    assert len(shapes) == 1


def test_onnxruntime_float_encodes_exactly_in_tiles(shipped, photo) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed ('imgcomp[onnx]')")
    from imgcomp.backends import to_backend

    codec = to_backend(shipped)
    img = photo[:600, :500]
    assert _encode(codec, img, EDGE) == _encode(codec, img, 0)


@pytest.mark.parametrize("name", ["hific", "toderici2017"])
def test_families_without_a_proven_halo_encode_whole(name) -> None:
    codec = imgcomp.create_codec(name, pretrained=False)
    assert codec.analysis_halo == 0
