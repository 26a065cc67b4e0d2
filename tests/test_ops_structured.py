"""Structured pruning: channels really removed, every coupled layer sliced consistently."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import imgcomp
from imgcomp.errors import CodecMismatchError, DatasetError, ImgcompError
from imgcomp.families.balle.model import BalleModel, FactorizedPrior, build_model
from imgcomp.families.balle.structured import channel_groups
from imgcomp.nn.density import FactorizedDensity
from imgcomp.nn.gdn import GDN
from imgcomp.ops.base import COMPONENTS, derive
from imgcomp.ops.structured import prune_structured, recover

ARCHS = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"]
CODECS = {
    "bmshj2018-factorized": "factorized-prior",
    "bmshj2018-hyperprior": "scale-hyperprior",
    "mbt2018-mean": "mean-scale-hyperprior",
}


def _randomized(arch: str, N: int, M: int, seed: int = 0) -> BalleModel:
    """A model whose GDN gammas are dense and whose densities differ per channel, so that a
    channel sliced from the wrong position (or gamma sliced on one axis only) changes outputs."""
    torch.manual_seed(seed)
    model = build_model(arch, N, M)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GDN):
                c = m.channels
                m.beta.copy_(m.beta_reparam.stored_from_effective(0.5 + torch.rand(c)))
                gamma = 0.05 * torch.rand(c, c) + 0.1 * torch.eye(c)
                m.gamma.copy_(m.gamma_reparam.stored_from_effective(gamma))
            elif isinstance(m, FactorizedDensity):
                m.quantiles[:, 0, 1].uniform_(-0.5, 0.5)
                for b in m.biases:
                    b.normal_()
    return model.eval()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish uint8 test image (noise alone would be all rate, no structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 7.0), np.cos(yy / 5.0), np.sin((xx + yy) / 9.0)], axis=-1)
    img = 127.5 + 90 * base + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _input(model: BalleModel, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _component_state(model: BalleModel, name: str) -> list[torch.Tensor]:
    return [t for module in model.components[name] for t in module.state_dict().values()]


def _out_channels(model: BalleModel, root: str) -> int:
    return dict(model.named_modules())[root].out_channels


# -- properties --------------------------------------------------------------------------------
ratio_maps = st.dictionaries(
    st.sampled_from(COMPONENTS), st.floats(0.0, 0.9, allow_nan=False), max_size=3
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(ARCHS),
    N=st.integers(8, 32),
    M=st.integers(8, 48),
    ratios=ratio_maps,
)
def test_pruned_model_runs_and_widths_follow_the_ratios(
    arch: str, N: int, M: int, ratios: dict[str, float]
) -> None:
    model = _randomized(arch, N, M)
    original = copy.deepcopy(model)
    x = _input(model)
    report = prune_structured(model, ratios)

    with torch.no_grad():
        out = model(x)
        lat = model.quantize_latents(x)
    assert out["x_hat"].shape == x.shape and out["x_hat"].dtype == torch.float32
    assert lat["y"].shape[1] == model.M
    if "z" in lat:
        assert lat["z"].shape[1] == model.N

    # every group keeps round((1 - r) * C) channels, at least 1, r = min over its components
    for group in channel_groups(original):
        before = _out_channels(original, group.root)
        if all(c in ratios for c in group.components):
            r = min(ratios[c] for c in group.components)
            expected = max(1, round((1 - r) * before))
        else:
            expected = before
        assert _out_channels(model, group.root) == expected, group
    # consumers agree with producers (the model ran, but check the widths the report gives too)
    for layer in report.layers:
        after = dict(model.named_modules())[layer.name]
        assert layer.out_after == getattr(after, "out_channels", getattr(after, "channels", None))
    assert model.g_a[-1].out_channels == model.M
    assert report.params_after == sum(p.numel() for p in model.parameters())
    assert report.params_after <= report.params_before

    # a component not selected (or at ratio 0) is untouched: no coupling applies to it
    for name in COMPONENTS:
        if ratios.get(name, 0.0) == 0.0:
            for a, b in zip(
                _component_state(original, name), _component_state(model, name), strict=True
            ):
                assert torch.equal(a, b), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(ARCHS),
    N=st.integers(8, 40),
    M=st.integers(8, 48),
    ratio=st.floats(0.05, 0.6, allow_nan=False),
    round_to=st.sampled_from([2, 4, 8, 16]),
)
def test_round_to_gives_multiples_and_at_least_the_ratio(
    arch: str, N: int, M: int, ratio: float, round_to: int
) -> None:
    model = _randomized(arch, N, M)
    original = copy.deepcopy(model)
    ratios = {c: ratio for c in COMPONENTS}
    report = prune_structured(model, ratios, round_to=round_to)
    with torch.no_grad():
        out = model(_input(model))
    assert out["x_hat"].shape == (1, 3, 64, 64)
    assert report.round_to == round_to
    for group in channel_groups(original):
        before = _out_channels(original, group.root)
        exact = max(1, round((1 - ratio) * before))
        after = _out_channels(model, group.root)
        if exact >= round_to:  # rounded down to a multiple: never less pruning than asked
            assert after % round_to == 0 and exact - round_to < after <= exact, group
        else:  # too narrow to round: the exact count stays
            assert after == exact, group


def test_round_to_names_the_op_and_rejects_nonsense() -> None:
    base = imgcomp.create_codec("mean-scale-hyperprior", pretrained=False, N=16, M=24)
    plain = imgcomp.prune(base, decoder=0.3, method="structured")
    rounded = imgcomp.prune(base, decoder=0.3, method="structured", round_to=8)
    assert [m.out_channels for m in rounded.model.g_s[:-1:2]] == [8, 8, 8]  # 11 -> 8
    assert [m.out_channels for m in plain.model.g_s[:-1:2]] == [11, 11, 11]
    assert rounded.ops[-1].endswith(":round8") and rounded.fingerprint != plain.fingerprint
    assert imgcomp.prune(base, decoder=0.3, method="structured", round_to=1).ops == plain.ops
    for bad in (0, -4, 2.5, True, "8"):
        with pytest.raises(ImgcompError, match="round_to"):
            imgcomp.prune(base, decoder=0.3, method="structured", round_to=bad)
    with pytest.raises(ImgcompError, match="round_to applies"):
        imgcomp.prune(base, decoder=0.3, round_to=8)


@pytest.mark.parametrize("arch", ARCHS)
def test_ratio_zero_is_the_identity(arch: str) -> None:
    model = _randomized(arch, 16, 24)
    original = copy.deepcopy(model)
    report = prune_structured(model, {c: 0.0 for c in COMPONENTS})
    assert report.groups == () and report.params_after == report.params_before
    assert model.config == original.config
    x = _input(model)
    with torch.no_grad():
        a, b = original(x), model(x)
    assert torch.equal(a["x_hat"], b["x_hat"])
    for key in a["likelihoods"]:
        assert torch.equal(a["likelihoods"][key], b["likelihoods"][key])
    sd_a, sd_b = original.state_dict(), model.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_concrete_widths_and_config() -> None:
    model = _randomized("mbt2018-mean", 16, 24)
    report = prune_structured(model, {"encoder": 0.3, "decoder": 0.5, "entropy": 0.4})
    # N=16: encoder keeps 11, decoder 8, entropy 10; M=24 at min(0.3, 0.5, 0.4): 17
    assert [model.g_a[i].out_channels for i in (0, 2, 4, 6)] == [11, 11, 11, 17]
    assert [model.g_s[i].out_channels for i in (0, 2, 4)] == [8, 8, 8]
    assert [model.g_s[i].channels for i in (1, 3, 5)] == [8, 8, 8]
    assert model.g_s[0].in_channels == 17 and model.h_a[0].in_channels == 17
    assert [model.h_a[i].out_channels for i in (0, 2, 4)] == [10, 10, 10]
    assert model.z_prior.channels == 10 and model.z_prior.quantiles.shape == (10, 1, 3)
    # h_s: 24 -> 14, 36 -> 22, and the last conv's [scales; means] = 2 * 17
    assert [model.h_s[i].out_channels for i in (0, 2, 4)] == [14, 22, 34]
    assert model.config == {"arch": "mbt2018-mean", "N": 10, "M": 17}
    assert report.config_after == model.config
    assert {g.root for g in report.groups} == {g.root for g in channel_groups(model)}
    gdn = model.g_a[1]
    assert gdn.beta.shape == (11,) and gdn.gamma.shape == (11, 11)
    record = json.loads(json.dumps(report.as_dict()))
    assert record["params_after"] == sum(p.numel() for p in model.parameters())
    widths = {w["name"]: (w["out_before"], w["out_after"]) for w in record["layers"]}
    assert widths["g_s.1"] == (16, 8) and widths["z_prior"] == (16, 10)
    assert "h_s.4" in report.summary()


# -- correctness: removing dead channels leaves every output unchanged ---------------------------
def _kill(model: BalleModel, seed: int, ratio: float) -> dict[str, list[int]]:
    """Zero the output filters (and biases) of ``round(ratio * C)`` random channels per group; for
    z and y also zero what reads them (their quantized value is not 0: it is the median or the
    predicted mean). Returns root -> dead channels."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    dead = {}
    with torch.no_grad():
        for group in channel_groups(model):
            root = modules[group.root]
            c = root.out_channels
            n_dead = c - max(1, round((1 - ratio) * c))
            dead[group.root] = sorted(torch.randperm(c, generator=g)[:n_dead].tolist())
            idx = torch.tensor(dead[group.root])
            if isinstance(root, torch.nn.ConvTranspose2d):
                root.weight[:, idx] = 0  # ConvTranspose2d weights are [Cin, Cout, k, k]
            else:
                root.weight[idx] = 0
            root.bias[idx] = 0
        model.g_s[0].weight[dead["g_a.6"]] = 0  # y's consumer in the decoder
        if not isinstance(model, FactorizedPrior):
            model.h_s[0].weight[dead["h_a.4"]] = 0  # z's consumer
    return dead


