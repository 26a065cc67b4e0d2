"""Learned codecs through real bytes: exact round trip, CompressAI references, hostile streams."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp.bitstream import StreamHeader, pack, unpack
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import (
    BitstreamError,
    CheckpointError,
    CodecMismatchError,
    ImageError,
    ImgcompError,
)

NAMES = ["factorized-prior", "scale-hyperprior", "mean-scale-hyperprior"]
ALIASES = {
    "factorized-prior": "bmshj2018-factorized",
    "scale-hyperprior": "bmshj2018-hyperprior",
    "mean-scale-hyperprior": "mbt2018-mean",
}


def _tiny(name: str, seed: int = 0) -> LearnedCodec:
    return imgcomp.create_codec(name, pretrained=False, N=16, M=24, seed=seed)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:197, 150:281])  # 97x131: odd sizes


@pytest.mark.parametrize("name", NAMES)
def test_decode_equals_the_models_own_reconstruction(name: str, photo: np.ndarray) -> None:
    codec = _tiny(name)
    data = codec.encode(photo)
    rec = codec.decode(data)
    assert rec.shape == photo.shape and rec.dtype == np.uint8
    assert np.array_equal(rec, codec.reconstruct(photo))
    assert codec.encode(photo) == data
    with pytest.raises(imgcomp.CodecMismatchError, match=r"N=.*pretrained=False"):
        imgcomp.decode_stream(data)  # a stream never sizes a model nor asks for random weights
    assert len(unpack(data)[1]) == (1 if name == "factorized-prior" else 3)  # z, y, index check


@pytest.mark.parametrize("name", NAMES)
def test_aliases_and_stream_identity(name: str, photo: np.ndarray) -> None:
    alias = imgcomp.create_codec(ALIASES[name], pretrained=False, N=16, M=24)
    assert alias.name == name
    data = _tiny(name).encode(photo)
    with pytest.raises(CodecMismatchError, match="different"):
        _tiny(name, seed=1).decode(data)


@pytest.mark.parametrize("shape", [(1, 1, 3), (64, 64, 3), (65, 3, 3)])
def test_tiny_and_odd_images(shape: tuple) -> None:
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    codec = _tiny("mean-scale-hyperprior")
    assert np.array_equal(codec.decode(codec.encode(img)), codec.reconstruct(img))


def test_missing_shipped_quality_is_a_clear_error() -> None:
    with pytest.raises(ImgcompError, match="shipped qualities"):
        imgcomp.create_codec("mbt2018-mean", quality=99)
    with pytest.raises(ImgcompError, match="format"):
        imgcomp.create_codec("mbt2018-mean", checkpoint="x", format="tensorflow")


ARCHS = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"]


def _seed0_codec(arch, compat_dir, make_state, tmp_path) -> tuple[LearnedCodec, dict, np.ndarray]:
    """The codec of CompressAI's seed-0 weights, the reference tensors and the input image."""
    manifest = make_state.load_manifest(compat_dir / "compressai" / f"{arch}.manifest.json")
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"epoch": 3, "state_dict": make_state.make_state(manifest, 0)["state_dict"]}, path)
    codec = imgcomp.load_codec(arch, path, format="compressai")
    ref = torch.load(compat_dir / "compressai" / f"{arch}_seed0.pt", weights_only=True)
    img = np.ascontiguousarray(ref["input/uint8"][0].permute(1, 2, 0).numpy())
    return codec, ref, img


@pytest.mark.parametrize("arch", ARCHS)
def test_compressai_checkpoint_reproduces_x_hat_decompressed(
    arch, compat_dir, make_state, tmp_path
):
    """Seed-0 CompressAI weights on the modules' own arithmetic (``fast_inference`` off: NCHW,
    CompressAI's): our real bitstream decodes to CompressAI's decompress output."""
    codec, ref, img = _seed0_codec(arch, compat_dir, make_state, tmp_path)
    codec.model.fast_inference = False
    rec = codec.decode(codec.encode(img))
    ours = torch.from_numpy(rec).permute(2, 0, 1).double() / 255
    expected = ref["x_hat_decompressed"][0].double()
    # we deliver uint8 pixels: CompressAI's float output rounded to the nearest level
    assert (ours - expected).abs().max().item() <= 0.5 / 255 + 1e-4
    assert np.array_equal(rec, codec.reconstruct(img))


