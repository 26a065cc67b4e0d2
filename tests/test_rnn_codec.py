"""The toderici2017 codec: progressive streams, truncate, context-coded codes, npz files, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp.bitstream import StreamHeader, pack, unpack
from imgcomp.entropy.binary_context import (
    AdaptiveContextModel,
    LearnedContextModel,
    context_counts,
    fit_frequencies,
)
from imgcomp.errors import BitstreamError, CodecMismatchError, ImgcompError
from imgcomp.families.rnn.codec import RNNCodec
from imgcomp.progressive import stream_iterations, truncate


def _tiny(iterations: int = 4, seed: int = 0) -> RNNCodec:
    return imgcomp.create_codec(
        "rnn", pretrained=False, width=0.125, seed=seed, iterations=iterations
    )


_CODEC = _tiny()
_IMG = np.random.default_rng(5).integers(0, 256, (37, 50, 3), dtype=np.uint8)
_STREAM = _CODEC.encode(_IMG)


def _with_table(codec: RNNCodec, img: np.ndarray) -> RNNCodec:
    """The codec's model with a context table fitted on its own codes of ``img``."""
    model = codec.model
    with torch.no_grad():
        codes = model.analysis(codec._to_input(img), 16).numpy().astype(np.int8)
    model = type(model)(**model.config)
    model.load_state_dict({**codec.model.state_dict()}, strict=False)
    model.code_model = torch.from_numpy(fit_frequencies(context_counts(codes)))
    return RNNCodec(model.eval(), codec.name, codec.params)


def test_any_size_round_trips_to_the_models_reconstruction() -> None:
    for shape in [(37, 50), (1, 1), (64, 33), (17, 96)]:
        img = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
        data = _CODEC.encode(img)
        out = _CODEC.decode(data)
        assert out.shape == img.shape
        assert np.array_equal(out, _CODEC.reconstruct(img)), shape


def test_registered_with_its_alias_and_iterations_checked() -> None:
    assert imgcomp.create_codec("toderici2017", pretrained=False, width=0.125).iterations == 3
    for bad in (0, 17, -1, 2.5, True, "3"):
        with pytest.raises(ImgcompError, match=r"iterations must be an integer in 1\.\.16"):
            _tiny(iterations=bad)


def test_truncate_equals_encoding_at_fewer_iterations() -> None:
    assert stream_iterations(_STREAM) == 4
    for j in (1, 2, 3, 4):
        cut = truncate(_STREAM, iterations=j)
        direct = _CODEC.with_iterations(j).encode(_IMG)
        assert cut == direct, j
        assert np.array_equal(_CODEC.decode(cut), _CODEC.with_iterations(j).reconstruct(_IMG))
    # a decoder built for any iteration count decodes every stream of the model
    assert np.array_equal(_tiny(iterations=1).decode(_STREAM), _CODEC.reconstruct(_IMG))


def test_truncate_refuses_bad_counts_and_other_codecs() -> None:
    for j in (0, 5, -1):
        with pytest.raises(ImgcompError, match=r"iterations must be in 1\.\.4"):
            truncate(_STREAM, iterations=j)
    jpeg = imgcomp.create_codec("jpeg", quality=50).encode(_IMG)
    with pytest.raises(BitstreamError, match="not progressive"):
        truncate(jpeg, iterations=1)
    with pytest.raises(BitstreamError):
        truncate(_STREAM[:-3], iterations=1)


def test_progressive_decode_is_the_running_sum() -> None:
    """Iteration k's reconstruction adds the k-th decoder output to the (k-1)-th."""
    x = _CODEC._to_input(_IMG)
    with torch.no_grad():
        codes = _CODEC.model.analysis(x, 4)
        outs = list(_CODEC.model.decode_iterations(codes))
        for k in range(1, 5):
            want = 0.5 + torch.stack(outs[:k]).sum(0)
            assert torch.allclose(_CODEC.model.synthesis(codes[:k]), want, atol=1e-6)


def test_sections_and_iterations_must_agree() -> None:
    header, sections = unpack(_STREAM)
    lying = pack(
        StreamHeader(header.codec, header.fingerprint, 37, 50, header.params), sections[:3]
    )
    with pytest.raises(BitstreamError, match="iterations=4 but holds 3"):
        _CODEC.decode(lying)
    too_many = {**header.params, "iterations": 17}
    with pytest.raises(BitstreamError):
        _CODEC.decode(
            pack(StreamHeader(header.codec, header.fingerprint, 37, 50, too_many), sections * 5)[:]
        )


def test_another_model_is_refused() -> None:
    with pytest.raises(CodecMismatchError):
        _tiny(seed=1).decode(_STREAM)


def test_a_learned_context_table_codes_fewer_bytes_and_enters_the_fingerprint() -> None:
    img = np.random.default_rng(9).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(img[::8, ::8], 8, 0), 8, 1)  # blocky: correlated codes
    learned = _with_table(_CODEC, img)
    assert isinstance(learned.latent.context, LearnedContextModel)
    assert isinstance(_CODEC.latent.context, AdaptiveContextModel)
    assert learned.fingerprint != _CODEC.fingerprint
    data = learned.with_iterations(16).encode(img)
    assert np.array_equal(learned.decode(data), learned.with_iterations(16).reconstruct(img))
    raw = 16 * 32 * (64 // 16) * (96 // 16) / 8
    _, sections = unpack(data)
    assert sum(map(len, sections)) < raw
    # estimated bits agree with the coded payload to within the per-section overhead
    est = learned.with_iterations(16).estimated_bits(img) / 8
    assert abs(sum(map(len, sections)) - est) < 16 * 8


def test_npz_code_files_round_trip_and_refuse_garbage() -> None:
    img = np.random.default_rng(1).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    data = _CODEC.encode_npz(img)
    with np.load(io.BytesIO(data)) as f:
        assert f["shape"].tolist() == [4, 1, 32, 4, 2]
        assert f["codes"].dtype == np.uint8 and f["codes"].size == 4 * 32 * 8 // 8
    assert np.array_equal(_CODEC.decode_npz(data), _CODEC.reconstruct(img))
    for bad in (b"", b"garbage", data[: len(data) // 2]):
        with pytest.raises(BitstreamError):
            _CODEC.decode_npz(bad)
    buf = io.BytesIO()
    np.savez(buf, shape=np.array([4, 1, 31, 4, 2]), codes=np.zeros(124, np.uint8))
    with pytest.raises(BitstreamError, match="shape"):
        _CODEC.decode_npz(buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, shape=np.array([4, 1, 32, 4, 2]), codes=np.zeros(3, np.uint8))
    with pytest.raises(BitstreamError, match="bytes of codes"):
        _CODEC.decode_npz(buf.getvalue())


def test_rate_curve_truncates_one_encode_per_image() -> None:
    from imgcomp.rate_curve import format_rate_curve, rate_curve

    rows = rate_curve(_CODEC, [("a", _IMG)], [1, 2, 4])
    assert [r["iterations"] for r in rows] == [1, 2, 4]
    assert rows[0]["bytes"] < rows[1]["bytes"] < rows[2]["bytes"]
    direct = _CODEC.with_iterations(2).encode(_IMG)
    assert rows[1]["bytes"] == len(direct)
    assert "MS-SSIM" in format_rate_curve(rows)
    with pytest.raises(ImgcompError, match="not a progressive codec"):
        rate_curve(imgcomp.create_codec("jpeg", quality=50), [("a", _IMG)], [1])
