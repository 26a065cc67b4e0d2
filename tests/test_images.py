"""imgcomp.images: every documented conversion to uint8 RGB, with exact pixel values; rejects."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcomp.errors import ImageError
from imgcomp.images import MAX_PIXELS, load_image, save_png, to_rgb8, validate_rgb8

_ADAM7 = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
]


def png_bytes(
    arr: np.ndarray,
    color_type: int,
    bit_depth: int,
    *,
    interlace: bool = False,
    trns: bytes | None = None,
    size: tuple[int, int] | None = None,
) -> bytes:
    """A minimal PNG encoder (filter 0), so 16-bit colour and tRNS inputs can be made by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    h, w = arr.shape[:2]
    dtype = ">u2" if bit_depth == 16 else np.uint8
    arr = arr.reshape(h, w, -1).astype(dtype)

    def rows(sub: np.ndarray) -> bytes:
        return b"".join(b"\x00" + row.tobytes() for row in sub)

    if interlace:
        passes = [arr[y0::dy, x0::dx] for x0, y0, dx, dy in _ADAM7]
        raw = b"".join(rows(p) for p in passes if p.shape[0] and p.shape[1])
    else:
        raw = rows(arr)
    width, height = size if size is not None else (w, h)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    body = chunk(b"IHDR", header)
    if trns is not None:
        body += chunk(b"tRNS", trns)
    body += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rgb(*pixels: tuple[int, int, int]) -> list[list[int]]:
    return [list(p) for p in pixels]


# 16-bit samples and their 8-bit values round(v * 255 / 65535); truncation to the high byte would
# give 0 for 255 and 129, 0x80 for 0x80FF (same), 128 for 33025 (vs 129), so these catch it.
V16 = np.array([0, 257 * 3, 65535, 255, 128, 129, 33024, 33025], dtype=np.uint16)
V8 = [0, 3, 255, 1, 0, 1, 128, 129]


# --- load_image: grayscale -----------------------------------------------------------------------


def test_l_is_replicated_to_three_channels(tmp_path):
    gray = np.array([[0, 17, 255], [128, 1, 254]], dtype=np.uint8)
    path = tmp_path / "g.png"
    Image.fromarray(gray).save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3) and out.flags.c_contiguous
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_bilevel_mode_1_maps_to_0_and_255(tmp_path):
    path = tmp_path / "b.png"
    Image.fromarray(np.array([[True, False]])).save(path)
    assert load_image(path).tolist() == [rgb((255, 255, 255), (0, 0, 0))]


