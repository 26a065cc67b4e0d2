"""HiFiC training: the SSIM term, the hific-gan objective's stages and rate target, the
discriminator's own optimiser (resumed exactly), and export without the discriminator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp.cli import main
from imgcomp.families.hific.model import HiFiC
from imgcomp.families.hific.objective import HiFiCGAN
from imgcomp.images import save_png
from imgcomp.metrics import ssim
from imgcomp.train import (
    LOG_NAME,
    TrainConfig,
    export_weights,
    load_weights,
    read_checkpoint,
    read_metadata,
    train,
)
from imgcomp.train.objectives import make_optimizers, scheduled, train_step
from imgcomp.train.perceptual import ssim_index

TINY_MODEL = {
    "width": 0.05,
    "channels": 8,
    "hyper_channels": 8,
    "blocks": 1,
    "discriminator_width": 0.0625,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("hific_train_data")
    save_png(np.ascontiguousarray(data.astronaut()[::2, ::2]), root / "astronaut.png")
    save_png(np.ascontiguousarray(data.coffee()[:200, :260]), root / "coffee.png")
    return root


def _config(data_dir: Path, out: Path, **kw) -> TrainConfig:
    args = kw.pop("objective_args", {})
    base = {
        "family": "hific",
        "model": TINY_MODEL,
        "objective_args": args,
        "steps": 4,
        "batch_size": 2,
        "patch_size": 128,
        "lr": 1e-3,
        "data": str(data_dir),
        "out": str(out),
        "progress": False,
        "log_every": 1,
    }
    return TrainConfig(**{**base, **kw})


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def _logs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / LOG_NAME).read_text().splitlines()]


# -- the SSIM term ---------------------------------------------------------------------------
@pytest.mark.parametrize("noise", [5, 40])
def test_ssim_index_is_the_reported_metric(noise: int) -> None:
    from skimage import data

    ref = np.ascontiguousarray(data.astronaut()[100:220, 150:310])
    rng = np.random.default_rng(noise)
    test = np.clip(ref.astype(int) + rng.integers(-noise, noise + 1, ref.shape), 0, 255)
    test = test.astype(np.uint8)
    got = ssim_index(_to_tensor(ref), _to_tensor(test))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(ssim(ref, test), abs=2e-6)


def test_ssim_index_is_differentiable_and_one_for_equal_images() -> None:
    x = torch.rand(2, 3, 32, 40, requires_grad=True)
    y = torch.rand(2, 3, 32, 40)
    assert torch.allclose(ssim_index(y, y), torch.ones(2), atol=1e-6)
    ssim_index(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sides"):
        ssim_index(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))


# -- the objective ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, match",
    [
        ({"lambda_A": 0.01, "lambda_B": 0.1}, "must exceed"),
        ({"perceptual": "lpips"}, "perceptual"),
        ({"gan_start": 1.5}, "gan_start"),
        ({"target_rate": -1}, "target_rate"),
        ({"beta": True}, "beta"),
    ],
)
def test_bad_objective_arguments_are_refused(args: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HiFiCGAN(**args)


def test_stages_follow_the_step() -> None:
    obj = HiFiCGAN(gan_start=0.5, schedule_fraction=0.1)
    assert [obj.at(s, 100).gan for s in (0, 49, 50, 99)] == [False, False, True, True]
    assert [obj.at(s, 100).early for s in (0, 9, 10)] == [True, True, False]
    assert obj.at(0, 100).adversary_loss is None
    assert obj.at(60, 100).adversary_loss is not None
    assert scheduled(obj, 60, 100) == obj.at(60, 100)


def test_rate_weight_switches_at_the_target_rate() -> None:
    torch.manual_seed(0)
    model = TrainConfig(family="hific", model=TINY_MODEL).build_model().train()
    x = torch.rand(2, 3, 128, 128)
    out = HiFiCGAN(gan_start=1.0).at(0, 1).forward(model, x)
    n_bpp = out["hyper"].n_bpp_total.item()

    def loss(target: float, early: bool = False) -> float:
        stage = HiFiCGAN(target_rate=target, lambda_A=1.0, lambda_B=0.25).at(0, 1)
        stage = type(stage)(stage.objective, gan=False, early=early)
        return stage.loss(x, out)[0].item()

    # below the target: lambda_B; above: lambda_A; the early schedule doubles both
    assert loss(0.0) - loss(1e6) == pytest.approx((1.0 - 0.25) * n_bpp, rel=1e-4)
    assert loss(0.0, early=True) - loss(0.0) == pytest.approx(n_bpp, rel=1e-4)


def test_gan_stage_trains_the_discriminator_on_its_own_loss() -> None:
    torch.manual_seed(0)
    model = TrainConfig(family="hific", model=TINY_MODEL).build_model().train()
    opts = make_optimizers(model, 1e-3, 1e-3)
    disc = {id(p) for p in model.Discriminator.parameters()}
    assert disc == {id(p) for p in opts.adversary_params}
    assert not disc & {id(p) for p in opts.main_params}
    x = torch.rand(2, 3, 128, 128)
    before = {k: v.clone() for k, v in model.Discriminator.state_dict().items()}
    warm = train_step(model, opts, x, HiFiCGAN(gan_start=1.0).at(0, 1), clip=1.0)
    assert "adversary" not in warm and warm["gen"] == 0
    after_warm = model.Discriminator.state_dict()
    assert torch.equal(before["conv1.weight_orig"], after_warm["conv1.weight_orig"])
    gan = train_step(model, opts, x, HiFiCGAN(gan_start=0.0).at(0, 1), clip=1.0)
    assert gan["adversary"] > 0 and gan["gen"] > 0
    assert not torch.equal(before["conv1.weight_orig"], model.Discriminator.conv1.weight_orig)


# -- training runs ----------------------------------------------------------------------------
def test_warm_up_then_gan_in_one_run(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    state = read_checkpoint(train(_config(data_dir, run, objective_args={"gan_start": 0.5})))
    logs = _logs(run)
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    assert ["adversary" in r for r in logs] == [False, False, True, True]
    assert [r["gen"] > 0 for r in logs] == [False, False, True, True]
    assert state["adversary_optimizer"]["state"]  # the discriminator's Adam has moments
    assert all(np.isfinite(r["loss"]) and -1 < r["ssim"] < 1 for r in logs)


def test_gan_run_resumes_bit_identically(data_dir: Path, tmp_path: Path) -> None:
    gan = {"objective_args": {"gan_start": 0.0}, "lr_milestones": []}  # a schedule of steps
    straight = read_checkpoint(train(_config(data_dir, tmp_path / "straight", **gan)))
    run = tmp_path / "resumed"
    assert read_checkpoint(train(_config(data_dir, run, steps=2, **gan)))["step"] == 2
    resumed = read_checkpoint(train(_config(data_dir, run, **gan)))
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [r["loss"] for r in _logs(run)] == [r["loss"] for r in _logs(tmp_path / "straight")]
    for a, b in zip(
        straight["adversary_optimizer"]["state"].values(),
        resumed["adversary_optimizer"]["state"].values(),
        strict=True,
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"])


def test_export_drops_the_discriminator_and_codes_images(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_config(data_dir, run, steps=2, objective_args={"gan_start": 0.5}))
    assert any(k.startswith("Discriminator.") for k in read_checkpoint(run)["model"])
    path = export_weights(run, tmp_path / "hific.safetensors", half=True)
    meta = read_metadata(path)
    assert meta["family"] == "hific" and meta["objective"] == "hific-gan"
    assert json.loads(meta["config"])["model"]["discriminator"] is False
    model = load_weights(path)
    assert isinstance(model, HiFiC) and not model.has_discriminator
    assert not any(k.startswith("Discriminator.") for k in model.state_dict())
    codec = imgcomp.create_codec("hific", checkpoint=path)
    img = np.asarray(np.random.default_rng(0).integers(0, 256, (96, 120, 3)), dtype=np.uint8)
    data = codec.encode(img)
    assert np.array_equal(codec.decode(data), codec.reconstruct(img))


def test_cli_trains_hific(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "cli"
    argv = ["train", "--family", "hific", "--steps", "2", "--batch-size", "1"]
    argv += ["--patch-size", "128", "--data", str(data_dir), "--out", str(run), "--quiet"]
    for key, value in TINY_MODEL.items():
        argv += ["--model", f"{key}={value}"]
    argv += ["--objective-arg", "target_rate=0.2", "--clip-max-norm", "0.5"]
    assert main(argv) == 0
    config = read_checkpoint(run)["config"]
    assert config.objective == "hific-gan" and config.objective_args["target_rate"] == 0.2
    assert config.clip_max_norm == 0.5 and config.model["latent_channels"] == 8
    assert main([*argv[:-4], "--out", str(tmp_path / "bad"), "--model", "depth=3"]) != 0
    assert not (tmp_path / "bad").exists()


def test_bad_model_arguments_are_refused() -> None:
    for bad, match in (
        ({"depth": 3}, "unknown hific model arguments"),
        ({"width": 0.5, "filters": [1, 2, 3, 4, 5]}, "not both"),
        ({"channels": 8, "latent_channels": 8}, "not both"),
        ({"discriminator": "yes"}, "true or false"),
        ({"width": -1}, "positive"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainConfig(family="hific", model=bad)


def test_recovery_uses_the_objective_the_weights_were_trained_with(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imgcomp.ops.structured as structured

    run = tmp_path / "run"
    train(_config(data_dir, run, steps=1, objective_args={"target_rate": 0.2, "k_P": 3.0}))
    path = export_weights(run, tmp_path / "hific.safetensors")
    seen = {}
    real = structured.recover

    def spy(model, steps, lmbda, data, **kw):
        seen.update(kw["objective_args"])
        return real(model, steps, lmbda, str(data_dir), **kw)

    monkeypatch.setattr(structured, "recover", spy)
    codec = imgcomp.create_codec("hific", checkpoint=path)
    config = imgcomp.StructuredPrune({"generator": 0.5}, recover_steps=2)
    pruned = imgcomp.prune(codec, config)
    assert seen["target_rate"] == 0.2 and seen["k_P"] == 3.0
    img = np.asarray(np.random.default_rng(1).integers(0, 256, (80, 80, 3)), dtype=np.uint8)
    assert np.array_equal(pruned.decode(pruned.encode(img)), pruned.reconstruct(img))


def test_warm_start_continues_from_exported_weights(data_dir: Path, tmp_path: Path) -> None:
    from imgcomp.errors import CheckpointError
    from imgcomp.train.loop import warm_start

    train(_config(data_dir, tmp_path / "first", steps=2, objective_args={"gan_start": 0.0}))
    path = export_weights(tmp_path / "first", tmp_path / "w.safetensors")  # no discriminator
    exported = load_weights(path).state_dict()
    torch.manual_seed(0)
    model = TrainConfig(family="hific", model=TINY_MODEL).build_model()
    fresh_disc = {k: v.clone() for k, v in model.Discriminator.state_dict().items()}
    warm_start(model, path)
    for key, value in exported.items():
        assert torch.equal(model.state_dict()[key], value), key
    for key, value in model.Discriminator.state_dict().items():
        assert torch.equal(value, fresh_disc[key]), key  # the discriminator starts fresh
    run = tmp_path / "second"
    state = read_checkpoint(train(_config(data_dir, run, steps=1, warm_start=str(path))))
    assert state["config"].warm_start == str(path) and state["step"] == 1
    other = TrainConfig(family="hific", model={**TINY_MODEL, "channels": 12}).build_model()
    with pytest.raises(CheckpointError, match="do not fit"):
        warm_start(other, path)
    with pytest.raises(CheckpointError):
        warm_start(model, data_dir / "astronaut.png")
