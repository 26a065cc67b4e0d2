"""Training: reproducibility, resume, logging, export round trip and refusal of bad checkpoints."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcomp.cli import main
from imgcomp.errors import CheckpointError, DatasetError, ImgcompError, UnknownCodecError
from imgcomp.families.balle.model import build_model
from imgcomp.families.balle.objective import rd_forward, rd_loss
from imgcomp.images import save_png
from imgcomp.train import (
    CHECKPOINT_NAME,
    LOG_NAME,
    PatchSampler,
    TrainConfig,
    export_weights,
    load_weights,
    read_checkpoint,
    read_metadata,
    train,
    write_checkpoint,
)
from imgcomp.train.config import train_families
from imgcomp.trainsets import list_image_files

TINY = {"batch_size": 2, "patch_size": 64, "progress": False}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small photos, one in a subfolder and one smaller than a patch (gets padded)."""
    from skimage import data

    root = tmp_path_factory.mktemp("train_data")
    (root / "sub").mkdir()
    save_png(np.ascontiguousarray(data.astronaut()[::4, ::4]), root / "astronaut.png")
    save_png(np.ascontiguousarray(data.coffee()[:96, :160]), root / "sub" / "coffee.png")
    save_png(np.ascontiguousarray(data.chelsea()[100:148, 100:180]), root / "small.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _config(data_dir: Path, out: Path, **kw) -> TrainConfig:
    """A tiny Ballé rd run; ``arch``, ``N``, ``M`` and ``lmbda`` go into the nested fields."""
    model = {"arch": kw.pop("arch", "mbt2018-mean"), "N": kw.pop("N", 8), "M": kw.pop("M", 12)}
    args = {"lmbda": kw.pop("lmbda")} if "lmbda" in kw else {}
    base = {"steps": 3, "data": str(data_dir), "out": str(out), **TINY}
    return TrainConfig(model=model, objective_args=args, **{**base, **kw})


def _model_state(ckpt: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(ckpt)["model"]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _assert_same_optimizer(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k, v in a["state"][i].items():
            assert torch.equal(v, b["state"][i][k]), (i, k)


# -- data --------------------------------------------------------------------------------------


def test_lists_images_recursively_and_refuses_kodak(data_dir: Path, tmp_path: Path) -> None:
    files = list_image_files(data_dir)
    assert [p.relative_to(data_dir).as_posix() for p in files] == [
        "astronaut.png",
        "small.png",
        "sub/coffee.png",
    ]
    save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "kodim07.png")
    with pytest.raises(DatasetError, match="Kodak"):
        list_image_files(tmp_path)
    with pytest.raises(DatasetError):
        list_image_files(tmp_path / "missing")


def test_sampler_crops_are_seeded_by_step_and_pad_small_images() -> None:
    a = np.arange(40 * 30 * 3, dtype=np.uint8).reshape(40, 30, 3)
    b = np.full((100, 90, 3), 7, np.uint8)
    s = PatchSampler([a, b], patch_size=64)
    assert s.images[0].shape == (3, 64, 64)  # reflect-padded, original in the middle
    assert torch.equal(s.images[0][:, 12:52, 17:47], torch.from_numpy(a).permute(2, 0, 1))
    x1, x2 = s.batch(0, 5, 4), s.batch(0, 5, 4)
    assert x1.shape == (4, 3, 64, 64) and x1.dtype == torch.float32
    assert torch.equal(x1, x2)
    assert float(x1.min()) >= 0.0 and float(x1.max()) <= 1.0
    params = [s.crop_params(0, k, 8) for k in range(6)]
    assert len({tuple(p) for p in params}) == 6  # every step draws new crops
    assert s.crop_params(1, 5, 8) != s.crop_params(0, 5, 8)
    flips = [f for p in params for (_, _, _, f) in p]
    assert any(flips) and not all(flips)
    # a crop is exactly the stored pixels, flipped when asked
    for (i, top, left, flip), crop in zip(s.crop_params(3, 2, 4), s.batch(3, 2, 4), strict=True):
        ref = s.images[i][:, top : top + 64, left : left + 64].float() / 255
        assert torch.equal(crop, ref.flip(2) if flip else ref)


# -- objective ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"])
def test_rd_forward_matches_model_forward(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 8, 12).train()
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    ref = model(x)
    torch.manual_seed(1)
    got = rd_forward(model, x, amp=False)
    assert torch.equal(got["x_hat"], ref["x_hat"])
    assert got["likelihoods"].keys() == ref["likelihoods"].keys()
    for k in ref["likelihoods"]:
        assert torch.equal(got["likelihoods"][k], ref["likelihoods"][k])


def test_rd_forward_amp_keeps_likelihoods_float32() -> None:
    torch.manual_seed(0)
    model = build_model("mbt2018-mean", 8, 12).train()
    out = rd_forward(model, torch.rand(1, 3, 64, 64), amp=True)  # CPU bf16 autocast
    assert out["x_hat"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())


def test_rd_loss_is_the_compressai_convention() -> None:
    x = torch.zeros(2, 3, 4, 8)
    x_hat = torch.full_like(x, 0.1)
    liks = {"y": torch.full((2, 5, 1, 1), 0.5), "z": torch.full((2, 3, 1, 1), 0.25)}
    loss, mse, bpp = rd_loss(x, x_hat, liks, lmbda=0.01)
    assert mse.item() == pytest.approx(0.01)
    assert bpp.item() == pytest.approx((2 * 5 * 1 + 2 * 3 * 2) / (2 * 4 * 8))
    assert loss.item() == pytest.approx(0.01 * 255**2 * 0.01 + bpp.item())


# -- training ----------------------------------------------------------------------------------


def test_two_runs_are_bit_identical(data_dir: Path, tmp_path: Path) -> None:
    a = train(_config(data_dir, tmp_path / "a"))
    b = train(_config(data_dir, tmp_path / "b"))
    sa, sb = read_checkpoint(a), read_checkpoint(b)
    _assert_same_state(sa["model"], sb["model"])
    _assert_same_optimizer(sa["optimizer"], sb["optimizer"])
    assert sa["step"] == 3 and sa["finished"]
    init = build_model("mbt2018-mean", 8, 12).state_dict()
    assert not torch.equal(init["g_a.0.weight"], sa["model"]["g_a.0.weight"])  # it trained
    c = train(_config(data_dir, tmp_path / "c", seed=1))
    assert not torch.equal(_model_state(c)["g_a.0.weight"], sa["model"]["g_a.0.weight"])


def test_resume_equals_uninterrupted(data_dir: Path, tmp_path: Path) -> None:
    straight = train(_config(data_dir, tmp_path / "straight", steps=4, log_every=1))
    run = tmp_path / "resumed"
    half = train(_config(data_dir, run, steps=2, log_every=1))
    assert read_checkpoint(half)["step"] == 2
    resumed = train(_config(data_dir, run, steps=4, log_every=1))
    s1, s2 = read_checkpoint(straight), read_checkpoint(resumed)
    assert s2["step"] == 4 and s2["config"].steps == 4
    _assert_same_state(s1["model"], s2["model"])
    _assert_same_optimizer(s1["optimizer"], s2["optimizer"])
    _assert_same_optimizer(s1["aux_optimizer"], s2["aux_optimizer"])
    logs = [json.loads(line) for line in (run / LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    ref = [json.loads(line) for line in (tmp_path / "straight" / LOG_NAME).read_text().splitlines()]
    assert [r["loss"] for r in logs] == [r["loss"] for r in ref]


def test_stop_at_stops_where_a_recipe_says_and_resumes_identically(
    data_dir: Path, tmp_path: Path
) -> None:
    # the lr milestone at half the run falls inside the second leg: the schedule follows steps
    kw = {"steps": 4, "log_every": 1, "lr_milestones": [0.5], "lr_gamma": 0.5}
    straight = train(_config(data_dir, tmp_path / "straight", **kw))
    run = tmp_path / "legs"
    first = train(_config(data_dir, run, stop_at=1, **kw))
    assert read_checkpoint(first)["step"] == 1
    assert read_checkpoint(train(_config(data_dir, run, stop_at=1, **kw)))["step"] == 1
    resumed = train(_config(data_dir, run, **kw))
    s1, s2 = read_checkpoint(straight), read_checkpoint(resumed)
    assert s2["step"] == 4
    _assert_same_state(s1["model"], s2["model"])
    _assert_same_optimizer(s1["optimizer"], s2["optimizer"])
    with pytest.raises(ValueError, match="stop_at"):
        _config(data_dir, tmp_path / "bad", stop_at=0, **kw)


def test_training_leaves_the_callers_rng_alone(data_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(_config(data_dir, tmp_path / "run", steps=1))
    assert torch.equal(torch.rand(3), expected)


def test_loss_decreases(data_dir: Path, tmp_path: Path) -> None:
    cfg = _config(
        data_dir, tmp_path / "run", arch="bmshj2018-factorized", steps=30, lr=1e-3, log_every=5
    )
    train(cfg)
    logs = [json.loads(line) for line in (tmp_path / "run" / LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in logs] == [5, 10, 15, 20, 25, 30]
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    assert logs[-1]["psnr"] > logs[0]["psnr"]


def test_log_lines(data_dir: Path, tmp_path: Path) -> None:
    cfg = _config(data_dir, tmp_path / "run", steps=5, log_every=2, lmbda=0.01)
    train(cfg)
    logs = [json.loads(line) for line in (tmp_path / "run" / LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in logs] == [2, 4, 5]  # and a last line at the final step
    keys = {"step", "loss", "mse", "bpp", "psnr", "aux", "lr", "elapsed"}
    keys |= {"steps_per_s", "images_per_s"}
    for r in logs:
        assert set(r) == keys
        assert r["loss"] == pytest.approx(0.01 * 255**2 * r["mse"] + r["bpp"], rel=1e-6)
        assert r["psnr"] == pytest.approx(-10 * np.log10(r["mse"]))
        assert r["bpp"] > 0 and r["aux"] > 0 and r["images_per_s"] > 0
    assert logs[0]["elapsed"] <= logs[1]["elapsed"] <= logs[2]["elapsed"]
    # lr drops by 10x for the last 10% of steps (step 5 of 5: the 0-based step 4 >= 5 - 0)
    assert [r["lr"] for r in logs] == [1e-4, 1e-4, 1e-4]
    assert cfg.lr_at(0) == 1e-4 and TrainConfig(steps=100).lr_at(89) == 1e-4
    assert TrainConfig(steps=100).lr_at(90) == pytest.approx(1e-5)


def test_compiled_training_matches_eager_and_keeps_the_checkpoint_layout(
    data_dir: Path, tmp_path: Path
) -> None:
    eager = _model_state(train(_config(data_dir, tmp_path / "eager", steps=2)))
    compiled = _model_state(train(_config(data_dir, tmp_path / "compiled", steps=2, compile=True)))
    assert compiled.keys() == eager.keys()  # in-place compile: no _orig_mod prefixes
    for k in eager:  # the same computation up to kernel fusion's rounding
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-3, atol=1e-4, msg=k)
    with pytest.raises(ValueError, match="declares no modules to compile"):
        TrainConfig(family="rnn", compile=True)


def test_every_declared_compile_module_is_a_module_of_the_family() -> None:
    """A misspelt name would be skipped (modules a build lacks are), so check them here."""
    declared = {n: f for n, f in train_families().items() if f.compile_modules}
    assert {"balle", "hific"} <= set(declared)
    for name, family in declared.items():
        model = family.build(family.normalize(family.example))
        present = dict(model.named_modules())
        missing = [m for m in family.compile_modules if m not in present]
        assert not missing, (name, missing)


def test_cosine_schedule_with_warmup_fits_the_step_budget() -> None:
    cfg = TrainConfig(steps=1000, lr=1e-4, lr_schedule="cosine", warmup_steps=100)
    assert cfg.lr_at(0) == pytest.approx(1e-6)  # warm-up: linear from lr / warmup_steps
    assert cfg.lr_at(49) == pytest.approx(5e-5)
    assert cfg.lr_at(99) == pytest.approx(1e-4) and cfg.lr_at(100) == pytest.approx(1e-4)
    mid = 100 + (999 - 100) // 2
    assert cfg.lr_at(mid) == pytest.approx(1e-5 + 9e-5 * 0.5, rel=1e-2)  # half-way down
    assert cfg.lr_at(999) == pytest.approx(1e-5)  # ends at a tenth of lr
    # for every family: HiFiC's and the RNN's recipes have no final drop (lr_drop_factor 1)
    for family in ("hific", "rnn"):
        other = TrainConfig(family=family, steps=1000, lr=1e-4, lr_schedule="cosine")
        assert other.lr_drop_factor == 1.0
        assert other.lr_at(999) == pytest.approx(1e-5) and other.lr_at(500) < 1e-4
    lrs = [cfg.lr_at(s) for s in range(100, 1000)]
    assert lrs == sorted(lrs, reverse=True)
    # a longer budget stretches the same curve
    longer = TrainConfig(steps=2000, lr=1e-4, lr_schedule="cosine", warmup_steps=100)
    assert longer.lr_at(999) > cfg.lr_at(999)
    # warm-up also applies to the step schedule
    step = TrainConfig(steps=1000, lr=1e-4, warmup_steps=10)
    assert step.lr_at(4) == pytest.approx(5e-5) and step.lr_at(500) == 1e-4
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)


def test_lr_drop_and_grad_clip_are_applied(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        calls.append((len(params), {id(p) for p in params}, max_norm))
        return clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    run = tmp_path / "run"
    state = read_checkpoint(train(_config(data_dir, run, steps=10, log_every=1, lr=2e-4)))
    lrs = [json.loads(line)["lr"] for line in (run / LOG_NAME).read_text().splitlines()]
    assert lrs == [2e-4] * 9 + [pytest.approx(2e-5)]  # x0.1 for the last 10% of steps
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-5)
    assert state["aux_optimizer"]["param_groups"][0]["lr"] == 1e-3
    model = build_model("mbt2018-mean", 8, 12)
    n_main = len(model.main_parameters())
    assert len(calls) == 10
    assert all(n == n_main and max_norm == 1.0 for n, _, max_norm in calls)


def test_amp_training_runs_on_cpu(data_dir: Path, tmp_path: Path) -> None:
    state = read_checkpoint(train(_config(data_dir, tmp_path / "run", steps=2, amp=True)))
    assert state["step"] == 2
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_sigterm_stops_with_a_checkpoint(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    import imgcomp.train.loop as loop

    step_fn = loop._train_step

    def step_then_signal(*args):
        out = step_fn(*args)
        if args[-1] == 1:  # during the second step
            signal.raise_signal(signal.SIGTERM)
        return out

    monkeypatch.setattr(loop, "_train_step", step_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    state = read_checkpoint(train(_config(data_dir, tmp_path / "run", steps=20)))
    assert state["step"] == 2 and not state["finished"]
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored


def test_max_seconds_stops_with_a_usable_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = train(_config(data_dir, run, steps=50, max_seconds=0.0))
    state = read_checkpoint(ckpt)
    assert state["step"] == 1 and not state["finished"]
    logs = [json.loads(line) for line in (run / LOG_NAME).read_text().splitlines()]
    assert logs[-1]["step"] == 1
    # the same command without a budget carries on from there
    state = read_checkpoint(train(_config(data_dir, run, steps=3)))
    assert state["step"] == 3 and state["finished"]


def test_resume_refuses_another_config(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_config(data_dir, run, steps=2))
    with pytest.raises(
        CheckpointError, match=r"objective_args\.lmbda: 0\.0067 -> 0\.02.*another --out"
    ):
        train(_config(data_dir, run, steps=4, lmbda=0.02))
    with pytest.raises(CheckpointError, match=r"model\.N: 8 -> 16"):
        train(_config(data_dir, run, steps=4, N=16))
    with pytest.raises(CheckpointError, match="below the checkpoint's step"):
        train(_config(data_dir, run, steps=1))
    other = tmp_path / "other_data"
    other.mkdir()
    save_png(np.zeros((64, 64, 3), np.uint8), other / "x.png")
    with pytest.raises(CheckpointError, match="data"):
        train(_config(other, run, steps=4))
    # fields that do not change the computation may differ
    state = read_checkpoint(train(_config(data_dir, run, steps=3, log_every=7)))
    assert state["step"] == 3


def test_finished_run_is_not_retrained(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = train(_config(data_dir, run, steps=2))
    before = ckpt.stat().st_mtime_ns
    assert train(_config(data_dir, run, steps=2)) == ckpt
    assert ckpt.stat().st_mtime_ns == before


def test_invalid_configs() -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        TrainConfig(model={"arch": "mean-scale"}, patch_size=96)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lmbda"):
        TrainConfig(objective_args={"lmbda": -1.0})
    with pytest.raises(UnknownCodecError):
        TrainConfig(model={"arch": "nope"})
    with pytest.raises(ValueError, match="N must be"):
        TrainConfig(model={"N": 0})
    with pytest.raises(ValueError, match="unknown balle model arguments: K"):
        TrainConfig(model={"K": 3})
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        TrainConfig(family="nope")
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        TrainConfig(objective="nope")
    with pytest.raises(ValueError, match="unknown arguments of objective 'rd': beta"):
        TrainConfig(objective_args={"beta": 1.0})
    assert TrainConfig(model={"arch": "factorized"}).model == {
        "arch": "bmshj2018-factorized",
        "N": 128,
        "M": 192,
    }
    assert TrainConfig().objective_args == {"lmbda": 0.0067}
    cfg = TrainConfig(model={"arch": "hyperprior", "N": 8}, max_seconds=5.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# -- the layout before family / model / objective --------------------------------------------


def _flat(config: TrainConfig) -> dict:
    """``config`` as the old code's ``to_dict`` wrote it: arch, N, M, lmbda at the top level."""
    d = config.to_dict()
    assert d.pop("family") == "balle" and d.pop("objective") == "rd"
    return {**d.pop("model"), **d.pop("objective_args"), **d}


def test_old_flat_config_loads() -> None:
    new = TrainConfig(model={"arch": "factorized", "N": 8, "M": 12}, objective_args={"lmbda": 0.5})
    flat = _flat(new)
    assert set(flat) >= {"arch", "N", "M", "lmbda"} and "model" not in flat
    assert TrainConfig.from_dict(flat) == new
    assert TrainConfig.from_dict({"lmbda": 0.5}) == TrainConfig(objective_args={"lmbda": 0.5})
    with pytest.raises(ValueError, match="mixes the old fields"):
        TrainConfig.from_dict({**flat, "model": {"N": 8}})
    with pytest.raises(ValueError, match="unknown TrainConfig fields: K"):
        TrainConfig.from_dict({**flat, "K": 1})


def test_shipped_weights_configs_and_lambda_still_read() -> None:
    from imgcomp.ops import _training_lambda
    from imgcomp.zoo import WEIGHTS_DIR, create_codec, shipped_weights_path

    files = sorted(WEIGHTS_DIR.glob("*.imgw"))
    files = [p for p in files if read_metadata(p).get("family", "balle") == "balle"]
    assert files
    for path in files:  # written by the old code, flat layout
        meta = read_metadata(path)
        cfg = TrainConfig.from_dict(json.loads(meta["config"]))
        assert cfg.family == "balle" and cfg.objective == "rd"
        assert cfg.model == {"arch": meta["arch"], "N": int(meta["N"]), "M": int(meta["M"])}
        assert cfg.objective_args == {"lmbda": float(meta["lmbda"])}
    assert read_metadata(shipped_weights_path("mean-scale-hyperprior", 3))["lmbda"] == "0.0067"
    assert _training_lambda(create_codec("mbt2018-mean", quality=3)) == 0.0067


def test_checkpoint_in_the_old_layout_resumes(data_dir: Path, tmp_path: Path) -> None:
    straight = read_checkpoint(train(_config(data_dir, tmp_path / "straight", steps=4)))
    run = tmp_path / "old"
    ckpt = train(_config(data_dir, run, steps=2))
    state = torch.load(ckpt, weights_only=True)
    state["config"] = _flat(read_checkpoint(ckpt)["config"])  # as the old code wrote it
    write_checkpoint(ckpt, state)
    assert read_checkpoint(ckpt)["config"] == _config(data_dir, run, steps=2)
    resumed = read_checkpoint(train(_config(data_dir, run, steps=4)))
    assert resumed["step"] == 4 and "model" in resumed["config"].to_dict()
    _assert_same_state(straight["model"], resumed["model"])
    _assert_same_optimizer(straight["optimizer"], resumed["optimizer"])
    _assert_same_optimizer(straight["aux_optimizer"], resumed["aux_optimizer"])
    with pytest.raises(CheckpointError, match=r"objective_args\.lmbda"):
        train(_config(data_dir, run, steps=5, lmbda=0.5))


# -- checkpoint safety -------------------------------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_pickled_checkpoint_is_refused(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = train(_config(data_dir, run, steps=1))
    state = torch.load(ckpt, weights_only=True)
    state["evil"] = _Payload()
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="refused"):
        train(_config(data_dir, run, steps=2))  # resume reads it the same way
    with pytest.raises(CheckpointError):
        export_weights(run, tmp_path / "w.safetensors")
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"format": "x"}, protocol=2))
    with pytest.raises(CheckpointError):
        read_checkpoint(plain)


def test_tampered_checkpoints_are_refused(data_dir: Path, tmp_path: Path) -> None:
    ckpt = train(_config(data_dir, tmp_path / "run", steps=1))
    state = torch.load(ckpt, weights_only=True)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable"):
        read_checkpoint(truncated)
    bad = tmp_path / "bad.pt"
    for key, value in [("format", "other"), ("step", "3"), ("config", {"arch": "x"})]:
        write_checkpoint(bad, {**state, key: value})
        with pytest.raises(CheckpointError):
            read_checkpoint(bad)
    write_checkpoint(bad, {**state, "model": {**state["model"], "g_a.0.weight": torch.zeros(1)}})
    with pytest.raises(CheckpointError, match="do not fit"):
        export_weights(bad, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "missing.pt")


# -- export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("half", [False, True])
def test_export_load_round_trip(data_dir: Path, tmp_path: Path, half: bool) -> None:
    run = tmp_path / "run"
    ckpt = train(_config(data_dir, run, steps=2, seed=3))
    path = export_weights(run, tmp_path / "w.safetensors", half=half)
    meta = read_metadata(path)
    assert meta["arch"] == "mbt2018-mean" and meta["N"] == "8" and meta["M"] == "12"
    assert meta["lmbda"] == "0.0067" and meta["steps"] == "2" and meta["seed"] == "3"
    assert meta["family"] == "balle" and meta["objective"] == "rd"
    assert meta["data"] == str(data_dir) and float(meta["wall_time_s"]) >= 0
    assert meta["dtype"] == ("float16" if half else "float32")
    assert path.stat().st_mode & 0o044 == (ckpt.stat().st_mode & 0o044)  # umask, not 0600
    from safetensors.torch import load_file

    stored = load_file(path)
    assert stored["g_a.0.weight"].dtype == (torch.float16 if half else torch.float32)
    assert stored["z_prior.quantiles"].dtype == torch.float32  # entropy model stays exact
    model = load_weights(path)
    assert not model.training
    ref = build_model("mbt2018-mean", 8, 12)
    ref.load_state_dict(read_checkpoint(ckpt)["model"])
    ref.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = model(x), ref(x)
    if half:
        assert torch.allclose(got["x_hat"], want["x_hat"], atol=1e-2)
        assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    else:
        assert torch.equal(got["x_hat"], want["x_hat"])
        for k in want["likelihoods"]:
            assert torch.equal(got["likelihoods"][k], want["likelihoods"][k])


def test_load_weights_refuses_bad_files(data_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_weights(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an imgcomp weights"):
        load_weights(foreign)
    run = tmp_path / "run"
    train(_config(data_dir, run, steps=1))
    good = export_weights(run, tmp_path / "w.safetensors")
    meta = read_metadata(good)
    from safetensors.torch import load_file

    tensors = load_file(good)
    del tensors["g_s.0.weight"]
    save_file(tensors, tmp_path / "missing.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"g_s\.0\.weight: absent vs"):
        load_weights(tmp_path / "missing.safetensors")
    save_file(load_file(good), tmp_path / "arch.safetensors", metadata={**meta, "M": "16"})
    with pytest.raises(CheckpointError, match="tensors differ from the file's"):
        load_weights(tmp_path / "arch.safetensors")


def test_weights_may_carry_a_scale_table_of_any_length(data_dir: Path, tmp_path: Path) -> None:
    """The Gaussian conditional's scale table is sized by the file (``sized_by_file``): 128
    levels load and code; a table of another rank is refused before anything is built."""
    from safetensors.torch import load_file, save_file

    from imgcomp.nn.density import scale_table

    run = tmp_path / "run"
    train(_config(data_dir, run, steps=1))
    good = export_weights(run, tmp_path / "w.safetensors")
    meta, tensors = read_metadata(good), load_file(good)
    assert tensors["y_conditional.scale_table"].shape == (64,)
    tensors["y_conditional.scale_table"] = scale_table(0.11, 256.0, 128)
    save_file(tensors, tmp_path / "fine.safetensors", metadata=meta)
    model = load_weights(tmp_path / "fine.safetensors")
    assert torch.equal(model.y_conditional.scale_table, scale_table(0.11, 256.0, 128))
    tensors["y_conditional.scale_table"] = scale_table(0.11, 256.0, 64).reshape(8, 8)
    save_file(tensors, tmp_path / "rank.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="scale_table"):
        load_weights(tmp_path / "rank.safetensors")


# -- command line ------------------------------------------------------------------------------


def test_cli_train_resume_and_export(data_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "tiny"
    args = ["train", "--arch", "factorized", "--N", "8", "--M", "12", "--lmbda", "0.01"]
    args += ["--data", str(data_dir), "--out", str(run), "--batch-size", "2"]
    args += ["--patch-size", "64", "--quiet", "--log-every", "1"]
    assert main([*args, "--steps", "2", "--max-seconds", "0"]) == 0
    assert "step 1/2, stopped early" in capsys.readouterr().out
    assert main([*args, "--steps", "2"]) == 0
    assert "step 2/2, finished" in capsys.readouterr().out
    state = read_checkpoint(run / CHECKPOINT_NAME)
    assert dataclasses.asdict(state["config"])["model"] == {
        "arch": "bmshj2018-factorized",
        "N": 8,
        "M": 12,
    }
    assert state["config"].objective_args == {"lmbda": 0.01}
    out = tmp_path / "w.safetensors"
    assert main(["export", str(run), str(out), "--half"]) == 0
    assert load_weights(out).config == {"arch": "bmshj2018-factorized", "N": 8, "M": 12}
    assert main([*args, "--steps", "2", "--lmbda", "0.5"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main([*args, "--steps", "0"]) == 2
    assert "invalid training option" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), str(out)]) == 2


def test_cuda_request_without_cuda_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ImgcompError, match="CUDA is not available"):
        train(_config(data_dir, tmp_path / "run", device="cuda"))


def test_fit_quantiles_converges_and_only_moves_quantiles() -> None:
    from imgcomp.train import fit_quantiles

    torch.manual_seed(0)
    model = build_model("mbt2018-mean", 8, 12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = float(model.aux_loss().detach())
    final = fit_quantiles(model, steps=3000, lr=0.5)
    assert final < 0.05 * start
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"z_prior.quantiles"}


def test_reexport_of_safetensors_refits_and_halves(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_config(data_dir, run, steps=1))
    first = export_weights(run, tmp_path / "w32.safetensors")
    second = export_weights(first, tmp_path / "w16.safetensors", half=True, fit_quantile_steps=500)
    meta = read_metadata(second)
    assert meta["dtype"] == "float16" and meta["quantile_fit_steps"] == "500"
    assert float(meta["aux_loss"]) < float(load_weights(first).aux_loss().detach())
    assert meta["steps"] == read_metadata(first)["steps"]  # training provenance is kept
