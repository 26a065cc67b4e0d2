"""Saved codecs: every op round-trips through save_codec and load_codec; edited files fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import imgcomp
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import CheckpointError, CodecMismatchError, ImgcompError
from imgcomp.saved import SAVED_FORMAT, is_saved_codec, read_record

TINY = {"pretrained": False, "N": 8, "M": 12, "seed": 0}


pytestmark = pytest.mark.usefixtures("one_thread")


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    from skimage import data

    top = 40 + 30 * seed
    return np.ascontiguousarray(data.astronaut()[top : top + size, 150 : 150 + size])


@pytest.fixture(scope="module")
def shipped() -> LearnedCodec:
    return imgcomp.create_codec("mbt2018-mean", quality=3)


@pytest.fixture(scope="module")
def structured(shipped) -> LearnedCodec:
    return imgcomp.prune(shipped, 0.3, 0.3, 0.3, method="structured", round_to=4)


def _int8(codec: LearnedCodec) -> LearnedCodec:
    return imgcomp.quantize(codec, "int8", calibration=[_image(1), _image(2)])


OPS = {
    "none": lambda c, s: c,
    "l1": lambda c, s: imgcomp.prune(c, 0.3, 0.3, 0.3),
    "l1-global": lambda c, s: imgcomp.prune(c, decoder=0.5, scope="global"),
    "structured": lambda c, s: s,
    "bf16": lambda c, s: imgcomp.quantize(c, "bf16"),
    "int8": lambda c, s: _int8(c),
    "w4": lambda c, s: imgcomp.quantize(c, "w4"),
    "structured+int8": lambda c, s: _int8(s),
    "structured+bf16": lambda c, s: imgcomp.quantize(s, "bf16"),
}


def _assert_same_codec(loaded: LearnedCodec, original: LearnedCodec) -> None:
    """Same identity, and the loaded codec reads and writes the original's streams exactly."""
    assert (loaded.name, loaded.params, loaded.ops) == (
        original.name,
        original.params,
        original.ops,
    )
    assert loaded.fingerprint == original.fingerprint
    assert loaded.model.config == original.model.config
    for img in (_image(0), _image(1, size=48)):  # 48: the codec pads
        stream = original.encode(img)
        assert loaded.encode(img) == stream
        assert np.array_equal(loaded.decode(stream), original.decode(stream))


@pytest.mark.parametrize("op", list(OPS))
def test_every_op_round_trips(op, shipped, structured, tmp_path: Path) -> None:
    codec = OPS[op](shipped, structured)
    path = imgcomp.save_codec(codec, tmp_path / "codec.safetensors")
    assert path == tmp_path / "codec.safetensors" and is_saved_codec(path)
    record = read_record(path)
    assert record["ops"] == list(codec.ops) and record["name"] == "mean-scale-hyperprior"
    assert record["fingerprint"] == codec.fingerprint.hex()
    loaded = imgcomp.load_codec(path)
    _assert_same_codec(loaded, codec)
    if op.startswith("structured"):  # the narrower widths were rebuilt from the saved shapes
        assert loaded.model.config == {"arch": "mbt2018-mean", "N": 44, "M": 64}
        assert imgcomp.profile(loaded).total.parameters == imgcomp.profile(codec).total.parameters
    if op == "structured":
        assert [m.out_channels for m in loaded.model.g_s[:-1:2]] == [44, 44, 44]


def test_int8_file_is_compact_and_loads_without_calibration_data(structured, tmp_path) -> None:
    """The int8 state is stored as integers plus scales, not as a pickled quantized graph."""
    codec = _int8(structured)
    path = imgcomp.save_codec(codec, tmp_path / "s8.safetensors")
    tensors = load_file(path)
    assert any(k.endswith(".int") and v.dtype == torch.int8 for k, v in tensors.items())
    assert path.stat().st_size < imgcomp.profile(structured).total.serialized_bytes / 3
    _assert_same_codec(imgcomp.load_codec(path, format="imgcomp-codec"), codec)


