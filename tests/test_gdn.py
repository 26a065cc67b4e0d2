"""GDN / IGDN numerics, the non-negative reparametrisation and the LowerBound gradient rule."""

from __future__ import annotations

import math

import pytest
import torch

from imgcomp.nn.gdn import BETA_MIN, GDN, PEDESTAL, NonNegative, lower_bound

BETA_BOUND = math.sqrt(BETA_MIN + PEDESTAL)
GAMMA_BOUND = 2.0**-18


def _direct(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool):
    """GDN from the published formula, float64, with the reparametrisation written out."""
    x, beta, gamma = x.double(), beta.double(), gamma.double()
    b = torch.clamp(beta, min=BETA_BOUND) ** 2 - PEDESTAL
    g = torch.clamp(gamma, min=GAMMA_BOUND) ** 2 - PEDESTAL
    norm = b[None, :, None, None] + torch.einsum("ij,bjhw->bihw", g, x * x)
    return x * torch.sqrt(norm) if inverse else x / torch.sqrt(norm)


@pytest.mark.parametrize("inverse", [False, True])
def test_matches_direct_formula_with_clipped_parameters(inverse):
    torch.manual_seed(0)
    c = 6
    gdn = GDN(c, inverse=inverse)
    with torch.no_grad():
        gdn.beta.copy_(torch.tensor([1.2, 0.5, 0.0, -0.3, 2.0, 1e-4]))  # two below the bound
        gdn.gamma.copy_(torch.randn(c, c) * 0.4)  # about half negative -> effective 0
    x = torch.randn(2, c, 5, 7) * 3
    got = gdn(x)
    want = _direct(x, gdn.beta.detach(), gdn.gamma.detach(), inverse)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_reparametrisation_lower_bounds():
    beta = NonNegative(minimum=BETA_MIN)
    gamma = NonNegative()
    stored = torch.tensor([-5.0, 0.0, 1e-9, 0.5])
    eff_b = beta(stored)
    eff_g = gamma(stored)
    # below the bound the effective value is the minimum (beta) or exactly zero (gamma)
    assert torch.allclose(eff_b[:3], torch.full((3,), BETA_MIN), rtol=1e-4)
    assert torch.equal(eff_g[:3], torch.zeros(3))
    assert math.isclose(eff_b[3].item(), 0.25 - PEDESTAL, rel_tol=1e-6)
    assert float(beta.bound) == pytest.approx(0.0010000072652474046, rel=1e-7)
    assert float(gamma.bound) == GAMMA_BOUND
    assert float(beta.pedestal) == PEDESTAL
    # stored_from_effective inverts the map
    v = torch.tensor([0.0, 0.1, 1.0, 7.5])
    assert torch.allclose(gamma(gamma.stored_from_effective(v)), v, atol=1e-7)


def test_training_initialisation():
    gdn = GDN(4)
    assert torch.allclose(gdn.effective_beta(), torch.ones(4))
    assert torch.allclose(gdn.effective_gamma(), 0.1 * torch.eye(4), atol=1e-7)
    assert torch.all(gdn.effective_gamma()[~torch.eye(4, dtype=torch.bool)] == 0)
    assert set(gdn.state_dict()) == {"beta", "gamma"}  # constants are not checkpointed
    assert GDN(3, inverse=True).inverse and not GDN(3).inverse


def test_lower_bound_gradient_rule():
    x = torch.tensor([-1.0, 0.5, 2.0, -1.0, 0.5, 2.0], requires_grad=True)
    weights = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])  # dL/dout = weights
    out = lower_bound(x, 1.0)
    assert torch.equal(out.detach(), torch.tensor([1.0, 1.0, 2.0, 1.0, 1.0, 2.0]))
    (out * weights).sum().backward()
    # below the bound a positive gradient (descent would lower x further) is blocked,
    # a negative one (descent raises x) passes; above the bound everything passes
    assert torch.equal(x.grad, torch.tensor([0.0, 0.0, 1.0, -1.0, -1.0, -1.0]))


def test_stuck_gdn_parameter_can_recover():
    gdn = GDN(2)
    with torch.no_grad():
        gdn.gamma.fill_(-1.0)  # effective gamma 0 everywhere
    x = torch.ones(1, 2, 1, 1)
    # loss rewards a larger normaliser -> gradient pushes gamma up, which must reach it
    loss = -(gdn(x) ** -2).sum()
    loss.backward()
    assert gdn.gamma.grad is not None and torch.all(gdn.gamma.grad < 0)


def test_gdn_then_igdn_is_near_identity():
    torch.manual_seed(1)
    c = 5
    gdn, igdn = GDN(c), GDN(c, inverse=True)
    x = torch.rand(3, c, 4, 4) - 0.5
    with torch.no_grad():
        # gamma effectively zero: exact inverse pair (x / sqrt(b), then * sqrt(b))
        for m in (gdn, igdn):
            m.gamma.fill_(-1.0)
            m.beta.copy_(torch.linspace(0.5, 2.0, c))
    torch.testing.assert_close(igdn(gdn(x)), x, rtol=1e-6, atol=1e-6)
    # default init (gamma = 0.1 I): inverse up to O(gamma^2 x^4)
    g2, ig2 = GDN(c), GDN(c, inverse=True)
    err = (ig2(g2(x)) - x).abs().max().item()
    assert err < 2e-4
    assert (g2(x) - x).abs().max().item() > 10 * err  # and GDN alone is not the identity


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError):
        GDN(4)(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError):
        GDN(0)
