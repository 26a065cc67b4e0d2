"""Tiled synthesis and analysis (imgcomp.codecs.tiling): bounded decode and encode memory with the
whole-image pixels and streams."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skdata

import imgcomp
from imgcomp.codecs.learned import model_input, pad_image
from imgcomp.codecs.tiling import (
    ENCODE_TILE_ENV,
    TILE_ENV,
    analyze,
    encode_tile_edge,
    latent_tiles,
    synthesize,
    tile_edge,
    tiles_exactly,
)
from imgcomp.errors import ImgcompError
from imgcomp.registry import family_of

pytestmark = pytest.mark.usefixtures("one_thread")

#: image pixels per tile in these tests: a 1000 x 700 image (padded to 1024 x 704, 64 x 44
#: latents) codes in 4 x 3 tiles
EDGE = 256


@dataclass(frozen=True)
class Direction:
    """Decoding (the synthesis in tiles) or encoding (the analysis in tiles)."""

    name: str
    tile_attr: str  # the codec's tile edge attribute
    halo_attr: str  # the codec's halo attribute (the family's field of the same name)
    transform: str  # the model's method that runs in tiles
    env: str

    def run(self, codec, img: np.ndarray, tile: int) -> bytes | np.ndarray:
        """The stream (encoding) or the pixels (decoding, of a whole-image stream) at ``tile``."""
        stream = _with_tile(codec, "encode_tile", 0, codec.encode, img) if self.decodes else None
        if self.decodes:
            return _with_tile(codec, self.tile_attr, tile, codec.decode, stream)
        return _with_tile(codec, self.tile_attr, tile, codec.encode, img)

    @property
    def decodes(self) -> bool:
        return self.name == "decode"


DECODE = Direction("decode", "decode_tile", "synthesis_halo", "synthesis", TILE_ENV)
ENCODE = Direction("encode", "encode_tile", "analysis_halo", "analysis", ENCODE_TILE_ENV)
BOTH = pytest.mark.parametrize("way", [DECODE, ENCODE], ids=lambda d: d.name)


def _with_tile(codec, attr: str, tile: int, call, arg):
    setattr(codec, attr, tile)
    try:
        return call(arg)
    finally:
        setattr(codec, attr, None)


def _same(a, b) -> bool:
    return a == b if isinstance(a, bytes) else np.array_equal(a, b)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 1000 x 700 photo (odd multiples of nothing: padded and cropped on both sides)."""
    a = skdata.astronaut()  # 512 x 512
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    return np.concatenate([a, a[::-1]], axis=0)[:1000, :700].copy()


@pytest.fixture(scope="module")
def shipped():
    return imgcomp.create_codec("mbt2018-mean", quality=3)


def _count_calls(codec, method: str, monkeypatch) -> list[tuple[int, ...]]:
    """The input shapes of every call of the model's ``method`` from now on."""
    shapes: list[tuple[int, ...]] = []
    inner = getattr(codec.model, method)

    def spy(t):
        shapes.append(tuple(t.shape))
        return inner(t)

    monkeypatch.setattr(codec.model, method, spy)
    return shapes


# -- the tile plan and settings ------------------------------------------------------------------
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


@pytest.mark.parametrize(
    ("edge", "env", "attr"),
    [(tile_edge, TILE_ENV, "decode_tile"), (encode_tile_edge, ENCODE_TILE_ENV, "encode_tile")],
    ids=["decode", "encode"],
)
def test_tile_edge_default_environment_and_override(edge, env, attr, monkeypatch) -> None:
    monkeypatch.delenv(env, raising=False)
    assert edge() == 2048
    monkeypatch.setenv(env, "1_024")
    assert edge() == 1024
    assert edge(0) == 0
    monkeypatch.setenv(env, "0")
    assert edge() == 0
    for bad in ("big", "-1"):
        monkeypatch.setenv(env, bad)
        with pytest.raises(ImgcompError, match=env):
            edge()
    with pytest.raises(ImgcompError, match=attr):
        edge(-5)


@pytest.mark.parametrize("mode", ["replicate", "reflect", "constant"])
def test_model_input_pads_as_torch_pads_the_float_image(mode) -> None:
    # the uint8 padding gives the values torch's own padding of the float tensor gives (what
    # every stream was written with before the padding moved to uint8)
    img = np.random.default_rng(0).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    padded = pad_image(img, 16, mode)
    assert padded.shape == (48, 32, 3) and padded.dtype == np.uint8
    reference = F.pad(model_input(img, 1), (0, 3, 0, 11), mode=mode)
    assert torch.equal(model_input(img, 16, mode=mode), reference)
    assert torch.equal(model_input(padded, 1), reference)
    fits = img[:32, :16]
    assert pad_image(fits, 16, mode) is fits  # nothing to pad: no copy
    with pytest.raises(ImgcompError, match="padding mode"):
        pad_image(img, 16, "circular")