def test_structured_with_recovery_round_trips(tmp_path: Path) -> None:
    train = tmp_path / "train"
    train.mkdir()
    for i in range(2):
        Image.fromarray(_image(i, size=128)).save(train / f"t{i}.png")
    tiny = imgcomp.create_codec("mean-scale-hyperprior", **TINY)
    codec = imgcomp.prune(
        tiny,
        0.5,
        0.5,
        0.5,
        method="structured",
        round_to=2,
        recover_steps=2,
        lmbda=0.01,
        data=train,
    )
    assert codec.ops[0].endswith(":round2:recover2@0.01")
    loaded = imgcomp.load_codec(imgcomp.save_codec(codec, tmp_path / "r.safetensors"))
    _assert_same_codec(loaded, codec)
    assert loaded.params == TINY  # a random-weight base: no weights file needed to load


def test_other_architectures_round_trip(tmp_path: Path) -> None:
    for name in ("factorized-prior", "scale-hyperprior"):
        tiny = imgcomp.create_codec(name, **TINY)
        codec = _int8(imgcomp.prune(tiny, 0.5, 0.25, 0.5, method="structured"))
        loaded = imgcomp.load_codec(imgcomp.save_codec(codec, tmp_path / f"{name}.safetensors"))
        _assert_same_codec(loaded, codec)


def test_loaded_codec_is_refused_by_the_plain_model(structured, shipped, tmp_path) -> None:
    loaded = imgcomp.load_codec(imgcomp.save_codec(structured, tmp_path / "s.safetensors"))
    stream = loaded.encode(_image())
    with pytest.raises(CodecMismatchError):
        shipped.decode(stream)
    with pytest.raises(CodecMismatchError):
        imgcomp.decode_stream(stream)  # the header alone rebuilds the unpruned model


def test_loading_leaves_the_global_rng_alone(structured, tmp_path) -> None:
    path = imgcomp.save_codec(_int8(structured), tmp_path / "s8.safetensors")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    imgcomp.load_codec(path)
    assert torch.equal(torch.rand(3), expected)


# -- load_codec's signatures -------------------------------------------------------------------
def test_load_codec_signatures(structured, tmp_path) -> None:
    path = imgcomp.save_codec(structured, tmp_path / "s.safetensors")
    for loaded in (
        imgcomp.load_codec(str(path)),
        imgcomp.load_codec(path, format="imgcomp-codec"),
        imgcomp.load_codec("mbt2018-mean", path),  # the name (or alias) must match
        imgcomp.load_codec("mean-scale-hyperprior", path, format="imgcomp-codec"),
    ):
        assert loaded.fingerprint == structured.fingerprint
    with pytest.raises(CheckpointError, match="not 'scale-hyperprior'"):
        imgcomp.load_codec("scale-hyperprior", path)
    with pytest.raises(ImgcompError, match="needs a codec name and a checkpoint"):
        imgcomp.load_codec(path, format="compressai")
    with pytest.raises(CheckpointError, match=r"no such file: 'mbt2018-mean'; .* create_codec"):
        imgcomp.load_codec("mbt2018-mean")  # a name alone is not a file
    # weights files keep loading as before (format="imgcomp", the default with a checkpoint)
    from imgcomp.zoo import shipped_weights_path

    weights = shipped_weights_path("mean-scale-hyperprior", 3)
    plain = imgcomp.load_codec("mbt2018-mean", weights)
    assert plain.ops == () and plain.params == {"checkpoint": str(weights), "format": "imgcomp"}
    assert not is_saved_codec(weights)
    with pytest.raises(CheckpointError, match="weights file: load it with"):
        imgcomp.load_codec(weights)


def test_save_refuses_what_it_cannot_rebuild(shipped, tmp_path) -> None:
    with pytest.raises(ImgcompError, match="only learned codecs"):
        imgcomp.save_codec(imgcomp.create_codec("jpeg", quality=50), tmp_path / "j.safetensors")
    odd = LearnedCodec(shipped.model, shipped.name, shipped.params, ops=("my-op",))
    with pytest.raises(ImgcompError, match="cannot save or rebuild the op 'my-op'"):
        imgcomp.save_codec(odd, tmp_path / "o.safetensors")
    assert not list(tmp_path.iterdir())  # nothing half-written