def test_16bit_grayscale_png_written_by_pillow(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(V16[None, :]).save(path)
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    out = load_image(path)
    assert out[0, :, 0].tolist() == V8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def test_16bit_grayscale_png_handmade(tmp_path):
    path = write(tmp_path, "g16.png", png_bytes(V16[None, :], color_type=0, bit_depth=16))
    assert load_image(path)[0, :, 1].tolist() == V8


def test_16bit_pgm_and_mode_i(tmp_path):
    path = write(tmp_path, "g16.pgm", b"P5\n8 1\n65535\n" + V16.astype(">u2").tobytes())
    assert Image.open(path).mode.startswith("I")
    assert load_image(path)[0, :, 2].tolist() == V8


def test_mode_i_outside_16bit_range_is_rejected(tmp_path):
    path = tmp_path / "i32.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(path)
    assert Image.open(path).mode == "I"
    with pytest.raises(ImageError, match=r"0\.\.65535"):
        load_image(path)


def test_mode_f_read_as_unit_range_clipped_and_rounded_half_up(tmp_path):
    path = tmp_path / "f.tif"
    values = np.array([[0.0, 0.5, 1.0, 2.0, -1.0, 0.2]], dtype=np.float32)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    assert load_image(path)[0, :, 0].tolist() == [0, 128, 255, 255, 0, 51]


# --- load_image: 16-bit colour PNGs (Pillow alone keeps only the high byte) ----------------------


@pytest.mark.parametrize("interlace", [False, True])
def test_48bit_rgb_png_is_rounded_exactly(tmp_path, interlace):
    # 3x3 so Adam7 has several non-empty passes; each channel gets a different permutation.
    flat = np.concatenate([V16, V16[:1]])  # 9 values
    arr = np.stack([flat, flat[::-1], np.roll(flat, 4)], axis=-1).reshape(3, 3, 3)
    data = png_bytes(arr, color_type=2, bit_depth=16, interlace=interlace)
    path = write(tmp_path, "rgb48.png", data)
    with Image.open(path) as im:  # guard: the file is what the test claims
        assert im.mode == "RGB" and "16" in str(im.tile[0].args)
    v8 = np.array([*V8, V8[0]])
    expected = np.stack([v8, v8[::-1], np.roll(v8, 4)], axis=-1).reshape(3, 3, 3)
    np.testing.assert_array_equal(load_image(path), expected)


def test_64bit_rgba_png_composites_16bit_alpha_over_white(tmp_path):
    arr = np.array(
        [[[65535, 0, 255, 65535], [1000, 2000, 3000, 0], [0, 0, 65535, 32768]]], dtype=np.uint16
    )
    path = write(tmp_path, "rgba64.png", png_bytes(arr, color_type=6, bit_depth=16))
    # alpha 65535: plain rounding; alpha 0: white; 0 at half alpha: 255*(65535-32768)/65535 = 127.5-
    assert load_image(path).tolist() == [rgb((255, 0, 1), (255, 255, 255), (127, 127, 255))]


def test_32bit_gray_alpha_png(tmp_path):
    arr = np.array([[[65535, 0], [257 * 7, 65535], [0, 32768], [255, 65535]]], dtype=np.uint16)
    path = write(tmp_path, "la32.png", png_bytes(arr, color_type=4, bit_depth=16))
    out = load_image(path)
    assert out[0, :, 0].tolist() == [255, 7, 127, 1]
    assert (out == out[..., :1]).all()


def test_16bit_colour_tiff_is_refused_not_truncated(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "rgb48.tif"
    tifffile.imwrite(path, np.full((2, 2, 3), 255, dtype=np.uint16), photometric="rgb")
    with pytest.raises(ImageError, match="16-bit") as info:
        load_image(path)
    assert str(path) in str(info.value)


# --- load_image: palette, alpha, colour keys -----------------------------------------------------


def test_palette_with_transparency_composites_over_white(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([10, 20, 30, 200, 100, 50, 0, 0, 0] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2])
    path = tmp_path / "p.png"
    im.save(path, transparency=0)
    assert load_image(path).tolist() == [rgb((255, 255, 255), (200, 100, 50), (0, 0, 0))]


def test_palette_gif_without_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    im.putdata([1, 0])
    path = tmp_path / "p.gif"
    im.save(path)
    assert load_image(path).tolist() == [rgb((0, 0, 255), (255, 0, 0))]


def test_rgba_straight_alpha_over_white(tmp_path):
    arr = np.array(
        [[[10, 20, 30, 0], [10, 20, 30, 255], [0, 100, 200, 128], [255, 255, 255, 7]]],
        dtype=np.uint8,
    )
    path = tmp_path / "rgba.png"
    Image.fromarray(arr).save(path)
    # (v*a + 255*(255-a)) / 255, rounded: 0 -> 127.0, 100 -> 177.2, 200 -> 227.4
    expected = rgb((255, 255, 255), (10, 20, 30), (127, 177, 227), (255, 255, 255))
    assert load_image(path).tolist() == [expected]


def test_la_alpha_over_white(tmp_path):
    path = tmp_path / "la.png"
    Image.fromarray(np.array([[[0, 51], [90, 255], [200, 0]]], dtype=np.uint8), "LA").save(path)
    assert load_image(path).tolist() == [rgb((204, 204, 204), (90, 90, 90), (255, 255, 255))]


def test_rgb_trns_colour_key_becomes_white(tmp_path):
    arr = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    data = png_bytes(arr, color_type=2, bit_depth=8, trns=struct.pack(">HHH", 1, 2, 3))
    path = write(tmp_path, "key.png", data)
    assert load_image(path).tolist() == [rgb((255, 255, 255), (4, 5, 6))]


def test_gray_trns_colour_key_becomes_white(tmp_path):
    arr = np.array([[9, 10]], dtype=np.uint8)
    path = write(tmp_path, "key.png", png_bytes(arr, 0, 8, trns=struct.pack(">H", 9)))
    assert load_image(path).tolist() == [rgb((255, 255, 255), (10, 10, 10))]


def test_48bit_rgb_trns_colour_key_matches_on_16bit_values(tmp_path):
    # The key differs from the second pixel only in the low byte: matching must use 16 bits.
    arr = np.array([[[0x1234, 0x5678, 0x9ABC], [0x1235, 0x5678, 0x9ABC]]], dtype=np.uint16)
    data = png_bytes(arr, 2, 16, trns=struct.pack(">HHH", 0x1234, 0x5678, 0x9ABC))
    out = load_image(write(tmp_path, "key48.png", data))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [round(0x1235 / 257), round(0x5678 / 257), round(0x9ABC / 257)]


# --- load_image: other modes, orientation, frames ------------------------------------------------


def test_cmyk_converted_by_pillow(tmp_path):
    arr = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    path = tmp_path / "cmyk.tif"
    Image.fromarray(arr, "CMYK").save(path)
    assert load_image(path).tolist() == [rgb((255, 255, 255), (0, 255, 255), (0, 0, 0))]


def test_exif_orientation_is_not_applied(tmp_path):
    im = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "o.png"
    im.save(path, exif=exif)
    assert Image.open(path).getexif().get(0x0112) == 6
    assert load_image(path).tolist() == [rgb((255, 0, 0), (0, 0, 255))]


def test_multiframe_tiff_gives_first_frame(tmp_path):
    red = Image.new("RGB", (2, 2), (255, 0, 0))
    blue = Image.new("RGB", (2, 2), (0, 0, 255))
    path = tmp_path / "multi.tif"
    red.save(path, save_all=True, append_images=[blue])
    assert Image.open(path).n_frames == 2
    out = load_image(path)
    assert out.shape == (2, 2, 3) and (out == [255, 0, 0]).all()


def test_rgb_png_round_trips_exactly(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    save_png(arr, path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
    out = load_image(path)
    np.testing.assert_array_equal(out, arr)
    assert out.flags.c_contiguous and out.flags.writeable


# --- load_image: rejects -------------------------------------------------------------------------


def _assert_image_error_naming(path: Path) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert not isinstance(info.value, OSError)
    return info.value


def test_missing_path(tmp_path):
    _assert_image_error_naming(tmp_path / "nope.png")


def test_directory(tmp_path):
    _assert_image_error_naming(tmp_path)


def test_empty_file(tmp_path):
    err = _assert_image_error_naming(write(tmp_path, "empty.png", b""))
    assert "empty" in str(err)


def test_garbage_bytes(tmp_path):
    _assert_image_error_naming(write(tmp_path, "junk.png", b"this is not an image\n" * 10))


def test_non_image_file(tmp_path):
    _assert_image_error_naming(write(tmp_path, "notes.txt", b"hello"))


@pytest.mark.parametrize("keep", [0.5, "no-iend"])
def test_truncated_png(tmp_path, keep):
    arr = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    full = png_bytes(arr, 2, 8)
    cut = len(full) // 2 if keep == 0.5 else len(full) - 12  # drop IEND: pixel data is complete
    _assert_image_error_naming(write(tmp_path, "cut.png", full[:cut]))


def test_corrupted_png_crc(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = bytearray(png_bytes(arr, 2, 8))
    data[60] ^= 0x01  # inside IDAT
    _assert_image_error_naming(write(tmp_path, "flip.png", bytes(data)))


def test_zero_sized_png(tmp_path):
    data = png_bytes(np.zeros((1, 1, 3), np.uint8), 2, 8, size=(0, 1))
    _assert_image_error_naming(write(tmp_path, "zero.png", data))


@pytest.mark.parametrize("side", [12, 20])  # > MAX_IMAGE_PIXELS: warning; > 2x: Pillow's error
def test_decompression_bomb_is_an_image_error(tmp_path, monkeypatch, side):
    path = tmp_path / "big.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    err = _assert_image_error_naming(path)
    assert "decompression bomb" in str(err)


# --- to_rgb8 -------------------------------------------------------------------------------------


def test_to_rgb8_uint16_matches_rounding_rule_for_every_value():
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    out = to_rgb8(v)
    expected = np.floor(v.astype(np.float64) * 255 / 65535 + 0.5)  # no exact ties exist
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    k = np.arange(256)
    np.testing.assert_array_equal(to_rgb8((257 * k).astype(np.uint16)[None, :])[0, :, 1], k)


def test_to_rgb8_uint8_alpha_matches_exact_composite_for_all_pairs():
    v, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    arr = np.stack([v, v, v, a], axis=-1).astype(np.uint8)
    out = to_rgb8(arr)
    expected = np.floor((v * a + 255 * (255 - a)) / 255 + 0.5)  # 255 never divides 2x an odd tie
    np.testing.assert_array_equal(out[..., 2], expected)
    assert (out[:, 0] == 255).all()  # alpha 0 -> white
    np.testing.assert_array_equal(out[:, 255, 0], np.arange(256))  # opaque -> unchanged


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 1)])
def test_to_rgb8_gray_shapes(shape):
    g = np.arange(6, dtype=np.uint8).reshape(shape) * 40
    out = to_rgb8(g)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, np.repeat(g.reshape(2, 3, 1), 3, axis=2))


def test_to_rgb8_gray_alpha_two_channels():
    out = to_rgb8(np.array([[[0, 51], [90, 255]]], dtype=np.uint8))
    assert out.tolist() == [rgb((204, 204, 204), (90, 90, 90))]


def test_to_rgb8_rgba_spec_example():
    out = to_rgb8(np.array([[[10, 20, 30, 0]]], dtype=np.uint8))
    assert out.tolist() == [rgb((255, 255, 255))]


def test_to_rgb8_uint8_rgb_is_a_contiguous_copy():
    base = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    view = base[:, ::2]
    out = to_rgb8(view)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, view)
    out[0, 0, 0] = 99
    assert base[0, 0, 0] == 0


