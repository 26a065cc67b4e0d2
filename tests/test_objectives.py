"""Training objectives: the registry, the step shared by training and recovery, aux-less models."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from imgcomp.families.balle.model import build_model
from imgcomp.families.balle.objective import RateDistortion, rd_forward, rd_loss
from imgcomp.families.spec import Component, FamilySpec, Padding
from imgcomp.images import save_png
from imgcomp.nn.determinism import single_cpu_thread
from imgcomp.ops.structured import recover
from imgcomp.registry import register_family, unregister_family
from imgcomp.train import (
    LOG_NAME,
    OBJECTIVES,
    Objective,
    PatchSampler,
    TrainConfig,
    TrainFamily,
    make_objective,
    make_optimizers,
    objectives,
    read_checkpoint,
    train,
    train_step,
)
from imgcomp.train.data import step_seed
from imgcomp.trainsets import load_training_set

TINY = {"batch_size": 2, "patch_size": 64, "progress": False, "log_every": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small random images (never Kodak)."""
    root = tmp_path_factory.mktemp("objective_data")
    rng = np.random.default_rng(0)
    for i in range(2):
        save_png(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8), root / f"img{i}.png")
    return root


def _rd_config(data_dir: Path, out: Path, **kw: Any) -> TrainConfig:
    model = {"arch": "mbt2018-mean", "N": 8, "M": 12}
    base = {"steps": 3, "data": str(data_dir), "out": str(out), **TINY}
    return TrainConfig(model=model, objective_args={"lmbda": 0.01}, **{**base, **kw})


# -- registry ----------------------------------------------------------------------------------


def test_registry_has_rd_and_builds_it_from_its_arguments() -> None:
    assert OBJECTIVES["rd"] is RateDistortion  # the Ballé family's declaration
    assert dict(OBJECTIVES) == objectives.known_objectives()
    assert objectives.known_objectives()["rd"] is RateDistortion
    rd = make_objective("rd", {"lmbda": 0.013})
    assert isinstance(rd, RateDistortion) and isinstance(rd, Objective)
    assert rd.name == "rd" and rd.lmbda == 0.013
    assert make_objective("rd") == RateDistortion(lmbda=0.0067)
    assert TrainConfig(objective_args={"lmbda": 0.5}).make_objective() == RateDistortion(0.5)
    with pytest.raises(ValueError, match=r"unknown objective .gan.; known: hific-gan, rd"):
        make_objective("gan")
    with pytest.raises(ValueError, match="unknown arguments of objective 'rd': beta"):
        make_objective("rd", {"beta": 1})
    for bad in (0, -1.0, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match="lmbda"):
            RateDistortion(lmbda=bad)


def test_rd_objective_is_rd_forward_and_rd_loss() -> None:
    torch.manual_seed(0)
    model = build_model("mbt2018-mean", 8, 12).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    rd = RateDistortion(lmbda=0.02)
    torch.manual_seed(5)
    out = rd.forward(model, x, amp=False)
    torch.manual_seed(5)
    ref = rd_forward(model, x)
    assert torch.equal(out["x_hat"], ref["x_hat"])
    loss, metrics = rd.loss(x, out)
    want = rd_loss(x, ref["x_hat"], ref["likelihoods"], 0.02)
    assert torch.equal(loss, want[0]) and set(metrics) == {"mse", "bpp"}
    assert torch.equal(metrics["mse"], want[1]) and torch.equal(metrics["bpp"], want[2])
    assert rd.derived({"mse": 0.01}) == {"psnr": pytest.approx(20.0)}


# -- the shared step ---------------------------------------------------------------------------


def test_training_and_recovery_run_the_same_step(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any, float]] = []
    step = objectives.train_step

    def spy(model, optimizers, x, objective, clip, amp=False):
        calls.append((type(objective).__name__, objective.lmbda, clip))
        return step(model, optimizers, x, objective, clip, amp=amp)

    monkeypatch.setattr(objectives, "train_step", spy)
    train(_rd_config(data_dir, tmp_path / "run", steps=2))
    assert calls == [("RateDistortion", 0.01, 1.0)] * 2
    calls.clear()
    model = build_model("mbt2018-mean", 8, 12)
    recover(model, steps=3, lmbda=0.02, data_dir=data_dir, batch_size=1, patch_size=64,
            quantile_steps=0)  # fmt: skip
    assert calls == [("RateDistortion", 0.02, 1.0)] * 3


def _old_step(model, opt, aux_opt, x, lmbda: float) -> None:
    """The step recovery and training ran before objectives.train_step (copied from them)."""
    out = rd_forward(model, x)
    loss, _, _ = rd_loss(x, out["x_hat"], out["likelihoods"], lmbda)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.main_parameters(), 1.0)
    opt.step()
    aux_opt.zero_grad(set_to_none=True)
    model.aux_loss().backward()
    aux_opt.step()