# -- tampered files ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_s8(structured, tmp_path_factory) -> Path:
    """A saved structured + int8 codec (the op with the most structure to rebuild)."""
    return imgcomp.save_codec(
        _int8(structured), tmp_path_factory.mktemp("saved") / "s8.safetensors"
    )


def _parts(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    return load_file(path), meta


def _rewrite(path: Path, dest: Path, tensors=None, meta=None, record=None) -> Path:
    t, m = _parts(path)
    t = t if tensors is None else tensors(t)
    m = m if meta is None else meta(m)
    if record is not None:
        m["codec"] = json.dumps(record(json.loads(m["codec"])))
    save_file(t, str(dest), metadata=m)
    return dest


def _drop_last_op(r: dict) -> dict:
    return {**r, "ops": r["ops"][:-1]}


def _other_fingerprint(r: dict) -> dict:
    return {**r, "fingerprint": "0" * 16}


def _other_params(r: dict) -> dict:
    return {**r, "params": {"quality": 4}}


def _narrow_bias(t: dict) -> dict:
    return {**t, "g_a.graph.0.bias": t["g_a.graph.0.bias"][:-1].clone()}


def _narrow_density(t: dict) -> dict:
    return {k: v[:-4].clone() if k.startswith("z_prior.") else v for k, v in t.items()}


def _narrow_weight(t: dict) -> dict:
    return {**t, "g_s.graph.2.conv.weight.int": t["g_s.graph.2.conv.weight.int"][:, :-4].clone()}


def _edit_value(t: dict) -> dict:
    return {**t, "g_s.graph.0.bias": t["g_s.graph.0.bias"] + 1e-3}


def _missing_tensor(t: dict) -> dict:
    return {k: v for k, v in t.items() if k != "h_s.scalars"}


TAMPERS = {
    "ops edited": ({"record": _drop_last_op}, "do not fit the model its ops rebuild: missing"),
    "fingerprint edited": ({"record": _other_fingerprint}, "fingerprint"),
    "params edited": ({"record": _other_params}, "fingerprint"),
    "record not JSON": ({"meta": lambda m: {**m, "codec": "{not json"}}, "unreadable"),
    "record fields": ({"record": lambda r: {**r, "config": {"arch": 3}}}, "bad codec record"),
    "unknown op": ({"record": lambda r: {**r, "ops": ["rot13"]}}, "bad codec record"),
    "unknown codec": ({"record": lambda r: {**r, "name": "jpeg"}}, "not a learned codec"),
    "format": ({"meta": lambda m: {**m, "format": "other/1"}}, "not a saved imgcomp codec"),
    "bias shape": ({"tensors": _narrow_bias}, "does not rebuild"),
    "density shape": ({"tensors": _narrow_density}, "does not rebuild"),
    "weight shape": ({"tensors": _narrow_weight}, "does not rebuild"),
    "tensor value": ({"tensors": _edit_value}, "fingerprint"),
    "tensor missing": ({"tensors": _missing_tensor}, "do not fit"),
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_tampered_files_are_refused(case, saved_s8, tmp_path) -> None:
    edits, message = TAMPERS[case]
    bad = _rewrite(saved_s8, tmp_path / "bad.safetensors", **edits)
    with pytest.raises(CheckpointError, match=message):
        imgcomp.load_codec(bad)


def test_unreadable_files_are_refused(saved_s8, tmp_path) -> None:
    data = saved_s8.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    header_cut = tmp_path / "header.safetensors"
    header_cut.write_bytes(data[:40])
    png = tmp_path / "image.safetensors"
    Image.fromarray(_image()).save(png, format="PNG")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (truncated, header_cut, png, empty, tmp_path / "missing.safetensors"):
        with pytest.raises(CheckpointError):
            imgcomp.load_codec(path)
        assert not is_saved_codec(path)
    pickled = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(2)}, pickled)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        imgcomp.load_codec(pickled)


def test_saved_format_constant(saved_s8) -> None:
    assert _parts(saved_s8)[1]["format"] == SAVED_FORMAT == "imgcomp.codec/1"