def _pre_rounding(lat: dict, ref: dict, arch: str, model) -> tuple[torch.Tensor, torch.Tensor]:
    """(ours, CompressAI's) value that rounding turns into y's symbols."""
    if arch == "bmshj2018-factorized":
        m = model.y_prior.medians.detach()[None, :, None, None]
        return lat["y"] - m, ref["y"] - m
    if arch == "bmshj2018-hyperprior":
        return lat["y"], ref["y"]
    return lat["y"] - lat["means"], ref["y"] - ref["means_hat"]


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_path_differs_from_compressai_only_in_float_rounding(
    arch, compat_dir, make_state, tmp_path
):
    """The default fast float32 path (channels_last, sub-pixel RGB layer, blocked GDN) sums in
    another order: a y symbol may differ from CompressAI's only where CompressAI's value lies
    within that float difference of a rounding boundary; the decode stays the model's own
    reconstruction, and equals CompressAI's where no symbol differs."""
    codec, ref, img = _seed0_codec(arch, compat_dir, make_state, tmp_path)
    assert codec.model.fast_inference
    with torch.inference_mode():
        lat = codec.model.quantize_latents(ref["input/image"])
    ours, theirs = _pre_rounding(lat, ref, arch, codec.model)
    err = (ours - theirs).abs().max().item()
    assert err < 1e-3 * max(1.0, theirs.abs().max().item())
    boundary = (theirs - torch.floor(theirs) - 0.5).abs() <= err
    flipped = torch.round(ours) != torch.round(theirs)
    assert not bool((flipped & ~boundary).any()), "a symbol differs away from any boundary"
    assert flipped.float().mean().item() < 1e-3
    rec = codec.decode(codec.encode(img))
    assert np.array_equal(rec, codec.reconstruct(img))
    if not bool(flipped.any()):
        got = torch.from_numpy(rec).permute(2, 0, 1).double() / 255
        want = ref["x_hat_decompressed"][0].double()
        assert (got - want).abs().max().item() <= 0.5 / 255 + 1e-4