def test_recovery_is_bit_identical_to_the_step_it_replaced(data_dir: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mbt2018-mean", 8, 12)
    ref = copy.deepcopy(model)
    recover(model, steps=3, lmbda=0.02, data_dir=data_dir, batch_size=2, patch_size=64,
            quantile_steps=0)  # fmt: skip
    sampler = PatchSampler.from_files(list(load_training_set(str(data_dir)).files), 64)
    ref.train()
    opt = torch.optim.Adam(ref.main_parameters(), lr=1e-4)
    aux_opt = torch.optim.Adam(ref.aux_parameters(), lr=1e-3)
    with torch.random.fork_rng(), torch.enable_grad(), single_cpu_thread():  # as recover trains
        for i in range(3):
            torch.manual_seed(step_seed(0, i, 1))
            _old_step(ref, opt, aux_opt, sampler.batch(0, i, 2), 0.02)
    got, want = model.state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    for k in got:
        assert torch.equal(got[k], want[k]), k


def test_train_is_bit_identical_to_the_step_it_replaced(data_dir: Path, tmp_path: Path) -> None:
    cfg = _rd_config(data_dir, tmp_path / "run", steps=3)
    state = read_checkpoint(train(cfg))
    sampler = PatchSampler.from_files(list(load_training_set(str(data_dir)).files), 64)
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(cfg.seed)
        ref = build_model("mbt2018-mean", 8, 12).train()
        opt = torch.optim.Adam(ref.main_parameters(), lr=cfg.lr)
        aux_opt = torch.optim.Adam(ref.aux_parameters(), lr=cfg.aux_lr)
        for i in range(cfg.steps):
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(i)
            x = sampler.batch(cfg.seed, i, cfg.batch_size)
            torch.manual_seed(step_seed(cfg.seed, i, 1))
            _old_step(ref, opt, aux_opt, x, 0.01)
    want = ref.state_dict()
    for k, v in state["model"].items():
        assert torch.equal(v, want[k]), k


# -- a model without auxiliary parameters --------------------------------------------------------


class _Toy(nn.Module):
    """One convolution: no entropy model, so no auxiliary parameters."""

    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, width, padding=width // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@dataclass(frozen=True)
class _Mse:
    """A stand-in objective: plain MSE of the model's output, times ``scale``."""

    name: ClassVar[str] = "mse"
    progress_keys: ClassVar[tuple[str, ...]] = ("mse",)
    scale: float = 1.0

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        return {"x_hat": model(x)}

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        mse = torch.mean((out["x_hat"] - x) ** 2)
        return self.scale * mse, {"mse": mse}

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        return {}


def test_a_model_without_aux_parameters_takes_a_step() -> None:
    with pytest.raises(ValueError):
        torch.optim.Adam([])  # why the aux optimiser is made only when there is something to fit
    torch.manual_seed(0)
    model = _Toy()
    opts = make_optimizers(model, lr=1e-2, aux_lr=1e-3)
    assert opts.aux is None and len(opts.main_params) == 2
    before = model.conv.weight.detach().clone()
    stats = train_step(model, opts, torch.rand(2, 3, 8, 8), _Mse(), clip=1.0)
    assert set(stats) == {"loss", "mse"} and not torch.equal(before, model.conv.weight)


def test_an_aux_less_family_trains_and_resumes(
    data_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    toy = TrainFamily(
        name="toy",
        normalize=lambda a: {"width": int(a.get("width", 3))},
        build=lambda a: _Toy(a["width"]),
        multiple=lambda a: 1,
    )
    spec = FamilySpec(
        name="toy",
        components={"all": Component("all", "all", ("conv",))},
        model_types=(_Toy,),
        latent=lambda m: None,
        padding=lambda m: Padding(1),
        objective="mse",
        checkpoint_formats=("imgcomp",),
        architectures={},
        shipped=lambda name, q: Path("none"),
        training=toy,
        objectives={"mse": _Mse},
    )
    register_family(spec)
    request.addfinalizer(lambda: unregister_family("toy"))

    def config(out: Path, steps: int) -> TrainConfig:
        return TrainConfig(
            family="toy",
            model={"width": 1},
            objective="mse",
            objective_args={"scale": 2.0},
            steps=steps,
            lr=1e-2,
            data=str(data_dir),
            out=str(out),
            **{**TINY, "patch_size": 16},
        )

    straight = read_checkpoint(train(config(tmp_path / "straight", 4)))
    assert straight["aux_optimizer"] == {} and straight["config"].model == {"width": 1}
    logs = [json.loads(x) for x in (tmp_path / "straight" / LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    assert set(logs[0]) == {"step", "loss", "mse", "lr", "elapsed", "steps_per_s", "images_per_s"}
    assert logs[0]["loss"] == pytest.approx(2.0 * logs[0]["mse"])
    run = tmp_path / "resumed"
    train(config(run, 2))
    resumed = read_checkpoint(train(config(run, 4)))
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