def _keep(c: int, dead: list[int]) -> list[int]:
    return [i for i in range(c) if i not in set(dead)]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "importance"),
    [(a, "l1") for a in ARCHS]
    + [
        ("mbt2018-mean", "l2"),
        ("mbt2018-mean", "activation"),
        ("bmshj2018-factorized", "activation"),
    ],
)
def test_pruning_dead_channels_changes_no_output(arch: str, importance: str) -> None:
    ref = _randomized(arch, 16, 24, seed=1)
    dead = _kill(ref, seed=2, ratio=0.25)
    model = copy.deepcopy(ref)
    calibration = torch.cat([_input(ref, seed=s) for s in range(2)])
    report = prune_structured(model, {c: 0.25 for c in COMPONENTS}, importance, calibration)
    # the dead channels are the ones removed (so importance reads ConvTranspose2d's dim 1, and
    # a dead channel contributes nothing to the layers reading it)
    assert {g.root: list(g.removed) for g in report.groups} == dead
    ky = _keep(ref.M, dead["g_a.6"])
    x = _input(ref)
    with torch.no_grad():
        y = ref.analysis(x)
        _close(model.analysis(x), y[:, ky])
        y_q = torch.round(y * 4)  # any latent: the decoder must ignore the dead channels
        _close(model.synthesis(y_q[:, ky]), ref.synthesis(y_q))
        if isinstance(ref, FactorizedPrior):
            dens_ref, dens, v = ref.y_prior, model.y_prior, y_q
            k = ky
        else:
            kz = _keep(ref.N, dead["h_a.4"])
            z = ref.hyper_analysis(y)
            _close(model.hyper_analysis(y[:, ky]), z[:, kz])
            z_q = ref.z_prior.quantize(z, noise=False)  # dead z channels sit at their median
            s_ref, m_ref = ref.hyper_synthesis(z_q)
            s, m = model.hyper_synthesis(z_q[:, kz])
            _close(s, s_ref[:, ky])
            if m_ref is not None:
                _close(m, m_ref[:, ky])
            dens_ref, dens, v, k = ref.z_prior, model.z_prior, z_q, kz
        # the density keeps each kept channel's own parameters
        _close(dens.medians, dens_ref.medians[k])
        _close(dens.likelihood(v[:, k]), dens_ref.likelihood(v)[:, k])
        # and end to end (eval: rounding), the reconstruction and the kept likelihoods agree
        a, b = ref(x), model(x)
    _close(b["x_hat"], a["x_hat"])
    _close(b["likelihoods"]["y"], a["likelihoods"]["y"][:, ky])


