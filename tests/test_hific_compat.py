"""Original HiFiC checkpoints (Justin-Tan/high-fidelity-generative-compression): layout, refusals,
seed-0 references.

The references (shared/compat/hific) were computed by the original code from synthetic weights on
a 128x128 crop of kodim23; see shared/compat/hific/README.md. Each stage is fed the stored
upstream tensor. Floats are compared with ``atol = 1e-4 * max(1, absmax)``, rounded tensors
exactly.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from imgcomp.errors import CheckpointError, ImageError
from imgcomp.families.hific.model import (
    Discriminator,
    HiFiC,
    estimate_bpp,
    pad_to_multiple,
)
from imgcomp.families.hific.original import load_original

pytestmark = pytest.mark.usefixtures("one_thread")

_cache: dict[str, object] = {}
_small: dict[str, object] = {}


def _adam_state(n_params: int) -> dict:
    """An Adam ``state_dict()`` before its first step (what a short run's checkpoint holds)."""
    group = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    return {
        "state": {},
        "param_groups": [{**group, "amsgrad": False, "params": list(range(n_params))}],
    }


def _checkpoint(model_sd: dict, args: dict, disc_sd: dict | None = None) -> dict:
    """The dict ``utils.save_model`` writes, keys in its order."""
    ckpt = {
        "model_state_dict": model_sd,
        "compression_optimizer_state_dict": _adam_state(136),
        "hyperprior_optimizer_state_dict": _adam_state(12),
        "epoch": 3,
        "steps": 51234,
        "args": args,
    }
    if disc_sd is not None:
        ckpt["discriminator_state_dict"] = disc_sd
        ckpt["discriminator_optimizer_state_dict"] = _adam_state(len(disc_sd))
    return ckpt


@pytest.fixture
def hific_case(compat_dir, make_state, tmp_path_factory) -> dict:
    """Seed-0 weights saved as an original train.py checkpoint, the references, the model."""
    if not _cache:
        d = compat_dir / "hific"
        manifest = make_state.load_manifest(d / "hific.manifest.json")
        states = make_state.make_state(manifest, 0)
        args = dict(manifest["args_example"])
        path = tmp_path_factory.mktemp("hific_ckpt") / "run_epoch3_idx51234_2020_09_01_12:00.pt"
        torch.save(
            _checkpoint(states["model_state_dict"], args, states["discriminator_state_dict"]),
            path,
        )
        _cache.update(
            states=states,
            args=args,
            ref=torch.load(d / "hific_seed0.pt", map_location="cpu", weights_only=True),
            sha=json.loads((d / "hific_seed0.state_sha256.json").read_text()),
            ms=make_state,
            file=path,
            model=load_original(path),
        )
    return _cache


@pytest.fixture
def small_state(hific_case) -> dict:
    """A compression_gan state dict of C=8 with one residual block, and matching args.

    Every tensor is a zero-stride view of one element: the right shape and dtype, a few bytes
    on disk, so the refusal files stay small.
    """
    if not _small:
        with torch.device("meta"):
            shapes = HiFiC(latent_channels=8, n_residual_blocks=1).state_dict()
        sd = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in shapes.items()}
        args = {**hific_case["args"], "latent_channels": 8, "n_residual_blocks": 1}
        _small.update(sd=sd, args=args)
    return _small


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, what
    atol = 1e-4 * max(1.0, want.abs().max().item())
    err = (got.float() - want.float()).abs().max().item()
    assert err <= atol, f"{what}: max error {err:.3g} > {atol:.3g}"


