"""The ONNX Runtime backend (imgcomp.backends): codecs whose transforms run in onnxruntime,
float32 and int8, their round trip, fingerprints and the refusals around them."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

import imgcomp
from imgcomp.errors import CodecMismatchError, ImgcompError

pytest.importorskip("onnxruntime", reason="the onnxruntime backend: pip install 'imgcomp[onnx]'")
pytest.importorskip("onnx", reason="the onnxruntime backend: pip install 'imgcomp[onnx]'")

from imgcomp.backends import to_backend
from imgcomp.backends.api import backend_of
from imgcomp.backends.onnx_int8 import excluded_nodes
from imgcomp.backends.session import OnnxRuntimeModule

SMALL = {"pretrained": False, "N": 16, "M": 24}


def _image(h: int = 70, w: int = 90, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth content: a random image codes to noise everywhere
    base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    img = np.kron(base, np.ones((8, 8, 1)))[:h, :w] + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _crops(n: int = 3) -> list[np.ndarray]:
    return [_image(64, 64, seed) for seed in range(10, 10 + n)]


@pytest.fixture(scope="module")
def torch_codec():
    return imgcomp.create_codec("mean-scale-hyperprior", **SMALL)


@pytest.fixture(scope="module")
def ort_codec(torch_codec):
    return to_backend(torch_codec)


@pytest.fixture(scope="module")
def int8_codec(torch_codec):
    return to_backend(torch_codec, int8=True, calibration=_crops())


@pytest.mark.parametrize("which", ["ort_codec", "int8_codec"])
def test_decode_equals_reconstruct(which, request) -> None:
    codec = request.getfixturevalue(which)
    img = _image()
    data = codec.encode(img)
    assert codec.encode(img) == data  # re-encoding gives the same bytes
    decoded = codec.decode(data)
    np.testing.assert_array_equal(decoded, codec.reconstruct(img))
    np.testing.assert_array_equal(decoded, codec.decode(data))


def test_every_transform_runs_in_onnxruntime(ort_codec, int8_codec, torch_codec) -> None:
    for codec, kind in ((ort_codec, "float32"), (int8_codec, "int8")):
        for name in ("g_a", "g_s", "h_a", "h_s"):
            module = getattr(codec.model, name)
            assert isinstance(module, OnnxRuntimeModule) and module.kind == kind
        # the hyper transforms pick the coding tables: one thread, whatever the caller's
        assert codec.model.h_s.threads == 1 and codec.model.h_a.threads == 1
        assert codec.model.g_s.threads is None
    assert not isinstance(torch_codec.model.g_s, OnnxRuntimeModule)  # the source is untouched


def test_ops_name_the_backend(torch_codec, ort_codec, int8_codec) -> None:
    assert ort_codec.ops == ("backend=onnxruntime:float32",)
    assert int8_codec.ops == ("backend=onnxruntime:int8:encoder+decoder+entropy",)
    assert [backend_of(c) for c in (torch_codec, ort_codec)] == ["torch", "onnxruntime"]
    assert len({c.fingerprint for c in (torch_codec, ort_codec, int8_codec)}) == 3


def test_float32_computes_the_torch_model(torch_codec, ort_codec) -> None:
    img = _image()
    ours, ref = ort_codec.reconstruct(img).astype(int), torch_codec.reconstruct(img).astype(int)
    assert np.abs(ours - ref).max() <= 2
    assert abs(len(ort_codec.encode(img)) - len(torch_codec.encode(img))) <= 2


def test_streams_are_refused_across_backends(torch_codec, ort_codec, int8_codec) -> None:
    img = _image()
    for writer, reader in (
        (torch_codec, ort_codec),
        (ort_codec, torch_codec),
        (ort_codec, int8_codec),
    ):
        with pytest.raises(CodecMismatchError):
            reader.decode(writer.encode(img))


def test_a_copy_rebuilds_its_sessions_and_decodes_the_stream(ort_codec) -> None:
    img = _image()
    data = ort_codec.encode(img)
    twin = ort_codec.derive(copy.deepcopy(ort_codec.model), "x")
    twin = type(ort_codec)(twin.model, ort_codec.name, ort_codec.params, ops=ort_codec.ops)
    assert twin.model.g_s._session is None
    assert twin.fingerprint == ort_codec.fingerprint
    np.testing.assert_array_equal(twin.decode(data), ort_codec.decode(data))


def test_export_is_deterministic(torch_codec, ort_codec) -> None:
    """The same weights give the same ONNX bytes, so a rebuilt codec reads its streams."""
    assert to_backend(torch_codec).fingerprint == ort_codec.fingerprint


def test_create_codec_backend() -> None:
    codec = imgcomp.create_codec("mean-scale-hyperprior", backend="onnxruntime", **SMALL)
    assert codec.ops == ("backend=onnxruntime:float32",)
    with pytest.raises(ImgcompError, match="unknown backend 'tensorrt'; backends: torch, onnx"):
        imgcomp.create_codec("mean-scale-hyperprior", backend="tensorrt", **SMALL)


def test_missing_onnxruntime_says_what_to_install(monkeypatch, torch_codec) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # find_spec: not installed
    with pytest.raises(ImgcompError, match=r"pip install 'imgcomp\[onnx\]'"):
        imgcomp.create_codec("mean-scale-hyperprior", backend="onnxruntime", **SMALL)
    with pytest.raises(ImgcompError, match="onnxruntime"):
        to_backend(torch_codec)


def test_refusals(torch_codec, ort_codec) -> None:
    with pytest.raises(ImgcompError, match="already"):
        to_backend(ort_codec)
    with pytest.raises(ImgcompError, match="unknown backend"):
        to_backend(torch_codec, "tvm")
    with pytest.raises(ImgcompError, match="int8=True"):
        to_backend(torch_codec, components=["decoder"])
    bf16 = imgcomp.quantize(torch_codec, "bf16")
    with pytest.raises(ImgcompError, match="quantize in onnxruntime"):
        to_backend(bf16)


def test_int8_of_some_components(torch_codec) -> None:
    codec = to_backend(torch_codec, int8=True, calibration=_crops(1), components=["decoder"])
    kinds = {n: getattr(codec.model, n).kind for n in ("g_a", "g_s", "h_a", "h_s")}
    assert kinds == {"g_a": "float32", "g_s": "int8", "h_a": "float32", "h_s": "float32"}
    assert codec.ops == ("backend=onnxruntime:int8:decoder",)


def test_int8_keeps_latent_facing_and_rgb_convolutions_float(torch_codec, ort_codec) -> None:
    """g_s: its first conv reads the latents (the family keeps it float), its last writes RGB
    (3 channels: onnxruntime's int8 conv is slower there)."""
    data = ort_codec.model.g_s.onnx_model.numpy().tobytes()
    names = excluded_nodes(data, torch_codec.model.g_s, {"first": "reads y_hat"})
    assert names == ["/0/conv/Conv", "/6/conv/Conv"]


def test_structured_pruned_model_exports(torch_codec) -> None:
    pruned = imgcomp.prune(torch_codec, 0.3, 0.3, 0.3, method="structured")
    codec = to_backend(pruned, int8=True, calibration=_crops(1))
    img = _image()
    np.testing.assert_array_equal(codec.decode(codec.encode(img)), codec.reconstruct(img))
    assert codec.ops[:-1] == pruned.ops


def test_shipped_model_float32_and_int8() -> None:
    base = imgcomp.create_codec("mbt2018-mean", quality=3)
    img = _image(128, 128, seed=3)
    ort = to_backend(base)
    int8 = to_backend(base, int8=True, calibration=_crops(2))
    for codec in (ort, int8):
        np.testing.assert_array_equal(codec.decode(codec.encode(img)), codec.reconstruct(img))
    diff = np.abs(ort.reconstruct(img).astype(int) - base.reconstruct(img).astype(int))
    assert diff.max() <= 2