def test_to_rgb8_bool():
    assert to_rgb8(np.array([[True, False]])).tolist() == [rgb((255, 255, 255), (0, 0, 0))]


def test_to_rgb8_float_rounds_half_up_and_clips():
    f = np.array([[0.0, 0.5, 1.0, 1.5, -0.2, 0.2, 127.4 / 255]], dtype=np.float64)
    assert to_rgb8(f)[0, :, 0].tolist() == [0, 128, 255, 255, 0, 51, 127]
    assert to_rgb8(f.astype(np.float32))[0, :, 0].tolist() == [0, 128, 255, 255, 0, 51, 127]


def test_to_rgb8_float_rgba_composites():
    out = to_rgb8(np.array([[[0.0, 0.5, 1.0, 0.5], [0.2, 0.4, 0.6, 0.0]]]))
    assert out.tolist() == [rgb((128, 191, 255), (255, 255, 255))]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_rgb8_rejects_non_finite(bad):
    with pytest.raises(ImageError, match="NaN or infinite"):
        to_rgb8(np.array([[0.1, bad]]))


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((2, 2), dtype=np.int64),
        np.zeros((2, 2, 3), dtype=np.int8),
        np.zeros((2, 2, 3), dtype=np.complex64),
        np.zeros(5, dtype=np.uint8),
        np.zeros((2, 2, 5), dtype=np.uint8),
        np.zeros((2, 2, 3, 1), dtype=np.uint8),
        np.zeros((0, 4, 3), dtype=np.uint8),
        np.zeros((4, 0), dtype=np.uint8),
    ],
)
def test_to_rgb8_rejects(arr):
    with pytest.raises(ImageError):
        to_rgb8(arr)


