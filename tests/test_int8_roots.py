"""The int8 GDN's square root in bands (imgcomp.ops.quant.roots): the same bytes as one
dequantize / root / quantize over the whole tensor, and the FX graphs of int8 transforms use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp.ops.quant import int8 as int8_module
from imgcomp.ops.quant import quantize_codec, roots
from imgcomp.ops.quant.roots import quantized_root, quantized_roots, uint8_view

pytestmark = pytest.mark.usefixtures("one_thread")


def _q(shape, seed: int, channels_last: bool = False, scale: float = 0.037, zp: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g) * 9.0 - 0.05  # a few values below zero: NaN roots
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return torch.quantize_per_tensor(x, scale, zp, torch.quint8)


def _reference(x: torch.Tensor, scale: float, zp: int, inverse: bool) -> torch.Tensor:
    root = torch.sqrt if inverse else torch.rsqrt
    return torch.quantize_per_tensor(root(x.dequantize()), scale, zp, torch.quint8)


@pytest.mark.parametrize("inverse", [True, False])
@pytest.mark.parametrize(
    "shape, channels_last",
    [
        ((1, 8, 5, 7), True),
        ((2, 3, 9, 4), False),
        ((1, 16, 130, 70), True),
        ((1, 3, 301, 37), True),  # rows of 111 elements: bands aligned to 64 rows
        ((1, 5, 40, 9), False),
    ],
)
def test_banded_root_is_the_bytes_of_one_dequantize_root_quantize(
    shape, channels_last, inverse, monkeypatch
):
    monkeypatch.setattr(roots, "ROOT_BAND_ELEMENTS", 500)  # many bands on small tensors
    x = _q(shape, seed=sum(shape), channels_last=channels_last)
    want = _reference(x, 0.021, 7, inverse)
    got = quantized_root(x, torch.tensor(0.021), torch.tensor(7), inverse)
    assert got.dtype == torch.quint8 and got.q_scale() == pytest.approx(0.021)
    assert got.q_zero_point() == 7 and got.stride() == want.stride() == x.stride()
    assert torch.equal(got.int_repr(), want.int_repr())


def test_banded_root_covers_every_level(monkeypatch):
    monkeypatch.setattr(roots, "ROOT_BAND_ELEMENTS", 4096)
    # every uint8 level (zero point 40: the levels below it are negative, their root NaN)
    levels = torch.arange(256, dtype=torch.uint8).repeat(64 * 9)
    raw = levels.reshape(1, 9, 64, 256).contiguous(memory_format=torch.channels_last)
    x = torch._make_per_tensor_quantized_tensor(raw, 0.05, 40)
    for inverse in (True, False):
        want = _reference(x, 0.013, 0, inverse)
        assert torch.equal(quantized_root(x, 0.013, 0, inverse).int_repr(), want.int_repr())


def test_banded_root_of_a_strided_view_falls_back_to_the_same_bytes():
    x = _q((1, 4, 12, 10), seed=5)[:, :, ::2]
    got = quantized_root(x, 0.02, 2, True)
    assert torch.equal(got.int_repr(), _reference(x, 0.02, 2, True).int_repr())


def test_uint8_view_shares_the_bytes():
    x = _q((1, 3, 4, 5), seed=1, channels_last=True)
    raw = uint8_view(x)
    assert raw.stride() == x.stride() and torch.equal(raw, x.int_repr())
    assert raw.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()


def _tiny_int8(banded: bool, monkeypatch):
    codec = imgcomp.create_codec("mbt2018-mean", pretrained=False, N=16, M=24, seed=0)
    if not banded:
        monkeypatch.setattr(int8_module, "quantized_roots", lambda graph: 0)
    rng = np.random.default_rng(0)
    calib = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    q, _ = quantize_codec(codec, "int8", calib, ("encoder", "decoder"))
    monkeypatch.undo()
    return q


def test_int8_gdn_graphs_take_the_banded_root(monkeypatch):
    """Every GDN of the int8 encoder and decoder: no whole-tensor root left, and the codec's
    streams and pixels are those of the plain dequantize / root / quantize graph."""
    banded, plain = _tiny_int8(True, monkeypatch), _tiny_int8(False, monkeypatch)
    for name in ("g_a", "g_s"):
        code = getattr(banded.model, name).graph.code
        assert code.count("quantized_root(") == 3, name
        assert "sqrt" not in code
        assert "sqrt" in getattr(plain.model, name).graph.code
    monkeypatch.setattr(roots, "ROOT_BAND_ELEMENTS", 2000)  # bands even on this small image
    img = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    stream = banded.encode(img)
    assert stream == plain.encode(img)
    assert np.array_equal(np.asarray(banded.decode(stream)), np.asarray(plain.decode(stream)))


def test_quantized_roots_leaves_graphs_without_the_chain_alone():
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.ReLU()))
    before = gm.code
    assert quantized_roots(gm) == 0 and gm.code == before
