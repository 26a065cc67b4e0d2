"""Unstructured magnitude pruning: exact counts, smallest weights first, untouched parts stay
bit for bit, absolute ratios compose, and a pruned codec still round-trips through real bytes."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

import imgcomp
from imgcomp.errors import CodecMismatchError, ImgcompError
from imgcomp.families.balle.model import build_model
from imgcomp.ops.base import COMPONENTS, check_ratio, copy_model, derive
from imgcomp.ops.pruning import prunable_layers, prune_unstructured, sparsity
from imgcomp.ops.structured import prune_structured

PROPERTY = settings(deadline=None, max_examples=25)
ratio_st = st.floats(0.0, 0.95, allow_nan=False)
ratios_st = st.dictionaries(st.sampled_from(COMPONENTS), ratio_st, max_size=3)


def _model(seed: int, tied: bool = False, arch: str = "mbt2018-mean") -> nn.Module:
    """A tiny model with random weights; ``tied`` draws them from 7 values (ties, zeros)."""
    model = build_model(arch, 8, 12).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if tied:
                p.copy_(torch.randint(-3, 4, p.shape, generator=g).float() * 0.25)
            else:
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().view(torch.uint8).numpy().tobytes()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _weights(model: nn.Module) -> dict[str, tuple[str, torch.Tensor]]:
    return {name: (comp, layer.weight) for name, comp, layer in prunable_layers(model)}


def _zeros(t: torch.Tensor) -> int:
    return t.numel() - int(torch.count_nonzero(t))


@PROPERTY
@given(seed=st.integers(0, 2**16), ratios=ratios_st, tied=st.booleans())
def test_layer_scope_hits_the_exact_count_and_removes_the_smallest(seed, ratios, tied) -> None:
    model = _model(seed, tied)
    before = {n: w.clone() for n, (_, w) in _weights(model).items()}
    report = prune_unstructured(model, ratios, scope="layer")
    for name, (comp, w) in _weights(model).items():
        r, orig = ratios.get(comp, 0.0), before[name]
        target = round(r * w.numel())
        assert _zeros(w) == max(target, _zeros(orig))
        if not tied:
            assert abs(_zeros(w) - r * w.numel()) <= 1  # one element per tensor
        removed = (w == 0) & (orig != 0)
        kept = w != 0
        assert torch.equal(w[kept], orig[kept])  # survivors unchanged
        if removed.any() and kept.any():
            assert orig[removed].abs().max() <= orig[kept].abs().min()
        if tied and removed.any():  # ties at the threshold break by flat index
            thr = orig[removed].abs().max()
            at = (orig.abs() == thr).reshape(-1).nonzero().reshape(-1)
            dropped = removed.reshape(-1)[at]
            assert torch.equal(dropped, torch.sort(dropped, descending=True, stable=True).values)
    by_name = {layer.name: layer for layer in report.layers}
    for name, (comp, w) in _weights(model).items():
        assert by_name[name].zeros == _zeros(w) and by_name[name].component == comp


@PROPERTY
@given(seed=st.integers(0, 2**16), ratios=ratios_st, scope=st.sampled_from(["layer", "global"]))
def test_unselected_components_and_non_weights_are_untouched_bit_for_bit(
    seed, ratios, scope
) -> None:
    model = _model(seed)
    before = _snapshot(model)
    prune_unstructured(model, ratios, scope=scope)
    after = model.state_dict()
    assert list(after) == list(before)
    pruned_keys = {
        f"{name}.weight" for name, (comp, _) in _weights(model).items() if ratios.get(comp, 0) > 0
    }
    for key, value in after.items():
        if key not in pruned_keys:
            assert _bits(value) == _bits(before[key]), key


@PROPERTY
@given(seed=st.integers(0, 2**16), tied=st.booleans(), scope=st.sampled_from(["layer", "global"]))
def test_ratio_zero_is_the_identity(seed, tied, scope) -> None:
    model = _model(seed, tied)
    before = _snapshot(model)
    report = prune_unstructured(model, dict.fromkeys(COMPONENTS, 0.0), scope=scope)
    assert all(_bits(v) == _bits(before[k]) for k, v in model.state_dict().items())
    assert all(layer.ratio == 0.0 for layer in report.layers)


@PROPERTY
@given(
    seed=st.integers(0, 2**16),
    r1=ratio_st,
    r2=ratio_st,
    tied=st.booleans(),
    scope=st.sampled_from(["layer", "global"]),
)
def test_ratios_are_absolute_targets_when_pruning_again(seed, r1, r2, tied, scope) -> None:
    """Pruning r1 then r2 equals pruning max(r1, r2) once, bit for bit (0.3 then 0.5 -> 50%)."""
    twice, once = _model(seed, tied), _model(seed, tied)
    prune_unstructured(twice, {"decoder": r1, "entropy": r2}, scope=scope)
    report = prune_unstructured(twice, {"decoder": r2, "entropy": r1}, scope=scope)
    prune_unstructured(once, {"decoder": max(r1, r2), "entropy": max(r1, r2)}, scope=scope)
    for key, value in once.state_dict().items():
        assert _bits(twice.state_dict()[key]) == _bits(value), key
    if scope == "layer" and not tied:
        for layer in report.layers:
            if layer.component == "decoder":
                assert layer.zeros == round(max(r1, r2) * layer.numel)


def test_pruning_point_three_then_point_five_leaves_half_zeros() -> None:
    model = _model(1)
    prune_unstructured(model, {"encoder": 0.3})
    report = prune_unstructured(model, {"encoder": 0.5})
    enc = [layer for layer in report.layers if layer.component == "encoder"]
    assert [layer.zeros for layer in enc] == [round(0.5 * layer.numel) for layer in enc]
    assert report.component_sparsity["encoder"] == pytest.approx(0.5, abs=1e-3)


@PROPERTY
@given(seed=st.integers(0, 2**16), ratios=ratios_st, tied=st.booleans())
def test_global_scope_hits_the_ratio_over_each_components_union(seed, ratios, tied) -> None:
    model = _model(seed, tied)
    before = {n: w.clone() for n, (_, w) in _weights(model).items()}
    report = prune_unstructured(model, ratios, scope="global")
    assert report.scope == "global"
    for comp in COMPONENTS:
        names = [n for n, (c, _) in _weights(model).items() if c == comp]
        after = torch.cat([_weights(model)[n][1].reshape(-1) for n in names])
        orig = torch.cat([before[n].reshape(-1) for n in names])
        target = round(ratios.get(comp, 0.0) * orig.numel())
        assert _zeros(after) == max(target, _zeros(orig))
        removed, kept = (after == 0) & (orig != 0), after != 0
        if removed.any() and kept.any():  # one threshold across the component's layers
            assert orig[removed].abs().max() <= orig[kept].abs().min()


def test_global_scope_lets_layer_sparsities_differ() -> None:
    model = _model(3)
    with torch.no_grad():
        model.g_s[0].weight.mul_(0.01)  # one layer of small weights takes most of the zeros
    report = prune_unstructured(model, {"decoder": 0.3}, scope="global")
    dec = [layer for layer in report.layers if layer.component == "decoder"]
    assert dec[0].sparsity > 0.5 > min(layer.sparsity for layer in dec[1:])
    assert sum(x.zeros for x in dec) == round(0.3 * sum(x.numel for x in dec))


def test_report_sparsity_helper_and_sparse_bytes() -> None:
    model = _model(2)
    report = prune_unstructured(model, {"encoder": 0.5, "decoder": 0.9}, scope="layer")
    names = [name for name, _, _ in prunable_layers(model)]
    assert [layer.name for layer in report.layers] == names
    assert "g_a.0" in names and "h_s.4" in names and len(names) == 4 + 4 + 3 + 3
    helper = sparsity(model)
    for comp, value in report.component_sparsity.items():
        assert helper[comp] == pytest.approx(value)
    assert helper["entropy"] == 0.0
    assert helper["total"] == pytest.approx(report.total_sparsity)
    for layer in report.layers:
        nnz = layer.numel - layer.zeros
        assert layer.sparse_bytes == math.ceil(layer.numel / 8) + 4 * nnz
        assert layer.dense_bytes == 4 * layer.numel
    assert report.dense_bytes == 4 * sum(layer.numel for layer in report.layers)
    assert report.sparse_bytes < report.dense_bytes
    assert report.ratios == {"encoder": 0.5, "decoder": 0.9}


def test_no_masks_or_hooks_remain_and_torch_prune_masks_are_folded() -> None:
    model = _model(4)
    torch_prune.l1_unstructured(model.g_a[0], "weight", amount=0.2)  # pre-existing torch mask
    keys = set(_snapshot(model))
    prune_unstructured(model, {"encoder": 0.5, "entropy": 0.4})
    assert not torch_prune.is_pruned(model)
    for _, _, layer in prunable_layers(model):
        assert isinstance(layer.weight, nn.Parameter)
        assert not layer._forward_pre_hooks
        assert not hasattr(layer, "weight_orig") and not hasattr(layer, "weight_mask")
    assert _zeros(model.g_a[0].weight) == round(0.5 * model.g_a[0].weight.numel())
    assert set(model.state_dict()) == {k.replace("_orig", "") for k in keys if "_mask" not in k}


def test_bf16_weights_prune_to_the_exact_count() -> None:
    model = _model(5).to(torch.bfloat16)
    report = prune_unstructured(model, {"decoder": 0.4})
    for layer in report.layers:
        if layer.component == "decoder":
            assert layer.zeros == round(0.4 * layer.numel)
    assert model.g_s[0].weight.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("ratios", "scope", "match"),
    [
        ({"decoder": 1.0}, "layer", r"\[0, 1\)"),
        ({"decoder": -0.1}, "layer", r"\[0, 1\)"),
        ({"decoder": "half"}, "layer", "number"),
        ({"hyper": 0.3}, "layer", "unknown component"),
        ({"decoder": 0.3}, "channel", "scope"),
        ([("decoder", 0.3)], "layer", "map"),
    ],
)
def test_bad_arguments_are_clear_errors(ratios, scope, match) -> None:
    model = _model(0)
    before = _snapshot(model)
    with pytest.raises(ImgcompError, match=match):
        prune_unstructured(model, ratios, scope=scope)
    assert all(_bits(v) == _bits(before[k]) for k, v in model.state_dict().items())


GOOD_RATIOS = [0, 0.0, 0.3, 0.999, np.float32(0.25), np.float64(0.5), np.int64(0), Fraction(1, 4)]
BAD_RATIOS = ["0.3", "half", b"0.3", True, False, np.bool_(False), None, [0.3], torch.tensor(0.3),
              float("nan"), float("inf"), -0.1, -1e-300, 1, 1.0, 1.5]  # fmt: skip
PRUNERS = {"l1": prune_unstructured, "structured": prune_structured}


@pytest.mark.parametrize("value", BAD_RATIOS, ids=repr)
def test_both_methods_refuse_the_same_ratios(value) -> None:
    with pytest.raises(ImgcompError, match=r"number in \[0, 1\)"):
        check_ratio("decoder", value)
    codec = imgcomp.create_codec("bmshj2018-factorized", pretrained=False, N=8, M=8)
    for method, prune in PRUNERS.items():
        model = _model(0, arch="bmshj2018-factorized")
        with pytest.raises(ImgcompError, match=r"number in \[0, 1\)"):
            prune(model, {"decoder": value})
        with pytest.raises(ImgcompError, match=r"number in \[0, 1\)"):
            imgcomp.prune(codec, decoder=value, method=method)


@pytest.mark.parametrize("value", GOOD_RATIOS, ids=repr)
def test_both_methods_accept_the_same_ratios(value) -> None:
    assert check_ratio("decoder", value) == float(value)
    assert type(check_ratio("decoder", value)) is float
    for prune in PRUNERS.values():
        report = prune(_model(0, arch="bmshj2018-factorized"), {"decoder": value})
        assert report.ratios == {"decoder": float(value)}


def test_pruned_codec_round_trips_and_is_its_own_model() -> None:
    codec = imgcomp.create_codec("mbt2018-mean", pretrained=False, N=16, M=24)
    original = _snapshot(codec.model)
    model = copy_model(codec)
    ratios = {"encoder": 0.3, "decoder": 0.3, "entropy": 0.3}
    report = prune_unstructured(model, ratios)
    pruned = derive(codec, model, "prune:encoder=0.3,decoder=0.3,entropy=0.3,scope=layer")
    assert report.total_sparsity == pytest.approx(0.3, abs=1e-3)
    assert pruned.ops == ("prune:encoder=0.3,decoder=0.3,entropy=0.3,scope=layer",)

    img = np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    data = pruned.encode(img)
    assert np.array_equal(pruned.decode(data), pruned.reconstruct(img))
    assert not np.array_equal(pruned.reconstruct(img), codec.reconstruct(img))
    for key, value in codec.model.state_dict().items():
        assert _bits(value) == _bits(original[key]), key
    with pytest.raises(CodecMismatchError):
        codec.decode(data)
    with pytest.raises(CodecMismatchError):
        pruned.decode(codec.encode(img))