def test_activation_importance_ranks_by_what_the_readers_use() -> None:
    """A channel with the largest filter that no later layer reads: L1 keeps it, activation
    importance (input magnitude x reader weights) removes it."""
    model = _randomized("bmshj2018-factorized", 16, 24, seed=3)
    with torch.no_grad():
        model.g_s[2].weight[:, 5] *= 10  # g_s.2's output channel 5 (ConvTranspose2d: dim 1)
        model.g_s[4].weight[5] = 0  # ... which g_s.4 ignores (its input channel 5: dim 0)
    calibration = torch.cat([_input(model, seed=s) for s in range(2)])
    removed = {}
    for importance in ("l1", "activation"):
        report = prune_structured(copy.deepcopy(model), {"decoder": 0.5}, importance, calibration)
        removed[importance] = {g.root: g.removed for g in report.groups}["g_s.2"]
    assert 5 not in removed["l1"] and 5 in removed["activation"]


# -- codec level -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_pruned_codec_round_trip_and_original_untouched(arch: str) -> None:
    codec = imgcomp.create_codec(CODECS[arch], pretrained=False, N=16, M=24)
    state = {k: v.clone() for k, v in codec.model.state_dict().items()}
    fingerprint = codec.fingerprint
    pruned = imgcomp.prune(codec, 0.3, 0.3, 0.3, method="structured")
    report = pruned.op_report
    img = _image(70, 100)
    data = pruned.encode(img)
    assert np.array_equal(pruned.decode(data), pruned.reconstruct(img))
    assert pruned.model.M == 17 and report.params_after < report.params_before
    assert pruned.ops == ("prune=enc0.3,dec0.3,ent0.3:structured-l1",)
    assert pruned.fingerprint != fingerprint
    # the original codec is untouched and refuses the pruned model's streams
    assert codec.fingerprint == fingerprint and codec.ops == ()
    assert all(torch.equal(state[k], v) for k, v in codec.model.state_dict().items())
    assert codec.model.g_a[0].out_channels == 16
    assert np.array_equal(codec.decode(codec.encode(img)), codec.reconstruct(img))
    with pytest.raises(CodecMismatchError):
        codec.decode(data)