def _exact(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape and torch.equal(got, want), what


def test_generated_weights_match_published_digests(hific_case):
    for name, sd in hific_case["states"].items():
        digest, _ = hific_case["ms"].state_sha256(sd)
        assert digest == hific_case["sha"][name]["sha256"], name


def test_the_checkpoint_loads_strictly_in_the_original_layout(hific_case):
    model, states = hific_case["model"], hific_case["states"]
    assert isinstance(model, HiFiC) and not model.training
    assert model.config == HiFiC().config
    ours = model.state_dict()
    sd = states["model_state_dict"]
    assert list(ours) == list(sd)
    assert all(torch.equal(ours[k], v) for k, v in sd.items())
    # the discriminator's own state dict (the checkpoint stores it twice) loads strictly too
    disc = Discriminator()
    disc.load_state_dict(states["discriminator_state_dict"], strict=True)
    assert list(disc.state_dict()) == list(states["discriminator_state_dict"])
    with torch.no_grad():
        y = hific_case["ref"]["y_hat"]
        x = hific_case["ref"]["input/image"]
        out, logits = disc.eval()(x, y)
        out2, logits2 = model.Discriminator(x, y)
    assert out.shape == (64, 1) and torch.equal(logits, logits2) and torch.equal(out, out2)


def test_each_stage_matches_the_reference(hific_case):
    ref, model = hific_case["ref"], hific_case["model"]
    with torch.no_grad():
        _close(model.analysis(ref["input/image"]), ref["y"], "y = Encoder(x)")
        _close(model.hyper_analysis(ref["y"]), ref["z"], "z = h_a(y)")
        _exact(model.quantize_hyperlatents(ref["z"]), ref["z_hat"], "z_hat = floor(z + 0.5)")
        mu, sigma = model.hyper_synthesis(ref["z_hat"])
        _close(mu, ref["mu"], "mu")
        _close(sigma, ref["sigma"], "sigma (bounded at 0.11)")
        _close(model.Hyperprior.synthesis_std(ref["z_hat"]), ref["sigma_raw"], "sigma_raw")
        _exact(model.quantize_latents(ref["y"], ref["mu"]), ref["y_hat"], "y_hat")
        _exact(torch.round(ref["y"]), ref["y_round"], "y_round")
        _close(model.synthesis(ref["y_hat"]), ref["x_hat"], "x_hat = G(y_hat)")
        _close(model.synthesis(ref["y_round"]), ref["x_hat_from_round_y"], "G(round(y))")
        _close(torch.clamp(ref["x_hat"], 0, 1), ref["x_hat_clamped"], "clamped x_hat")
        lik = model.likelihoods(ref["y"], ref["z_hat"], ref["mu"], ref["sigma"])
        _close(lik["y"], ref["y_likelihood"], "y likelihood")
        _close(lik["z"], ref["z_likelihood"], "z likelihood")
        bound = torch.tensor(1e-9)
        assert bool((lik["y"] >= bound).all()) and bool((lik["z"] >= bound).all())
        bpp_y = estimate_bpp(ref["y_likelihood"], (128, 128))
        bpp_z = estimate_bpp(ref["z_likelihood"], (128, 128))
        _close(bpp_y, ref["q_bpp_latent"], "latent bpp")
        _close(bpp_z, ref["q_bpp_hyperlatent"], "hyperlatent bpp")
        _close(bpp_y + bpp_z, ref["q_bpp_total"], "total bpp")


def test_the_chained_forward_matches_the_reference(hific_case):
    ref, model = hific_case["ref"], hific_case["model"]
    with torch.no_grad():
        out = model(ref["input/image"])
        recon = model.reconstruct(ref["input/image"])
    assert out.padded_shape == (128, 128) and out.n_bpp_total is None
    _close(out.y, ref["y"], "y")
    _close(out.z, ref["z"], "z")
    # chained rounding: exact here (the meta records margins of >= 2.8e-5 to a boundary)
    _exact(out.z_hat, ref["z_hat"], "z_hat")
    _close(out.mu, ref["mu"], "mu")
    _close(out.sigma, ref["sigma"], "sigma")
    _close(out.y_hat, ref["y_hat"], "y_hat")
    _exact(torch.floor(out.y - out.mu + 0.5), torch.floor(ref["y"] - ref["mu"] + 0.5), "symbols")
    _close(out.x_hat, ref["x_hat"], "x_hat")
    _close(recon, ref["x_hat_clamped"], "reconstruction")
    _close(out.z_likelihood, ref["z_likelihood"], "z likelihood")
    _close(out.y_likelihood, ref["y_likelihood"], "y likelihood")
    for key in ("q_bpp_total", "q_bpp_latent", "q_bpp_hyperlatent"):
        _close(getattr(out, key), ref[key], key)


def test_odd_sizes_are_reflect_padded_and_cropped_back(hific_case):
    model, image = hific_case["model"], hific_case["ref"]["input/image"]
    x = image[:, :, :72, :88]
    with torch.no_grad():
        out = model(x)
        xp = pad_to_multiple(x, 16)
        y = pad_to_multiple(model.Encoder(xp), 4)
    assert xp.shape[-2:] == (80, 96) and out.padded_shape == (80, 96)
    assert torch.equal(xp[..., :72, :88], x)
    assert torch.equal(xp[..., 72:, :88], torch.flip(x[..., 63:71, :], dims=[2]))  # reflect
    assert out.y.shape == (1, 220, 8, 8) and out.z.shape == (1, 320, 2, 2)
    assert torch.equal(out.y, y) and out.x_hat.shape == x.shape
    # bits are per pixel of the padded image, as compression_forward's spatial_shape
    bits = -torch.log2(out.y_likelihood + 1e-9).sum() - torch.log2(out.z_likelihood + 1e-9).sum()
    assert abs(float(out.q_bpp_total) * 80 * 96 - float(bits)) <= 1e-3 * float(bits)
    with pytest.raises(ImageError, match="multiples of 16"):
        model.analysis(x)
    # the hyper encoder's reflect padding needs latents of 5+ (the original fails there too)
    with torch.no_grad(), pytest.raises(ImageError, match="longer than 64"):
        model(image[:, :, :64, :128])


def test_config_rebuilds_and_components_cover_the_inference_modules():
    model = HiFiC(
        latent_channels=8,
        n_residual_blocks=2,
        hyperlatent_filters=16,
        filters=(4, 8, 8, 16, 16),
        discriminator=False,
    )
    again = HiFiC(**model.config)
    assert list(again.state_dict()) == list(model.state_dict())
    assert not any(k.startswith("Discriminator.") for k in model.state_dict())
    comps = model.components
    assert set(comps) == {"encoder", "generator", "probability"}
    covered = {id(p) for mods in comps.values() for m in mods for p in m.parameters()}
    assert covered == {id(p) for p in model.parameters()}
    with torch.no_grad():
        out = model.eval()(torch.rand(2, 3, 80, 100))
    assert out.x_hat.shape == (2, 3, 80, 100) and out.y_hat.shape == (2, 8, 8, 8)
    model.train()
    out = model(torch.rand(1, 3, 128, 128))
    assert out.n_bpp_total is not None and out.q_bpp_total.requires_grad


# -- refusals ---------------------------------------------------------------------------------
def _save(tmp_path: Path, ckpt: object, name: str = "bad_epoch0_idx0.pt") -> Path:
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"use_latent_mixture_model": True}, "use_latent_mixture_model"),
        ({"likelihood_type": "logistic"}, "likelihood_type='logistic'"),
        ({"use_channel_norm": False}, "use_channel_norm=False"),
        ({"sample_noise": True}, "sample_noise=True"),
        ({"normalize_input_image": True}, "normalize_input_image=True"),
        ({"model_type": "compression_vae"}, "model_type='compression_vae'"),
        ({"image_dims": [1, 256, 256]}, "image_dims"),
        ({"latent_channels": 0}, "latent_channels"),
        ({"n_residual_blocks": 2.5}, "n_residual_blocks"),
    ],
)
def test_unimplemented_options_are_refused(hific_case, tmp_path, override, match):
    args = {**hific_case["args"], **override}
    tiny = {"Encoder.conv_block1.1.weight": torch.zeros(1)}
    path = _save(tmp_path, _checkpoint(tiny, args))
    with pytest.raises(CheckpointError, match=match) as info:
        load_original(path)
    assert "bad_epoch0_idx0.pt" in str(info.value)


