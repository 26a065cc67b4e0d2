"""The fast float32 inference path (imgcomp.nn.fast): same function as the modules, exact
self-consistency of the codecs, and plans that never run stale or hooked modules."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import imgcomp
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.nn.fast import SUBPIXEL_MAX_OUT, PlanCache, build_plan
from imgcomp.nn.gdn import GDN, gdn_channels_last_
from imgcomp.nn.subpixel import subpixel_geometry, subpixel_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def _gdn(c: int, inverse: bool, seed: int = 0) -> GDN:
    g = GDN(c, inverse=inverse)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        g.gamma.add_(0.2 * torch.rand(c, c, generator=gen))
        g.beta.add_(0.3 * torch.rand(c, generator=gen))
    return g.eval()


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= rel * max(1.0, b.abs().max().item()), err


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("block", [1, 7, 2048])
def test_blocked_gdn_is_the_module(inverse: bool, block: int) -> None:
    g = _gdn(12, inverse)
    x = torch.randn(2, 12, 9, 11)
    with torch.no_grad():
        want = g(x)
        gamma_t = g.effective_gamma().t().contiguous()
        got = gdn_channels_last_(
            x.contiguous(memory_format=torch.channels_last),
            gamma_t,
            g.effective_beta(),
            inverse,
            block,
        )
    _close(got, want, 1e-6)  # on this CPU bit for bit, blocks of one pixel aside (a GEMV)


def test_blocked_gdn_refuses_nchw() -> None:
    g = _gdn(4, False)
    with pytest.raises(ValueError, match="channels_last"):
        gdn_channels_last_(torch.rand(1, 4, 3, 5), g.effective_gamma(), g.effective_beta(), False)


@pytest.mark.parametrize(
    ("k", "s", "cin", "cout"), [(5, 2, 6, 3), (3, 2, 4, 5), (4, 2, 3, 2), (5, 4, 2, 3)]
)
def test_subpixel_form_is_the_transposed_convolution(k: int, s: int, cin: int, cout: int) -> None:
    pad = (k - s + 1) // 2
    deconv = nn.ConvTranspose2d(cin, cout, k, s, pad, output_padding=s + 2 * pad - k)
    g = subpixel_geometry(deconv)
    assert g is not None
    w, b = subpixel_weights(deconv, g)
    x = torch.randn(1, cin, 7, 5)
    with torch.no_grad():
        got = torch.pixel_shuffle(torch.conv2d(x, w, b, padding=g.reach), s)
        _close(got, deconv(x))
    # each transposed tap appears exactly once among the sub-pixel weights
    nonzero = torch.sort(w[w != 0])[0]
    assert torch.equal(nonzero, torch.sort(deconv.weight.detach().reshape(-1))[0])


def test_subpixel_has_no_form_for_other_geometries() -> None:
    assert subpixel_geometry(nn.ConvTranspose2d(2, 2, 5, 2, 2)) is None  # output 2H - 1
    assert subpixel_geometry(nn.ConvTranspose2d(2, 2, 5, 2, 2, 1, groups=2)) is None


def _transform() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.ConvTranspose2d(8, 16, 5, 2, 2, 1),
        _gdn(16, True),
        nn.ConvTranspose2d(16, 3, 5, 2, 2, 1),  # < SUBPIXEL_MAX_OUT: sub-pixel
        nn.LeakyReLU(),
        nn.Conv2d(3, 8, 5, 2, 2),
        _gdn(8, False),
        nn.ReLU(),
    ).eval()


def test_plan_computes_the_modules_function() -> None:
    seq = _transform()
    assert seq[2].out_channels < SUBPIXEL_MAX_OUT <= seq[0].out_channels
    x = torch.randn(1, 8, 6, 10)
    plan = build_plan(seq, contiguous_out=True)
    assert plan is not None
    with torch.inference_mode():
        got = plan(x)
        _close(got, seq(x))
    assert got.is_contiguous()
    assert torch.equal(x, x.clone())  # the input is never overwritten (in-place steps)


def test_plan_leaves_its_input_alone_when_the_first_step_is_in_place() -> None:
    seq = nn.Sequential(_gdn(4, False), nn.ReLU()).eval()
    x = torch.randn(1, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.inference_mode():
        out = PlanCache().run(seq, x)
    assert torch.equal(x, before)
    _close(out, seq(x))


def test_unknown_layers_and_dtypes_have_no_plan() -> None:
    assert build_plan(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Sigmoid())) is None
    assert build_plan(nn.Sequential(nn.Conv2d(3, 3, 3).to(torch.bfloat16))) is None

    class Odd(nn.Conv2d):  # a subclass may compute something else
        pass

    assert build_plan(nn.Sequential(Odd(3, 3, 3))) is None


def test_cache_rebuilds_after_weights_change_and_runs_modules_when_it_must() -> None:
    seq, cache = _transform(), PlanCache()
    x = torch.randn(1, 8, 4, 4)
    with torch.inference_mode():
        first = cache.run(seq, x)
    with torch.no_grad():
        seq[0].weight.mul_(2.0)  # in place: the version counter moves
    with torch.inference_mode():
        _close(cache.run(seq, x), seq(x))
        assert not torch.allclose(cache.run(seq, x), first)
    seq[4] = nn.Conv2d(3, 8, 3, 1, 1)  # a replaced layer
    with torch.inference_mode():
        _close(cache.run(seq, x), seq(x))
    seen = []
    handle = seq[0].register_forward_hook(lambda *args: seen.append(1))
    with torch.inference_mode():
        cache.run(seq, x)
    handle.remove()
    assert seen == [1]  # calibration hooks see the modules run
    seq.train()
    assert cache.run(seq, x).requires_grad  # training: the modules, with autograd
    assert copy.deepcopy(cache)._plans == {}


@pytest.mark.parametrize("name", ["factorized-prior", "scale-hyperprior", "mean-scale-hyperprior"])
def test_codecs_stay_exactly_self_consistent(name: str) -> None:
    codec = imgcomp.create_codec(name, pretrained=False, N=16, M=24, seed=3)
    img = np.random.default_rng(1).integers(0, 256, (70, 45, 3), dtype=np.uint8)
    data = codec.encode(img)
    assert np.array_equal(codec.decode(data), codec.reconstruct(img))
    # the module path: the same model up to float rounding
    slow = LearnedCodec(copy.deepcopy(codec.model), codec.name, codec.params)
    slow.model.fast_inference = False
    diff = np.abs(slow.reconstruct(img).astype(int) - codec.reconstruct(img))
    assert np.mean(diff > 1) < 0.01


def test_hyper_synthesis_sees_one_layout_on_both_sides() -> None:
    """The encoder's z_hat and the decoder's may differ in layout; the scales must not."""
    model = imgcomp.create_codec("mean-scale-hyperprior", pretrained=False, N=16, M=24).model
    z = torch.round(torch.randn(1, 16, 3, 5) * 3)
    with torch.inference_mode():
        a = model.entropy_parameters(z)
        b = model.entropy_parameters(z.contiguous(memory_format=torch.channels_last))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_shipped_model_runs_its_transforms_through_plans() -> None:
    model = imgcomp.create_codec("mbt2018-mean", quality=3).model
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        y = model.analysis(x)
        assert y.is_contiguous()
        x_hat = model.synthesis(torch.round(y))
    assert model._plans.plan(model.g_a, True) is not None
    assert model._plans.plan(model.g_s) is not None
    with torch.inference_mode():
        _close(x_hat, model.g_s(torch.round(y)), 1e-4)