def test_structured_op_records_ratios_and_importance() -> None:
    codec = imgcomp.create_codec("mean-scale-hyperprior", pretrained=False, N=8, M=12)
    pruned = imgcomp.prune(codec, encoder=0.25, decoder=0.3, method="structured", importance="l2")
    assert pruned.ops == ("prune=enc0.25,dec0.3,ent0:structured-l2",)


# -- recovery ----------------------------------------------------------------------------------
def test_recover_fine_tunes_the_pruned_model(tmp_path) -> None:
    for i in range(2):
        Image.fromarray(_image(80, 96, seed=i)).save(tmp_path / f"img{i}.png")
    codec = imgcomp.create_codec("mean-scale-hyperprior", pretrained=False, N=8, M=12)
    pruned = imgcomp.prune(codec, 0.5, 0.5, 0.5, method="structured")
    model = pruned.model
    before = copy.deepcopy(model.state_dict())
    result = recover(
        model, steps=2, lmbda=0.01, data_dir=tmp_path, batch_size=2, patch_size=64,
        quantile_steps=3,
    )  # fmt: skip
    assert result.steps == 2 and np.isfinite([result.last_loss, result.aux_loss]).all()
    assert not model.training
    after = model.state_dict()
    assert not torch.equal(before["g_s.0.weight"], after["g_s.0.weight"])
    assert not torch.equal(before["z_prior.quantiles"], after["z_prior.quantiles"])
    assert model.g_a[0].out_channels == 4  # widths stay as pruned
    retuned = derive(codec, model, "recovered")
    img = _image(64, 64)
    assert np.array_equal(retuned.decode(retuned.encode(img)), retuned.reconstruct(img))


def test_recover_refuses_bad_arguments(tmp_path) -> None:
    model = build_model("mbt2018-mean", 8, 8)
    with pytest.raises(ImgcompError):
        recover(model, steps=0, lmbda=0.01, data_dir=tmp_path)
    with pytest.raises(ImgcompError):
        recover(model, steps=1, lmbda=0.01, data_dir=tmp_path, patch_size=96)
    with pytest.raises(DatasetError):
        recover(model, steps=1, lmbda=0.01, data_dir=tmp_path, patch_size=64)  # no images


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ratios",
    [{"decoderr": 0.3}, {"decoder": 1.0}, {"decoder": -0.1}, {"decoder": float("nan")},
     {"decoder": True}, {"decoder": "0.3"}, [("decoder", 0.3)]],
)  # fmt: skip
def test_bad_ratios_are_refused(ratios) -> None:
    model = build_model("bmshj2018-factorized", 8, 8)
    with pytest.raises(ImgcompError):
        prune_structured(model, ratios)


def test_bad_importance_and_non_models_are_refused() -> None:
    model = build_model("bmshj2018-factorized", 8, 8)
    with pytest.raises(ImgcompError):
        prune_structured(model, {"decoder": 0.3}, "taylor")
    with pytest.raises(ImgcompError, match="calibration"):
        prune_structured(model, {"decoder": 0.3}, "activation")
    for bad in (torch.rand(1, 3, 40, 64), torch.rand(3, 64, 64), torch.zeros(1, 3, 64, 64).int()):
        with pytest.raises(ImgcompError):
            prune_structured(model, {"decoder": 0.3}, "activation", bad)
    assert model.g_s[0].out_channels == 8  # nothing changed by the refused calls
    with pytest.raises(ImgcompError):
        prune_structured(torch.nn.Conv2d(3, 3, 1), {"decoder": 0.3})
    with pytest.raises(ImgcompError):
        imgcomp.prune(imgcomp.create_codec("jpeg", quality=50), decoder=0.3, method="structured")
