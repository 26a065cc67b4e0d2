"""Structured pruning of HiFiC by its declared channel groups (hific.structured)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp import StructuredPrune
from imgcomp.families.hific.model import HYPER_TRANSFORMS, HiFiC
from imgcomp.families.hific.structured import hific_channel_groups
from imgcomp.nn.channel_norm import ChannelNorm2D

COMPONENTS = ("encoder", "generator", "probability")
_IMG = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
_CODEC = imgcomp.create_codec(
    "hific", pretrained=False, channels=16, blocks=2, hyper_channels=16, width=0.125
)
_PROFILE = imgcomp.profile(_CODEC)
_PRUNED: dict[tuple[str, ...], object] = {}


def _pruned(comps: tuple[str, ...]):
    if comps not in _PRUNED:
        _PRUNED[comps] = imgcomp.prune(_CODEC, StructuredPrune(dict.fromkeys(comps, 0.3)))
    return _PRUNED[comps]


def _widths(model: HiFiC) -> dict[str, tuple[int, int]]:
    return {
        name: (m.in_channels, m.out_channels)
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    }


def _component(name: str) -> str:
    return {"Encoder": "encoder", "Generator": "generator", "Hyperprior": "probability"}[
        name.split(".")[0]
    ]


@pytest.mark.parametrize(
    "comps", [("encoder",), ("generator",), ("probability",), COMPONENTS], ids="+".join
)
def test_pruning_shrinks_only_the_selected_components(comps: tuple[str, ...], tmp_path) -> None:
    pruned = _pruned(comps)
    after = imgcomp.profile(pruned)
    for comp in COMPONENTS:
        if comp in comps:
            assert after[comp].parameters < _PROFILE[comp].parameters, comp
            assert after[comp].macs < _PROFILE[comp].macs, comp
        else:
            assert after[comp].parameters == _PROFILE[comp].parameters, comp
            assert after[comp].macs == _PROFILE[comp].macs, comp
    before_w, after_w = _widths(_CODEC.model), _widths(pruned.model)
    for name, width in before_w.items():
        if _component(name) not in comps:
            assert after_w[name] == width, name
    # the latent C couples all three components
    c = pruned.model.latent_channels
    assert c == (11 if comps == COMPONENTS else 16)
    assert pruned.model.Encoder.conv_block_out[1].out_channels == c
    # the config rebuilds the model, the streams round-trip, the codec saves and loads
    again = HiFiC(**pruned.model.config)
    again.load_state_dict(pruned.model.state_dict(), strict=True)
    data = pruned.encode(_IMG)
    rec = pruned.reconstruct(_IMG)
    assert np.array_equal(pruned.decode(data), rec)
    back = imgcomp.load_codec(imgcomp.save_codec(pruned, tmp_path / "p.safetensors"))
    assert back.fingerprint == pruned.fingerprint
    assert np.array_equal(back.decode(data), rec)
    assert pruned.fingerprint != _CODEC.fingerprint


def test_the_residual_group_removes_the_same_channels_everywhere() -> None:
    gen0, gen = _CODEC.model.Generator, _pruned(("generator",)).model.Generator
    report = _pruned(("generator",)).op_report
    (res,) = [g for g in report.groups if g.root == "Generator.residual"]
    assert res.channels_before == 120 and res.channels_after == 84
    keep = torch.tensor([u for u in range(120) if u not in res.removed])
    w0 = gen0.conv_block_init[2].weight
    assert torch.equal(gen.conv_block_init[2].weight, w0[keep])
    assert torch.equal(gen.conv_block_init[3].gamma, gen0.conv_block_init[3].gamma[:, keep])
    for m in range(2):
        b0, b = getattr(gen0, f"resblock_{m}"), getattr(gen, f"resblock_{m}")
        (hid,) = [g for g in report.groups if g.root == f"Generator.resblock_{m}"]
        hkeep = torch.tensor([u for u in range(120) if u not in hid.removed])
        assert torch.equal(b.conv1.weight, b0.conv1.weight[hkeep][:, keep])
        assert torch.equal(b.conv2.weight, b0.conv2.weight[keep][:, hkeep])
        assert torch.equal(b.conv2.bias, b0.conv2.bias[keep])
        assert torch.equal(b.norm2.beta, b0.norm2.beta[:, keep])
        assert b.norm1.gamma.shape == (1, 84, 1, 1) and b.norm1.channels == 84
    # the global skip (head) and the first upsampling read the same stream channels
    assert gen.upconv_block1[0].in_channels == 84
    assert set(res.removed).isdisjoint(keep.tolist())
    up0 = gen0.upconv_block1[0].weight
    (up,) = [g for g in report.groups if g.root == "Generator.upconv_block1"]
    ukeep = torch.tensor([u for u in range(up.channels_before) if u not in up.removed])
    assert torch.equal(gen.upconv_block1[0].weight, up0[keep][:, ukeep])


def test_channel_norms_follow_their_channels() -> None:
    model = _pruned(COMPONENTS).model
    for name, m in model.named_modules():
        if isinstance(m, ChannelNorm2D):
            assert m.gamma.shape == m.beta.shape == (1, m.channels, 1, 1), name
    assert model.Generator.conv_block_init[0].channels == model.latent_channels
    assert model.Encoder.conv_block1[2].gamma.shape[1] == model.Encoder.conv_block1[1].out_channels
    # upsampling norms: the transposed conv's outputs (weight dim 1)
    for i in range(1, 5):
        block = getattr(model.Generator, f"upconv_block{i}")
        assert block[1].gamma.shape[1] == block[0].weight.shape[1] == block[0].out_channels


def test_probability_pruning_narrows_the_hyperprior_and_its_density() -> None:
    model = _pruned(("probability",)).model
    hp = model.Hyperprior
    n = model.hyperlatent_filters
    assert n == 11 == hp.hyperlatent_likelihood.channels == hp.analysis_net.conv3.out_channels
    for t in HYPER_TRANSFORMS:
        assert model.hyper_widths[t] == (11, 11)
    for t in ("synthesis_mu", "synthesis_std"):
        assert getattr(hp, t).conv1.in_channels == n
        assert getattr(hp, t).conv3.out_channels == 16  # C stays: encoder / generator unselected
    for k in range(hp.hyperlatent_likelihood.n_layers):
        assert getattr(hp.hyperlatent_likelihood, f"H_{k}").shape[0] == n


def test_groups_declare_every_parameter_they_touch_once() -> None:
    model = _CODEC.model
    groups = hific_channel_groups(model)
    names = [g.name for g in groups]
    assert len(names) == len(set(names))
    params = dict(model.named_parameters())
    for g in groups:
        for sl in g.slices:
            assert len(sl.indices(range(g.units))) == params[sl.param].shape[sl.dim], sl
    (latent,) = [g for g in groups if g.name == "latent"]
    assert set(latent.components) == set(COMPONENTS)
    assert {g.components for g in groups if g.name != "latent"} == {(c,) for c in COMPONENTS}


def test_the_latent_group_reaches_the_discriminator() -> None:
    torch.manual_seed(0)
    model = HiFiC(8, 1, 8, (4, 4, 4, 4, 4), discriminator=True)
    from imgcomp.ops.structured import prune_declared

    prune_declared(model, dict.fromkeys(COMPONENTS, 0.5))
    assert model.Discriminator.context_conv.in_channels == model.latent_channels == 4
    again = HiFiC(**model.config)
    again.load_state_dict(model.state_dict(), strict=True)


def test_recovery_fine_tunes_on_the_warm_up_loss() -> None:
    pruned = imgcomp.prune(_CODEC, StructuredPrune({"generator": 0.5}))
    recovered = imgcomp.prune(_CODEC, StructuredPrune({"generator": 0.5}, recover_steps=3))
    a, b = pruned.model.state_dict(), recovered.model.state_dict()
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # it trained
    assert not recovered.model.has_discriminator  # the warm-up stage: no discriminator needed
    img = np.random.default_rng(2).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    assert np.array_equal(recovered.decode(recovered.encode(img)), recovered.reconstruct(img))