def test_small_images_take_one_whole_synthesis() -> None:
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


def test_small_images_take_one_whole_analysis() -> None:
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


# -- the same pixels and streams -----------------------------------------------------------------
@BOTH
def test_shipped_model_codes_the_same_in_tiles(way, shipped, photo, monkeypatch) -> None:
    whole = way.run(shipped, photo, 0)
    shapes = _count_calls(shipped, way.transform, monkeypatch)
    tiled = way.run(shipped, photo, EDGE)
    assert len(shapes) == 12  # 64 x 44 latents in 4 x 3 tiles
    scale = 16 if way.decodes else 1  # the shapes are of latents, or of image pixels
    assert max(max(s[2], s[3]) for s in shapes) * scale <= EDGE + 4 * 16  # a tile, its halo
    assert _same(tiled, whole)
    if way.decodes:
        assert tiled.shape == photo.shape


@BOTH
def test_tiles_match_the_whole_image_at_two_threads(way, shipped, photo) -> None:
    """Two tiles at a time, each on one thread: at 2 threads small inputs sum in another order
    (18 pixels one level apart when decoding tiles themselves ran on 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        whole = way.run(shipped, photo, 0)
        for edge in (EDGE, 512):
            assert _same(way.run(shipped, photo, edge), whole)
        assert torch.get_num_threads() == 2  # restored after the tiles
    finally:
        torch.set_num_threads(threads)


@BOTH
def test_the_environment_setting_tiles(way, shipped, photo, monkeypatch) -> None:
    whole = way.run(shipped, photo, 0)
    stream = _with_tile(shipped, "encode_tile", 0, shipped.encode, photo)
    monkeypatch.setenv(way.env, "512")
    shapes = _count_calls(shipped, way.transform, monkeypatch)
    assert _same(shipped.decode(stream) if way.decodes else shipped.encode(photo), whole)
    assert len(shapes) == 4  # 64 x 44 latents in 2 x 2 tiles of at most 32


def test_reconstruct_and_decode_agree_in_tiles(shipped, photo) -> None:
    shipped.decode_tile = shipped.encode_tile = EDGE
    try:
        assert np.array_equal(shipped.decode(shipped.encode(photo)), shipped.reconstruct(photo))
    finally:
        shipped.decode_tile = shipped.encode_tile = None


def test_read_only_images_encode_in_tiles(shipped, photo) -> None:
    frozen = photo[:600, :520].copy()
    frozen.flags.writeable = False
    assert ENCODE.run(shipped, frozen, EDGE) == ENCODE.run(shipped, frozen, 0)


@BOTH
def test_too_small_a_halo_changes_the_result(way, shipped, photo) -> None:
    """The declared halo is what exactness needs: one latent pixel less changes the output."""
    assert getattr(family_of(shipped.model), way.halo_attr) == 2
    whole = way.run(shipped, photo, 0)
    setattr(shipped, way.halo_attr, 1)
    try:
        assert not _same(way.run(shipped, photo, EDGE), whole)
    finally:
        setattr(shipped, way.halo_attr, 2)


@BOTH
@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"])
def test_every_balle_architecture_tiles_exactly(way, arch, photo) -> None:
    codec = imgcomp.create_codec(arch, quality=1, pretrained=False, N=16, M=24)
    img = photo[:300, :260]
    assert _same(way.run(codec, img, 64), way.run(codec, img, 0))


@BOTH
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
def test_ops_keep_the_same_result_in_tiles(way, shipped, photo, make) -> None:
    codec = make(shipped)
    assert getattr(codec, way.halo_attr) == 2
    img = photo[:700, :600]
    assert _same(way.run(codec, img, EDGE), way.run(codec, img, 0))


@BOTH
def test_int8_codes_the_whole_image(way, shipped, photo, monkeypatch) -> None:
    """torch's int8 convolutions round by input size, so int8 models are never tiled."""
    codec = imgcomp.quantize(shipped, "int8")
    assert not tiles_exactly(codec.model) and getattr(codec, way.halo_attr) == 0
    shapes = _count_calls(codec, way.transform, monkeypatch)
    way.run(codec, photo[:520, :520], EDGE)
    assert len(shapes) == 1


@BOTH
def test_onnxruntime_float_tiles_exactly(way, shipped, photo) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed ('imgcomp[onnx]')")
    from imgcomp.backends import to_backend

    codec = to_backend(shipped)
    img = photo[:600, :500]
    assert _same(way.run(codec, img, EDGE), way.run(codec, img, 0))


@pytest.mark.parametrize("name", ["hific", "toderici2017"])
def test_families_without_a_proven_halo_are_not_tiled(name) -> None:
    codec = imgcomp.create_codec(name, pretrained=False)
    assert codec.synthesis_halo == 0 and codec.analysis_halo == 0