def test_foreign_files_and_missing_parts_are_refused(hific_case, tmp_path):
    args = hific_case["args"]
    tiny = {"Encoder.conv_block1.1.weight": torch.zeros(1)}
    cases = [
        ([1, 2, 3], "not an original HiFiC checkpoint"),
        ({"state_dict": tiny}, "not an original HiFiC checkpoint"),
        ({"model_state_dict": tiny}, "has no 'args'"),
        ({"model_state_dict": tiny, "args": [1]}, "'args' is list"),
        ({"model_state_dict": tiny, "args": {"model_type": "compression"}}, "lacks"),
        ({"model_state_dict": [torch.zeros(1)], "args": args}, "not a state dict"),
        ({"model_state_dict": {"a": 1.0}, "args": args}, "not a state dict"),
    ]
    for ckpt, match in cases:
        with pytest.raises(CheckpointError, match=match):
            load_original(_save(tmp_path, ckpt))
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage"):
        load_original(path)


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_code_carrying_files_are_refused(hific_case, tmp_path):
    path = _save(tmp_path, {"model_state_dict": {}, "args": _Payload()})
    with pytest.raises(CheckpointError, match="refused"):
        load_original(path)
    with open(path, "wb") as f:
        pickle.dump({"model_state_dict": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError):
        load_original(path)


def test_wrong_keys_shapes_and_values_are_refused(small_state, tmp_path):
    sd, args = small_state["sd"], small_state["args"]
    good = load_original(_save(tmp_path, _checkpoint(sd, args)))
    assert good.config["latent_channels"] == 8 and good.has_discriminator

    def refused(state: dict, match: str, **arg_overrides) -> None:
        path = _save(tmp_path, _checkpoint(state, {**args, **arg_overrides}))
        with pytest.raises(CheckpointError, match=match) as info:
            load_original(path)
        assert "bad_epoch0_idx0.pt" in str(info.value)

    bad = dict(sd)
    del bad["Generator.resblock_0.norm2.beta"]
    refused(bad, r"missing keys \['Generator\.resblock_0\.norm2\.beta'\]")
    refused({**sd, "Generator.resblock_1.conv1.weight": torch.zeros(3)}, r"unexpected.*resblock_1")
    # args that disagree with the weights: a block too many, another latent width
    refused(sd, r"missing keys \['Generator\.resblock_1\.", n_residual_blocks=2)
    refused(
        sd,
        r"conv_block_out\.1\.weight is .*\[8, 960, 3, 3\].*\[16, 960, 3, 3\]",
        latent_channels=16,
    )
    refused(
        {**sd, "Hyperprior.hyperlatent_likelihood.H_3": torch.zeros(320, 3, 1)},
        r"H_3 is torch.float32 \[320, 3, 1\].*\[320, 1, 3\]",
    )
    refused({**sd, "Encoder.conv_block1.1.bias": torch.zeros(60, dtype=torch.int64)}, "int64")
    nan = sd["Generator.conv_block_out.1.bias"].clone()
    nan[0] = float("nan")
    refused({**sd, "Generator.conv_block_out.1.bias": nan}, "NaN")
    # a "compression" model has no discriminator: its keys are unexpected
    refused(sd, r"unexpected keys \['Discriminator\.", model_type="compression")


def test_discriminator_free_and_evaluation_mode_layouts_load(small_state, tmp_path):
    sd, args = small_state["sd"], small_state["args"]
    inference = {k: v for k, v in sd.items() if not k.startswith("Discriminator.")}
    for model_type in ("compression", "compression_gan"):
        path = _save(tmp_path, _checkpoint(inference, {**args, "model_type": model_type}))
        model = load_original(path)
        assert not model.has_discriminator and list(model.state_dict()) == list(inference)
    # an evaluation-mode model's entropy-coding keys are derived: dropped, never read
    derived = {
        "Hyperprior.hyperprior_entropy_model.distribution.H_0": torch.zeros(320, 3, 1),
        "Hyperprior.hyperprior_entropy_model.CDF": torch.zeros(320, 40, dtype=torch.int32),
        "Hyperprior.prior_entropy_model.CDF": torch.zeros(64, 1481, dtype=torch.int32),
        "Hyperprior.prior_entropy_model.scale_table_tensor": torch.zeros(64),
    }
    model = load_original(_save(tmp_path, _checkpoint({**inference, **derived}, args)))
    assert list(model.state_dict()) == list(inference)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in inference.items())
