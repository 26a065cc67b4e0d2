"""Pillow codecs: real bytes, the registry, target-bpp search and hostile payloads."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgcomp import metrics
from imgcomp.bitstream import StreamHeader, pack, unpack
from imgcomp.codecs.base import Codec
from imgcomp.errors import BitstreamError, CodecMismatchError, ImageError, ImgcompError
from imgcomp.registry import codec_for_stream, create_codec, decode_stream, list_codecs

CLASSIC = ["jpeg", "webp", "jpeg2000", "avif"]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A natural 192x256 photo crop (bundled with scikit-image, offline)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[64:256, 128:384])


@pytest.mark.parametrize("name", CLASSIC)
def test_round_trip_through_bytes(name: str, photo: np.ndarray) -> None:
    codec = create_codec(name)
    assert isinstance(codec, Codec)
    data = codec.encode(photo)
    assert isinstance(data, bytes)
    rec = codec.decode(data)
    assert rec.shape == photo.shape and rec.dtype == np.uint8
    assert metrics.psnr(photo, rec) > 25
    assert codec.encode(photo) == data, "encoding must be deterministic"
    assert np.array_equal(decode_stream(data), rec), "the header alone must rebuild the codec"


@pytest.mark.parametrize("name", CLASSIC)
def test_payload_is_the_real_pillow_file(name: str, photo: np.ndarray) -> None:
    codec = create_codec(name)
    _, (payload,) = unpack(codec.encode(photo))
    with Image.open(io.BytesIO(payload)) as im:
        assert im.format == codec.pil_format
        assert im.size == (photo.shape[1], photo.shape[0])


def test_jpeg_payload_equals_pillow_output(photo: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=10)
    _, (payload,) = unpack(create_codec("jpeg", quality=10).encode(photo))
    assert payload == buf.getvalue()


@pytest.mark.parametrize("name", CLASSIC)
def test_higher_quality_means_more_bytes_and_better_psnr(name: str, photo: np.ndarray) -> None:
    lo_q, hi_q = {"jpeg": (10, 90), "webp": (10, 90), "avif": (20, 90), "jpeg2000": (25, 45)}[name]
    lo, hi = create_codec(name, quality=lo_q), create_codec(name, quality=hi_q)
    d_lo, d_hi = lo.encode(photo), hi.encode(photo)
    assert len(d_lo) < len(d_hi)
    assert metrics.psnr(photo, lo.decode(d_lo)) < metrics.psnr(photo, hi.decode(d_hi))


@pytest.mark.parametrize("name", CLASSIC)
@pytest.mark.parametrize("target", [0.3, 1.0])
def test_target_bpp_is_met_tightly(name: str, target: float, photo: np.ndarray) -> None:
    codec = create_codec(name, bpp=target)
    data = codec.encode(photo)
    h, w = photo.shape[:2]
    achieved = metrics.bpp(len(data), h, w)
    assert achieved <= target
    assert achieved >= 0.75 * target, "the search should use most of the budget"
    assert codec.decode(data).shape == photo.shape


def test_unreachable_target_uses_lowest_setting(photo: np.ndarray) -> None:
    data = create_codec("jpeg", bpp=0.001).encode(photo)
    _, (payload,) = unpack(data)
    _, (lowest,) = unpack(create_codec("jpeg", quality=1).encode(photo))
    assert payload == lowest


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quality": 0},
        {"quality": 101},
        {"quality": 5.5},
        {"bpp": -1},
        {"bpp": 0},
        {"quality": 10, "bpp": 0.3},
        {"bpp": float("nan")},
        {"quality": True},
    ],
)
def test_bad_parameters_are_typed_errors(kwargs: dict) -> None:
    with pytest.raises(ImgcompError):
        create_codec("jpeg", **kwargs)


def test_registry_names_aliases_and_unknown() -> None:
    names = list_codecs()
    assert set(CLASSIC) <= set(names)
    assert "jpg" not in names and "jpg" in list_codecs(aliases=True)
    assert create_codec("jpg", quality=50).name == "jpeg"
    with pytest.raises(KeyError, match="unknown codec 'nope'"):
        create_codec("nope")
    with pytest.raises(ImgcompError, match="bad parameters"):
        create_codec("jpeg", qualty=50)


def test_stream_refuses_other_codec_and_other_params(photo: np.ndarray) -> None:
    data = create_codec("jpeg", quality=10).encode(photo)
    with pytest.raises(CodecMismatchError, match="written by codec 'jpeg'"):
        create_codec("webp").decode(data)
    with pytest.raises(CodecMismatchError, match="different 'jpeg' model"):
        create_codec("jpeg", quality=11).decode(data)
    assert codec_for_stream(data).params == {"quality": 10}


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (3, 401, 3)])
@pytest.mark.parametrize("name", CLASSIC)
def test_odd_and_tiny_sizes(name: str, shape: tuple) -> None:
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    codec = create_codec(name)
    assert codec.decode(codec.encode(img)).shape == shape


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
        [[0, 0, 0]],
    ],
)
def test_bad_images_are_image_errors(bad) -> None:
    with pytest.raises(ImageError):
        create_codec("jpeg").encode(bad)


def _rewrap(codec, payload: bytes, h: int, w: int) -> bytes:
    """A valid container (right codec, fingerprint, CRC) around an arbitrary payload."""
    return pack(StreamHeader(codec.name, codec.fingerprint, h, w, codec.params), [payload])


@pytest.mark.parametrize("name", CLASSIC)
def test_payload_of_other_size_or_format_is_refused(name: str, photo: np.ndarray) -> None:
    codec = create_codec(name)
    _, (payload,) = unpack(codec.encode(photo))
    with pytest.raises(BitstreamError, match="header says"):
        codec.decode(_rewrap(codec, payload, photo.shape[0] + 1, photo.shape[1]))
    other = create_codec("webp" if name != "webp" else "jpeg")
    _, (foreign,) = unpack(other.encode(photo))
    with pytest.raises(BitstreamError):
        codec.decode(_rewrap(codec, foreign, *photo.shape[:2]))


_SMALL = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
_STREAMS = {name: create_codec(name).encode(_SMALL) for name in CLASSIC}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(CLASSIC), data=st.data())
def test_hostile_payloads_only_raise_bitstream_error(name: str, data) -> None:
    """Truncated, bit-flipped or random payloads inside a valid container: typed error or pixels."""
    codec = create_codec(name)
    _, (payload,) = unpack(_STREAMS[name])
    kind = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        payload = payload[: data.draw(st.integers(0, len(payload) - 1))]
    elif kind == "flip":
        buf = bytearray(payload)
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        payload = bytes(buf)
    else:
        payload = data.draw(st.binary(max_size=512))
    try:
        img = codec.decode(_rewrap(codec, payload, 24, 32))
    except BitstreamError:
        return
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(CLASSIC), cut=st.integers(0, 10_000), bit=st.integers(0, 80_000))
def test_damaged_streams_are_always_detected(name: str, cut: int, bit: int) -> None:
    stream = _STREAMS[name]
    with pytest.raises(BitstreamError):
        create_codec(name).decode(stream[: cut % len(stream)])
    flipped = bytearray(stream)
    flipped[(bit // 8) % len(stream)] ^= 1 << (bit % 8)
    with pytest.raises(BitstreamError):
        decode_stream(bytes(flipped))
    assert zlib.crc32(stream)  # streams are non-trivial


def test_cli_eval_jpeg_q10_on_kodak_matches_pillow(kodak_dir, monkeypatch, tmp_path) -> None:
    """`imgcomp eval --codec jpeg --quality 10 --dataset kodak`: mean bpp within 0.5% of Pillow's
    own encoder output, and quality in line with published JPEG results on Kodak."""
    import json

    from imgcomp.cli import main
    from imgcomp.images import load_image

    monkeypatch.setenv("IMGCOMP_KODAK_DIR", str(kodak_dir))
    out = tmp_path / "jpeg.json"
    assert (
        main(
            [
                "eval",
                "--codec",
                "jpeg",
                "--quality",
                "10",
                "--dataset",
                "kodak",
                "--quiet",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert len(result["images"]) == 24
    pillow_bpp = []
    for row in result["images"]:
        img = load_image(kodak_dir / f"{row['image']}.png")
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=10)
        pillow_bpp.append(8 * len(buf.getvalue()) / (img.shape[0] * img.shape[1]))
    mean = result["mean"]
    assert abs(mean["bpp"] / np.mean(pillow_bpp) - 1) < 0.005
    # JPEG q10 (4:2:0) on Kodak: about 0.33 bpp at about 26.7 dB RGB PSNR, SSIM about 0.74
    assert 0.30 < mean["bpp"] < 0.36
    assert 26.0 < mean["psnr"] < 27.5
    assert 0.70 < mean["ssim"] < 0.78
