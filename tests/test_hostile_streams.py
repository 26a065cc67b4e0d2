"""A stream never chooses what the decoder builds, loads or allocates (issue 15's findings, one
test each): header parameters that name files, devices, random weights or widths; size bombs;
metadata that would size a model before its tensors are checked; the CLI and API edges."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

import imgcomp
from imgcomp.bitstream import StreamHeader, pack, unpack
from imgcomp.cli import main
from imgcomp.errors import (
    BitstreamError,
    CheckpointError,
    CodecMismatchError,
    ImgcompError,
    PixelBudgetError,
)
from imgcomp.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, check_pixels, max_pixels
from imgcomp.saved import read_record

_IMG = np.random.default_rng(7).integers(0, 256, (32, 48, 3), dtype=np.uint8)
_MBT = imgcomp.create_codec("mbt2018-mean", quality=3)
_FACT = imgcomp.create_codec("bmshj2018-factorized", quality=3)
_MBT_STREAM = _MBT.encode(_IMG)


def _edited(data: bytes, **changes: object) -> bytes:
    """``data`` re-packed with header fields or params replaced (a valid CRC: only the fields
    lie)."""
    header, sections = unpack(data)
    params = dict(header.params)
    params.update(changes.pop("params", {}))
    for key in changes.pop("drop", ()):
        params.pop(key, None)
    fields = {
        "codec": header.codec,
        "fingerprint": header.fingerprint,
        "height": header.height,
        "width": header.width,
    }
    fields.update(changes)
    return pack(StreamHeader(params=params, **fields), sections)


@pytest.mark.parametrize(
    "params",
    [
        {"checkpoint": "/dev/stdin"},
        {"checkpoint": 5},
        {"device": "cuda"},
        {"device": "bogus"},
        {"pretrained": False, "N": -5},
        {"pretrained": False, "N": 1024, "M": 1024},
        {"format": "compressai"},
        {"seed": 3},
    ],
)
def test_decode_stream_builds_nothing_a_stream_names(params: dict) -> None:
    data = _edited(_MBT_STREAM, params=params)
    start = time.perf_counter()
    with pytest.raises(CodecMismatchError, match="never a checkpoint, device, random weights"):
        imgcomp.decode_stream(data)
    assert time.perf_counter() - start < 0.5  # refused before building or reading anything


@pytest.mark.parametrize("quality", [0, 99, "x", 3.5, True, None])
def test_stream_params_the_factory_refuses_are_typed(quality: object) -> None:
    data = _edited(_MBT_STREAM, params={"quality": quality})
    with pytest.raises(BitstreamError):
        imgcomp.decode_stream(data)


def test_shipped_codecs_still_decode_from_the_header_alone() -> None:
    assert np.array_equal(imgcomp.decode_stream(_MBT_STREAM), _MBT.reconstruct(_IMG))
    rnn = imgcomp.create_codec("toderici2017", iterations=2)
    assert np.array_equal(imgcomp.decode_stream(rnn.encode(_IMG)), rnn.reconstruct(_IMG))


@pytest.mark.parametrize("codec", [_FACT, _MBT, imgcomp.create_codec("jpeg", quality=50)])
def test_a_declared_size_over_the_budget_is_refused_at_once(codec) -> None:
    bomb = _edited(codec.encode(_IMG), height=16384, width=16384)
    for decode in (codec.decode, imgcomp.decode_stream):
        start = time.perf_counter()
        with pytest.raises(PixelBudgetError, match="IMGCOMP_MAX_PIXELS"):
            decode(bomb)
        assert time.perf_counter() - start < 0.05


def test_the_budget_is_set_per_call_and_by_environment(monkeypatch) -> None:
    assert max_pixels() == DEFAULT_MAX_PIXELS
    check_pixels(4000, 6000)  # a 24-megapixel photo decodes with the default budget
    with pytest.raises(PixelBudgetError):
        _MBT.decode(_MBT_STREAM, max_pixels=32 * 48 - 1)
    assert _MBT.decode(_MBT_STREAM, max_pixels=32 * 48).shape == _IMG.shape
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(PixelBudgetError, match="1,000 pixels"):
        imgcomp.decode_stream(_MBT_STREAM)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ImgcompError, match="not an integer"):
        max_pixels()
    with pytest.raises(ImgcompError, match="positive integer"):
        max_pixels(0)


def test_a_section_too_short_for_its_declared_symbols_is_refused() -> None:
    # 6000 x 6000 is within the pixel budget, but 96 channels of 375 x 375 latents cannot fit
    # in the bytes of a 32 x 48 image's section: refused before the latents are decoded.
    bomb = _edited(_FACT.encode(_IMG), height=6000, width=6000)
    start = time.perf_counter()
    with pytest.raises(BitstreamError, match="cannot hold its"):
        _FACT.decode(bomb)
    assert time.perf_counter() - start < 1.0


def test_a_classic_payload_must_declare_the_headers_size() -> None:
    jpeg = imgcomp.create_codec("jpeg", quality=50)
    buf = io.BytesIO()
    Image.new("RGB", (64, 40)).save(buf, "JPEG")
    header, _ = unpack(jpeg.encode(_IMG))
    data = pack(StreamHeader("jpeg", header.fingerprint, 32, 48, header.params), [buf.getvalue()])
    with pytest.raises(BitstreamError, match="payload image is 64x40"):
        jpeg.decode(data)


def test_weights_metadata_cannot_size_the_model(tmp_path) -> None:
    src = imgcomp.zoo.shipped_weights_path("mean-scale-hyperprior", 3)
    from imgcomp.train import read_metadata, read_weight_tensors

    meta = read_metadata(src)
    config = json.loads(meta["config"]) | {"N": 2048, "M": 2048}
    lying = tmp_path / "lying.safetensors"
    meta = {**meta, "N": "2048", "M": "2048", "config": json.dumps(config)}
    save_file(read_weight_tensors(src), lying, metadata=meta)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="tensors differ from the file's"):
        imgcomp.load_codec("mbt2018-mean", lying)
    assert time.perf_counter() - start < 2.0  # no 5 GiB model built first


def test_a_saved_codecs_record_cannot_size_the_model(tmp_path) -> None:
    small = imgcomp.create_codec("mbt2018-mean", pretrained=False, N=8, M=8)
    path = imgcomp.save_codec(imgcomp.prune(small, decoder=0.3), tmp_path / "c.safetensors")
    record = read_record(path)
    record["config"] = {**record["config"], "N": 2048, "M": 2048}
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = dict(f.metadata())
    meta["codec"] = json.dumps(record)
    save_file(load_file(path), tmp_path / "lying.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="record"):
        imgcomp.load_codec(tmp_path / "lying.safetensors")


@pytest.mark.parametrize(
    "params, match",
    [
        ({"quality": 3, "device": "cuda"}, "CUDA is not available|cuda"),
        ({"quality": 3, "device": "bogus"}, "invalid device"),
        ({"quality": 3, "device": "meta"}, "unsupported device"),
        ({"pretrained": False, "N": 0}, r"N must be an integer in 1\.\.4096"),
        ({"pretrained": False, "N": 8, "M": 8, "seed": -1}, "seed must be"),
        ({"checkpoint": 5}, "a checkpoint is a file path"),
    ],
)
def test_the_public_api_raises_typed_errors(params: dict, match: str) -> None:
    import torch

    if params.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ImgcompError, match=match):
        imgcomp.create_codec("mbt2018-mean", **params)


@pytest.mark.parametrize("ratio", ["0.3", 1.5, -0.1, float("nan"), True])
def test_prune_refuses_ratios_that_are_not_fractions(ratio: object) -> None:
    with pytest.raises(ImgcompError):
        imgcomp.prune(_MBT, decoder=ratio)


def test_the_cli_reports_bad_paths_and_devices_without_tracebacks(tmp_path, capsys) -> None:
    png = tmp_path / "in.png"
    Image.fromarray(_IMG).save(png)
    assert main(["encode", str(png), str(tmp_path / "no" / "out.imgc"), "--codec", "jpeg"]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    stream = tmp_path / "s.imgc"
    assert main(["encode", str(png), str(stream), "--codec", "jpeg"]) == 0
    assert main(["decode", str(stream), str(tmp_path / "no" / "back.png")]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    assert main(["decode", str(stream), str(tmp_path / "b.png"), "--max-pixels", "100"]) == 2
    assert "decode budget" in capsys.readouterr().err
    for device in ("bogus", "meta"):
        args = ["encode", str(png), str(stream), "--codec", "mbt2018-mean", "--quality", "3"]
        assert main([*args, "--device", device]) == 2
        assert "device" in capsys.readouterr().err


class _Fragile:
    """A decoder with a bug the campaign must report: a foreign exception on any mutant."""

    name = "jpeg"

    def __init__(self, stream: bytes) -> None:
        self.stream = stream

    def decode(self, data: bytes) -> np.ndarray:
        if data != self.stream:
            raise ValueError("not handled")
        return _IMG


def test_imgcomp_fuzz_prints_the_table_and_fails_on_foreign_errors(monkeypatch, capsys) -> None:
    import imgcomp.fuzz as fuzz

    jpeg = imgcomp.create_codec("jpeg", quality=50)
    stream = jpeg.encode(_IMG)
    targets = {
        "good": [fuzz.Target("jpeg:codec", stream, codec=jpeg)],
        "bad": [fuzz.Target("fragile:codec", stream, codec=_Fragile(stream))],
    }
    for kind, status in (("good", 0), ("bad", 1)):
        monkeypatch.setattr(fuzz, "default_targets", lambda image, quick=False, k=kind: targets[k])
        assert main(["fuzz", "--mutants", "6", "--quick"]) == status
        table = capsys.readouterr().out
        assert "foreign" in table and targets[kind][0].label in table


def test_a_24_megapixel_photo_round_trips_with_the_default_budget() -> None:
    photo = np.zeros((4000, 6000, 3), np.uint8)
    photo[..., 0] = np.arange(6000, dtype=np.uint32)[None] * 255 // 6000
    photo[..., 1] = np.arange(4000, dtype=np.uint32)[:, None] * 255 // 4000
    data = imgcomp.create_codec("jpeg", quality=50).encode(photo)
    back = imgcomp.decode_stream(data)
    assert back.shape == photo.shape
    assert np.abs(back.astype(int) - photo).mean() < 3
