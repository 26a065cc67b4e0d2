"""Shapes, training/eval behaviour and likelihood models of the three Ballé / Minnen codecs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from imgcomp.entropy import GaussianCoder
from imgcomp.errors import ImageError, UnknownCodecError
from imgcomp.families.balle.model import (
    ARCHITECTURES,
    FactorizedPrior,
    MeanScaleHyperprior,
    ScaleHyperprior,
    build_model,
)
from imgcomp.nn import FactorizedDensity, GaussianConditional, scale_table

ARCHS = sorted(ARCHITECTURES)
SIZES = [(8, 12), (16, 8)]


def _image(size: int = 64, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g)


def _model(arch: str, n: int = 8, m: int = 12, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, n, m)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("n", "m"), SIZES)
def test_shapes_and_training_forward(arch, n, m):
    model = _model(arch, n, m).train()
    x = _image(64)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    lik = out["likelihoods"]
    assert lik["y"].shape == (2, m, 4, 4)
    if arch == "bmshj2018-factorized":
        assert set(lik) == {"y"}
        assert model.downsampling_factor == 16
    else:
        assert set(lik) == {"y", "z"}
        assert lik["z"].shape == (2, n, 1, 1)
        assert model.downsampling_factor == 64
    for v in lik.values():
        assert torch.all(v > 0) and torch.all(v <= 1)
    # a rate-distortion loss reaches every main parameter
    bits = sum(torch.log2(v).sum() for v in lik.values())
    loss = -bits + ((out["x_hat"] - x) ** 2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        if not name.endswith("quantiles"):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.config == {"arch": arch, "N": n, "M": m}


def test_layer_shapes_follow_the_published_architectures():
    fp = FactorizedPrior(128, 192)
    assert [tuple(fp.g_a[i].weight.shape) for i in (0, 2, 4, 6)] == [
        (128, 3, 5, 5),
        (128, 128, 5, 5),
        (128, 128, 5, 5),
        (192, 128, 5, 5),
    ]
    assert tuple(fp.g_s[0].weight.shape) == (192, 128, 5, 5)  # ConvTranspose: [in, out, k, k]
    assert tuple(fp.g_s[6].weight.shape) == (128, 3, 5, 5)
    sh = ScaleHyperprior(128, 192)
    assert tuple(sh.h_a[0].weight.shape) == (128, 192, 3, 3)
    assert tuple(sh.h_s[4].weight.shape) == (192, 128, 3, 3)
    assert isinstance(sh.h_s[5], torch.nn.ReLU)
    ms = MeanScaleHyperprior(128, 192)
    assert tuple(ms.h_s[0].weight.shape) == (128, 192, 5, 5)
    assert tuple(ms.h_s[2].weight.shape) == (192, 288, 5, 5)
    assert tuple(ms.h_s[4].weight.shape) == (384, 288, 3, 3)
    assert isinstance(ms.h_a[1], torch.nn.LeakyReLU) and len(ms.h_s) == 5


@pytest.mark.parametrize("arch", ARCHS)
def test_components_cover_every_parameter_once(arch):
    model = _model(arch)
    comps = model.components
    assert set(comps) == {"encoder", "decoder", "entropy"}
    assert comps["encoder"] == [model.g_a] and comps["decoder"] == [model.g_s]
    seen: list[int] = []
    for modules in comps.values():
        for mod in modules:
            seen.extend(id(p) for p in mod.parameters())
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}
    # aux / main split is a partition too
    aux = {id(p) for p in model.aux_parameters()}
    main = {id(p) for p in model.main_parameters()}
    assert aux and not aux & main and aux | main == set(seen)


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_quantisation_identities(arch):
    model = _model(arch).eval()
    x = _image(64)
    with torch.no_grad():
        lat = model.quantize_latents(x)
        fwd = model(x)
    y, y_hat = lat["y"], lat["y_hat"]
    assert lat["y_symbols"].dtype == torch.int32
    assert torch.all((y_hat - y).abs() <= 0.5 + 1e-6)
    if arch == "bmshj2018-factorized":
        med = model.y_prior.medians.detach()[None, :, None, None]
        assert torch.equal(y_hat, torch.round(y - med) + med)
        assert torch.equal(model.y_prior.dequantize(lat["y_symbols"]), y_hat)
        with torch.no_grad():
            assert torch.equal(model.decode_symbols(lat["y_symbols"]), fwd["x_hat"])
        return
    med = model.z_prior.medians.detach()[None, :, None, None]
    assert torch.equal(lat["z_hat"], torch.round(lat["z"] - med) + med)
    with torch.no_grad():
        dec = model.hyper_decode(lat["z_symbols"])
    assert torch.equal(dec["z_hat"], lat["z_hat"])
    assert torch.equal(dec["scales"], lat["scales"])
    assert torch.equal(dec["indexes"], lat["indexes"])
    means = dec.get("means")
    if arch == "mbt2018-mean":
        assert torch.equal(means, lat["means"])
        assert torch.equal(y_hat, torch.round(y - means) + means)
    else:
        assert means is None and "means" not in lat
        assert torch.equal(y_hat, torch.round(y))
    assert torch.equal(model.y_conditional.dequantize(lat["y_symbols"], means), y_hat)
    with torch.no_grad():
        assert torch.equal(model.decode_symbols(lat["y_symbols"], means), fwd["x_hat"])
    assert torch.equal(fwd["likelihoods"]["y"], lat["y_likelihoods"])


def test_training_mode_adds_noise_not_rounding():
    model = _model("bmshj2018-factorized").train()
    y = torch.randn(4, 12, 8, 8) * 3
    y_noisy, _ = model.y_prior(y)
    d = y_noisy - y
    assert torch.all(d.abs() <= 0.5) and d.std() > 0.2
    med = model.y_prior.medians.detach()[None, :, None, None]
    frac = (y_noisy - med) - torch.round(y_noisy - med)
    assert frac.abs().max() > 0.1  # not on the quantisation grid


def test_aux_loss_fits_quantiles():
    model = _model("bmshj2018-hyperprior")
    opt = torch.optim.Adam(model.aux_parameters(), lr=1.0)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = model.aux_loss()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert losses[-1] < 0.95 * losses[0]
    # the fitted range widens: initial quantiles (-10, 0, 10) sit far inside the 1e-9 tails
    q = model.z_prior.quantiles.detach()[:, 0, :]
    assert torch.all(q[:, 0] < -10) and torch.all(q[:, 2] > 10)
    # only the quantiles move; the density itself gets no gradient from the aux loss
    for k, v in model.state_dict().items():
        if k.endswith("quantiles"):
            assert not torch.equal(v, before[k])
        else:
            assert torch.equal(v, before[k]), k
    assert model.z_prior.matrices[0].grad is None


def test_build_model_and_input_checks():
    assert isinstance(build_model("mbt2018-mean", 8, 12), MeanScaleHyperprior)
    m = build_model(**_model("bmshj2018-hyperprior").config)
    assert isinstance(m, ScaleHyperprior) and (m.N, m.M) == (8, 12)
    with pytest.raises(UnknownCodecError):
        build_model("cheng2020-anchor")
    with pytest.raises(ImageError):
        m.quantize_latents(torch.zeros(1, 3, 48, 64))  # 48 is not a multiple of 64
    with pytest.raises(ImageError):
        m(torch.zeros(1, 1, 64, 64))


# -- FactorizedDensity ---------------------------------------------------------------------------


def _random_density(channels: int = 4, seed: int = 0) -> FactorizedDensity:
    torch.manual_seed(seed)
    d = FactorizedDensity(channels)
    with torch.no_grad():
        for p in (*d.matrices, *d.biases, *d.factors):
            p.add_(torch.randn_like(p) * 0.3)
        d.quantiles[:, 0, 1] = torch.randn(channels) * 0.5
        d.quantiles[:, 0, 0] = d.quantiles[:, 0, 1] - torch.tensor([3.2, 5.0, 0.4, 7.9])
        d.quantiles[:, 0, 2] = d.quantiles[:, 0, 1] + torch.tensor([4.1, 2.0, 6.0, 0.0])
    return d


def test_factorized_density_is_a_cdf():
    d = _random_density()
    x = torch.linspace(-500, 500, 4001).repeat(4, 1, 1)
    cdf = torch.sigmoid(d.logits_cdf(x))
    assert torch.all(cdf[..., 1:] >= cdf[..., :-1])  # monotone
    assert torch.all(cdf[..., 0] < 1e-3) and torch.all(cdf[..., -1] > 1 - 1e-3)
    # likelihood of unit intervals = CDF differences, with the lower bound
    v = torch.randn(3, 4, 5) * 4
    lik = d.likelihood(v)
    cn = v.permute(1, 0, 2).reshape(4, 1, -1).double()
    want = torch.sigmoid(d.logits_cdf(cn + 0.5)) - torch.sigmoid(d.logits_cdf(cn - 0.5))
    want = want.reshape(4, 3, 5).permute(1, 0, 2).float()
    torch.testing.assert_close(lik, want.clamp(min=1e-9), rtol=1e-4, atol=1e-7)


def test_factorized_likelihood_keeps_precision_in_the_upper_tail():
    d = _random_density()
    v = torch.full((1, 4, 1), 1.0)
    # move each channel's value far into its upper tail, where sigmoid(u) - sigmoid(l) in
    # float32 would cancel to 0
    for shift in (15.0, 25.0):
        far = v * shift
        lik32 = d.likelihood(far)
        cn = far.permute(1, 0, 2).reshape(4, 1, -1).double()
        up = d.logits_cdf(cn + 0.5)
        lo = d.logits_cdf(cn - 0.5)
        exact = (torch.sigmoid(-lo) - torch.sigmoid(-up)).reshape(1, 4, 1).float()
        ok = exact > 1e-7
        assert ok.any()
        torch.testing.assert_close(lik32[ok], exact[ok], rtol=1e-3, atol=0)


def test_pmf_table_support_and_normalisation():
    d = _random_density()
    t = d.pmf_table()
    q = d.quantiles.detach()[:, 0, :]
    assert t.lo.tolist() == (-torch.ceil(q[:, 1] - q[:, 0]).long().clamp(min=0)).tolist()
    assert t.hi.tolist() == torch.ceil(q[:, 2] - q[:, 1]).long().clamp(min=0).tolist()
    assert t.hi[3] == 0  # upper quantile at the median: support stops at symbol 0
    assert t.pmf.dtype == np.float64 and t.pmf.shape == (4, int(t.length.max()))
    np.testing.assert_allclose(t.pmf.sum(1) + t.tail_mass, 1.0, rtol=0, atol=1e-12)
    for c in range(4):
        assert np.all(t.pmf[c, t.length[c] :] == 0)
        assert np.all(t.pmf[c, : t.length[c]] > 0)
    # each entry is the likelihood of median + symbol
    c = 0
    syms = torch.arange(int(t.lo[c]), int(t.hi[c]) + 1, dtype=torch.int32)
    vals = torch.zeros(1, 4, syms.numel(), dtype=torch.int32)
    vals[0, c] = syms
    lik = d.likelihood(d.dequantize(vals))[0, c].detach().double().numpy()
    np.testing.assert_allclose(t.pmf[c, : t.length[c]], lik, rtol=1e-4)


def test_pmf_table_refuses_unusable_quantiles():
    d = _random_density()
    with torch.no_grad():
        d.quantiles[1, 0, 2] = 1e6
    with pytest.raises(ValueError, match="spans"):
        d.pmf_table()
    with torch.no_grad():
        d.quantiles[1, 0, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        d.pmf_table()


def test_density_symbols_roundtrip():
    d = _random_density()
    v = torch.randn(2, 4, 3, 3) * 5
    s = d.symbols(v)
    assert s.dtype == torch.int32
    assert torch.equal(d.dequantize(s), d.quantize(v, noise=False))


# -- GaussianConditional -------------------------------------------------------------------------


def test_gaussian_likelihood_matches_normal_cdf():
    gc = GaussianConditional()
    v = torch.tensor([0.0, 1.0, -2.0, 3.3, 40.0, 0.2])
    scales = torch.tensor([1.0, 0.5, 2.0, 0.01, 1.0, 5.0])
    means = torch.tensor([0.0, 0.3, -1.0, 3.0, 0.0, 0.0])

    def phi(x):
        return 0.5 * math.erfc(-x / math.sqrt(2))

    want = []
    for vi, si, mi in zip(v.tolist(), scales.tolist(), means.tolist(), strict=True):
        s = max(si, 0.11)
        a = abs(vi - mi)
        want.append(max(phi((0.5 - a) / s) - phi((-0.5 - a) / s), 1e-9))
    got = gc.likelihood(v, scales, means)
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-5, atol=1e-9)
    assert got[4].item() == pytest.approx(1e-9)  # bounded from below


def test_scale_table_and_indexes():
    table = scale_table()
    assert table.dtype == torch.float32 and table.numel() == 64
    assert table[0].item() == pytest.approx(0.11) and table[-1].item() == pytest.approx(256)
    assert torch.allclose(torch.log(table).diff(), torch.full((63,), math.log(256 / 0.11) / 63))
    gc = GaussianConditional()
    above5 = torch.nextafter(table[5], table[6])
    s = torch.stack([table[0] / 2, table[0], table[5], above5, table[63], torch.tensor(1e6)])
    assert gc.build_indexes(s).tolist() == [0, 0, 5, 6, 63, 63]
    assert gc.build_indexes(s).dtype == torch.int32
    # brute-force definition: first level >= max(scale, float32(0.11)), clamped
    bound = torch.tensor(0.11).item()
    r = torch.exp(torch.rand(500) * 8 - 4).tolist()
    levels = table.tolist()
    brute = [min([i for i, t in enumerate(levels) if t >= max(x, bound)] + [63]) for x in r]
    r = torch.tensor(r)
    assert gc.build_indexes(r).tolist() == brute


def test_gaussian_quantisation_and_symbols():
    gc = GaussianConditional().eval()
    v = torch.randn(2, 3, 4, 4) * 5
    means = torch.randn(2, 3, 4, 4)
    v_hat, _ = gc(v, torch.ones_like(v), means)
    assert torch.equal(v_hat, torch.round(v - means) + means)
    s = gc.symbols(v, means)
    assert torch.equal(gc.dequantize(s, means), v_hat)
    assert torch.equal(gc.dequantize(gc.symbols(v)), torch.round(v))
    gc.train()
    v_noisy, _ = gc(v, torch.ones_like(v), means)
    assert torch.all((v_noisy - v).abs() <= 0.5) and not torch.equal(v_noisy, v_hat)


def test_scale_table_of_another_size_loads():
    model = _model("bmshj2018-hyperprior")
    sd = model.state_dict()
    sd["y_conditional.scale_table"] = scale_table(0.2, 50.0, 10)
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.y_conditional.scale_table, scale_table(0.2, 50.0, 10))
    assert model.y_conditional.build_indexes(torch.tensor([1e3])).tolist() == [9]
    assert GaussianCoder(model.y_conditional.scale_table.double().numpy()).radii.shape == (10,)
    sd["y_conditional.scale_table"] = torch.tensor([1.0, 0.5, 2.0])
    with pytest.raises(ValueError):
        model.load_state_dict(sd)
