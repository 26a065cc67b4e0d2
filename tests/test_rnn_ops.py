"""Pruning and quantization of the RNN codec through its family's declaration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp import L1Prune, StructuredPrune
from imgcomp.families.rnn.codec import RNNCodec
from imgcomp.metrics import psnr


def _tiny(iterations: int = 2) -> RNNCodec:
    return imgcomp.create_codec("rnn", pretrained=False, width=0.125, seed=3, iterations=iterations)


_CODEC = _tiny()
_IMG = np.random.default_rng(4).integers(0, 256, (64, 96, 3), dtype=np.uint8)
_IMG = np.repeat(np.repeat(_IMG[::8, ::8], 8, 0), 8, 1)


def _round_trip(codec: RNNCodec) -> np.ndarray:
    data = codec.encode(_IMG)
    out = imgcomp.decode_stream(data) if not codec.ops else codec.decode(data)
    assert np.array_equal(out, codec.reconstruct(_IMG))
    return out


def _saved_round_trip(codec: RNNCodec, tmp_path) -> None:
    path = imgcomp.save_codec(codec, tmp_path / "c.safetensors")
    back = imgcomp.load_codec(path)
    assert isinstance(back, RNNCodec) and back.ops == codec.ops
    assert back.fingerprint == codec.fingerprint
    assert np.array_equal(back.decode(codec.encode(_IMG)), codec.reconstruct(_IMG))


def test_l1_pruning_per_component_reaches_the_gate_convolutions(tmp_path) -> None:
    pruned = imgcomp.prune(_CODEC, L1Prune({"encoder": 0.3, "decoder": 0.3}))
    m = pruned.model
    for w in (
        m.encoder.rnn2.conv_ih.weight,
        m.encoder.rnn2.conv_hh.weight,
        m.decoder.rnn4.conv_hh.weight,
    ):
        assert abs(float((w == 0).float().mean()) - 0.3) < 0.01
    assert not bool((m.binarizer.conv.weight == 0).any())
    assert pruned.ops == ("prune=enc0.3,bin0,dec0.3:l1-layer",)
    _round_trip(pruned)
    _saved_round_trip(pruned, tmp_path)


def test_structured_pruning_removes_hidden_channels_in_gate_rows_and_blocks(tmp_path) -> None:
    slim = imgcomp.prune(_CODEC, StructuredPrune({"encoder": 0.3, "decoder": 0.3}))
    cfg = slim.model.config
    before = _CODEC.model.config
    assert cfg["code_channels"] == 32
    for key in ("encoder_widths", "decoder_widths"):
        assert all(a < b for a, b in zip(cfg[key], before[key], strict=True))
    for cell in slim.model.decoder.cells:
        h = cell.hidden_channels
        assert h % 4 == 0 and cell.conv_ih.weight.shape[0] == 4 * h == cell.conv_hh.weight.shape[0]
        assert cell.conv_hh.weight.shape[1] == h
    # the decoder's MACs fall with its widths; the encoder's are untouched when only it is kept
    only_dec = imgcomp.prune(_CODEC, StructuredPrune({"decoder": 0.3}))
    p0, p1 = imgcomp.profile(_CODEC), imgcomp.profile(only_dec)
    assert p1["decoder"].macs < 0.6 * p0["decoder"].macs
    assert p1["encoder"].macs == p0["encoder"].macs
    assert only_dec.model.config["encoder_widths"] == before["encoder_widths"]
    _round_trip(slim)
    _saved_round_trip(slim, tmp_path)


def test_structured_pruning_keeps_the_most_important_units() -> None:
    model = _CODEC.model
    cell = model.decoder.rnn4
    h = cell.hidden_channels
    with torch.no_grad():  # block 0 of rnn4 made tiny: it must be the block pruned first
        for g in range(4):
            cell.conv_ih.weight[g * h : g * h + 4] *= 1e-6
            cell.conv_hh.weight[g * h : g * h + 4] *= 1e-6
        cell.conv_hh.weight[:, :4] *= 1e-6
        model.decoder.conv2.weight[:, 0] *= 1e-6
    try:
        codec = RNNCodec(model, _CODEC.name, _CODEC.params)
        slim = imgcomp.prune(codec, StructuredPrune({"decoder": 0.3}))
        groups = {g.root: g for g in slim.op_report.groups}
        assert 0 in groups["decoder.rnn4"].removed
    finally:
        with torch.no_grad():
            for g in range(4):
                cell.conv_ih.weight[g * h : g * h + 4] *= 1e6
                cell.conv_hh.weight[g * h : g * h + 4] *= 1e6
            cell.conv_hh.weight[:, :4] *= 1e6
            model.decoder.conv2.weight[:, 0] *= 1e6


def test_structured_recovery_trains_on_the_residual_objective(tmp_path) -> None:
    slim = imgcomp.prune(_CODEC, StructuredPrune({"decoder": 0.3}, recover_steps=2))
    assert slim.ops == ("prune=enc0,bin0,dec0.3:structured-l1:recover2",)
    _round_trip(slim)


@pytest.mark.parametrize("mode", ["bf16", "int8", "w8"])
def test_quantized_codecs_round_trip_and_save(mode: str, tmp_path) -> None:
    q = imgcomp.quantize(_CODEC, mode)
    assert q.ops == (f"quantize:{mode}:encoder+binarizer+decoder",)
    out = _round_trip(q)
    assert psnr(_CODEC.reconstruct(_IMG), out) > 20
    _saved_round_trip(q, tmp_path)


def test_int8_quantizes_every_convolution_and_keeps_the_gates_float() -> None:
    q = imgcomp.quantize(_CODEC, "int8", components=["decoder"])
    cell = q.model.decoder.rnn1
    assert type(cell.conv_ih).__name__ == "Int8Transform"
    assert type(cell.conv_hh).__name__ == "Int8Transform"
    assert type(q.model.encoder.rnn1.conv_ih).__name__ == "Conv2d"  # not selected
    assert isinstance(cell, type(_CODEC.model.decoder.rnn1))  # the cell itself stays float


def test_int8_units_inside_float_cells_hand_on_channels_last() -> None:
    # A whole transform hands back NCHW; a convolution among float gates hands back the
    # channels_last tensor it computed: converting back after each of them cost 1.4 s of a
    # 2.0 s int8 decode of kodim01 (the decode went 1.7x -> 0.59x of float32).
    q = imgcomp.quantize(_CODEC, "int8", components=["decoder"])
    conv = q.model.decoder.rnn1.conv_ih
    assert conv.channels_last_out
    x = torch.rand(1, conv.graph.get_submodule("0").in_channels, 4, 6)
    assert conv(x).is_contiguous(memory_format=torch.channels_last)
    assert not conv(x).is_contiguous()
    balle = imgcomp.quantize(imgcomp.create_codec("mbt2018-mean", quality=3), "int8")
    assert not balle.model.g_s.channels_last_out
    assert balle.model.g_s(torch.rand(1, 96, 4, 6)).is_contiguous()


def test_fewer_weight_bits_hurt_more() -> None:
    ref = _CODEC.reconstruct(_IMG)
    scores = {k: psnr(ref, imgcomp.quantize(_CODEC, f"w{k}").reconstruct(_IMG)) for k in (2, 4, 8)}
    assert scores[8] > scores[4] > scores[2]