def test_checkpoint_carrying_code_is_refused(tmp_path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        imgcomp.load_codec("mbt2018-mean", path, format="compressai")


def test_entropy_tables_enter_the_fingerprint(photo: np.ndarray) -> None:
    codec = _tiny("factorized-prior")
    other = _tiny("factorized-prior")
    with torch.no_grad():
        other.model.y_prior.quantiles[:, 0, 0] -= 3.0  # wider support: other tables
    assert codec.fingerprint != LearnedCodec(other.model, codec.name, codec.params).fingerprint


_CODECS = {name: _tiny(name) for name in NAMES}
_IMG = np.random.default_rng(2).integers(0, 256, (40, 72, 3), dtype=np.uint8)
_STREAMS = {name: c.encode(_IMG) for name, c in _CODECS.items()}


def test_header_size_change_is_refused_or_consistent() -> None:
    codec = _CODECS["mean-scale-hyperprior"]
    header, sections = unpack(_STREAMS["mean-scale-hyperprior"])
    bigger = pack(StreamHeader(header.codec, header.fingerprint, 200, 300, header.params), sections)
    with pytest.raises(BitstreamError):
        codec.decode(bigger)


def test_shipped_weights_are_documented_small_and_work(photo: np.ndarray) -> None:
    from imgcomp.train import read_metadata
    from imgcomp.zoo import WEIGHTS_DIR, shipped_qualities

    files = sorted(WEIGHTS_DIR.glob("*.imgw"))
    assert len(files) >= 7 and not list(WEIGHTS_DIR.glob("*.safetensors"))  # all packed
    # the zoo budget (issue 12): every shipped weights file together under 25 MB
    assert sum(f.stat().st_size for f in WEIGHTS_DIR.iterdir() if f.suffix != ".md") < 25e6
    card = (WEIGHTS_DIR / "README.md").read_text()
    for f in files:
        assert f.name in card, f"{f.name} has no model card entry"
        meta = read_metadata(f)
        assert int(meta["steps"]) > 0 and "kodak" not in meta["data"].lower()
    assert len(shipped_qualities("mean-scale-hyperprior")) >= 3
    assert shipped_qualities("factorized-prior")
    codec = imgcomp.create_codec(
        "mbt2018-mean", quality=shipped_qualities("mean-scale-hyperprior")[0]
    )
    data = codec.encode(photo)
    assert np.array_equal(imgcomp.decode_stream(data), codec.reconstruct(photo))
    assert 8 * len(data) / photo[..., 0].size < 2.0


# -- entropy parameters independent of the thread count ----------------------------------------
def _photo_like(h: int = 256, w: int = 384, seed: int = 3) -> np.ndarray:
    """Smooth colour gradients plus texture: enough structure for non-trivial scales."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(7 * xx + c) * np.cos(5 * yy - c) for c in range(3)], -1)
    img = 127 + 90 * base + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_entropy_parameters_do_not_depend_on_the_thread_count() -> None:
    """Scales feed the scale-table indexes both sides must agree on; run with 1 or 2 threads,
    the hyper-synthesis must give the same bits (plain multi-threaded convs do not)."""
    codec = imgcomp.create_codec("mbt2018-mean", quality=3)
    x = codec._to_input(_photo_like(512, 768))
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(2)
            z_hat = codec.model.quantize_latents(x)["z_hat"]
            two = codec.model.entropy_parameters(z_hat)
            torch.set_num_threads(1)
            one = codec.model.entropy_parameters(z_hat)
            assert torch.get_num_threads() == 1
            torch.set_num_threads(2)
            codec.model.entropy_parameters(z_hat)
            assert torch.get_num_threads() == 2  # restored after the single-thread section
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(two, one, strict=True))


def test_stream_encoded_with_two_threads_decodes_with_one() -> None:
    codec = imgcomp.create_codec("mbt2018-mean", quality=3)
    img = _photo_like(512, 768, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = codec.encode(img)
        torch.set_num_threads(1)
        decoded = codec.decode(data)
    finally:
        torch.set_num_threads(threads)
    # g_s itself may round a handful of pixels differently with another thread count
    assert decoded.shape == img.shape
    assert np.abs(decoded.astype(int) - codec.reconstruct(img).astype(int)).max() <= 1


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_index_checksum_mismatch_is_a_clear_error(name: str) -> None:
    codec = _tiny(name)
    header, sections = unpack(codec.encode(_photo_like(128, 128)))
    assert len(sections) == 3 and len(sections[2]) == 4
    forged = pack(header, [*sections[:2], bytes(b ^ 0xFF for b in sections[2])])
    with pytest.raises(CodecMismatchError, match="entropy parameters differ"):
        codec.decode(forged)
    with pytest.raises(BitstreamError, match="must have 3 sections"):
        codec.decode(pack(header, sections[:2]))


def test_read_only_images_encode_without_warnings() -> None:
    """``np.asarray(PIL image)`` is read-only; torch warns (once per process) when it wraps such
    an array, so this runs in a fresh interpreter and checks at the end that the warning had not
    been used up (which would make the check vacuous)."""
    script = textwrap.dedent(
        """
        import warnings

        import numpy as np
        import torch
        from PIL import Image

        import imgcomp

        learned = imgcomp.create_codec("mbt2018-mean", pretrained=False, N=8, M=8)
        classic = imgcomp.create_codec("jpeg", quality=75)
        img = np.asarray(Image.new("RGB", (70, 50), (10, 200, 30)))
        assert not img.flags.writeable
        warnings.simplefilter("error")
        for codec in (learned, classic):
            data = codec.encode(img)
            assert data == codec.encode(img.copy())
            assert codec.decode(data).shape == img.shape
        assert np.array_equal(learned.reconstruct(img), learned.decode(learned.encode(img)))
        assert np.array_equal(imgcomp.decode_stream(data), classic.decode(data))
        learned.estimated_bits(img)
        try:
            torch.from_numpy(img)
        except UserWarning:
            print("checked")
        """
    )
    cmd = [sys.executable, "-c", script]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "checked", "torch's warning was used up before the check"


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3)), np.zeros((8, 8), np.uint8), [[0, 0, 0]]])
def test_reconstruct_and_estimate_validate_their_image(bad) -> None:
    codec = _tiny("factorized-prior")
    for method in (codec.encode, codec.reconstruct, codec.estimated_bits):
        with pytest.raises(ImageError):
            method(bad)