def test_to_rgb8_rejects_non_array():
    with pytest.raises(ImageError, match="numpy"):
        to_rgb8([[1, 2, 3]])  # type: ignore[arg-type]


# --- validate_rgb8 and save_png ------------------------------------------------------------------


def test_validate_rgb8_accepts_and_makes_contiguous():
    base = np.arange(2 * 6 * 3, dtype=np.uint8).reshape(2, 6, 3)
    view = base[:, ::-2]
    out = validate_rgb8(view)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, view)
    assert validate_rgb8(base) is base  # already fine: no copy


@pytest.mark.parametrize(
    ("img", "fragment"),
    [
        ([[[0, 0, 0]]], "numpy.ndarray"),
        (np.zeros((2, 2, 3), np.float32), "dtype uint8"),
        (np.zeros((2, 2, 3), np.uint16), "dtype uint8"),
        (np.zeros((2, 2), np.uint8), "(H, W, 3)"),
        (np.zeros((2, 2, 4), np.uint8), "(H, W, 3)"),
        (np.zeros((0, 2, 3), np.uint8), "empty"),
        (np.zeros((2, 0, 3), np.uint8), "empty"),
    ],
)
def test_validate_rgb8_rejects_with_advice(img, fragment):
    with pytest.raises(ImageError) as info:
        validate_rgb8(img)
    assert fragment in str(info.value)
    if fragment in ("numpy.ndarray", "dtype uint8", "(H, W, 3)"):
        assert "imgcomp.images.to_rgb8" in str(info.value)


def test_validate_rgb8_rejects_too_many_pixels_without_allocating():
    one = np.zeros(1, dtype=np.uint8)
    huge = np.lib.stride_tricks.as_strided(one, shape=(2**14 + 1, 2**14, 3), strides=(0, 0, 0))
    assert huge.shape[0] * huge.shape[1] > MAX_PIXELS
    with pytest.raises(ImageError, match="too large"):
        validate_rgb8(huge)


def test_save_png_rejects_bad_input_and_bad_path(tmp_path):
    with pytest.raises(ImageError, match="dtype uint8"):
        save_png(np.zeros((2, 2, 3), np.float64), tmp_path / "x.png")
    target = tmp_path / "no" / "such" / "dir" / "x.png"
    with pytest.raises(ImageError, match="cannot write PNG"):
        save_png(np.zeros((2, 2, 3), np.uint8), target)


def test_save_png_writes_png_whatever_the_suffix(tmp_path):
    arr = np.array([[[1, 2, 3], [250, 251, 252]]], dtype=np.uint8)
    path = tmp_path / "x.jpg"
    save_png(arr, path)
    assert path.read_bytes().startswith(b"\x89PNG")
    np.testing.assert_array_equal(load_image(path), arr)
