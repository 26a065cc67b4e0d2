"""The RNN codec's training objective (residual L1, optionally plus an SSIM term) and warm starts
from RNN exports, whose code model is a buffer sized by the file."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from imgcomp.errors import CheckpointError
from imgcomp.families.rnn.objective import ResidualL1
from imgcomp.train.config import TrainConfig
from imgcomp.train.loop import warm_start
from imgcomp.train.perceptual import ssim_index


def _batch() -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    outs = [(torch.rand(2, 3, 32, 32, generator=g) - 0.5) * 0.4 for _ in range(3)]
    return x, {"outs": outs}


def test_residual_l1_is_the_originals_loss_by_default() -> None:
    x, out = _batch()
    loss, parts = ResidualL1(iterations=3).loss(x, out)
    res, want = x - 0.5, 0.0
    for o in out["outs"]:
        res = res - o
        want += res.abs().mean().item() / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert set(parts) == {"l1", "mse"} and parts["l1"].item() == pytest.approx(res.abs().mean())


def test_ssim_weight_adds_each_iterations_ssim_term() -> None:
    x, out = _batch()
    base, _ = ResidualL1(iterations=3).loss(x, out)
    loss, parts = ResidualL1(iterations=3, ssim_weight=0.5).loss(x, out)
    rec, terms = 0.5 + torch.zeros_like(x), []
    for o in out["outs"]:
        rec = rec + o
        terms.append(1.0 - ssim_index(rec, x).mean().item())
    assert loss.item() == pytest.approx(base.item() + 0.5 * sum(terms) / 3, rel=1e-5)
    assert parts["ssim"].item() == pytest.approx(1.0 - terms[-1], rel=1e-5)
    assert not parts["ssim"].requires_grad


@pytest.mark.parametrize("bad", [-0.1, math.inf, math.nan, True, "0.2"])
def test_bad_ssim_weights_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="ssim_weight"):
        ResidualL1(ssim_weight=bad)


def test_warm_start_loads_an_rnn_export_with_its_code_model(tmp_path) -> None:
    torch.manual_seed(1)
    source = TrainConfig(family="rnn", model={"width": 0.125}).build_model()
    source.code_model = torch.arange(2 * 3 * 4, dtype=torch.int32).reshape(2, 3, 4)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    torch.manual_seed(2)
    model = TrainConfig(family="rnn", model={"width": 0.125}).build_model()
    assert model.code_model.numel() == 0  # a fresh model has none
    warm_start(model, path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    wider = TrainConfig(family="rnn", model={"width": 0.25}).build_model()
    with pytest.raises(CheckpointError, match="do not fit"):
        warm_start(wider, path)
