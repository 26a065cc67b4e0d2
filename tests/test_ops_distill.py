"""Distillation recovery (imgcomp.ops.distill): the training objective against the unpruned
model's reconstruction, under the student's own noise; refused for objectives without one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import imgcomp
from imgcomp.errors import ImgcompError
from imgcomp.ops.config import OpConfigError, StructuredPrune
from imgcomp.ops.distill import Distilled, frozen_teacher
from imgcomp.ops.structured import recover
from imgcomp.train import objectives
from tests.test_ops_structured import _image


def _codec():
    return imgcomp.create_codec("mean-scale-hyperprior", pretrained=False, N=8, M=12, seed=3)


def _rd():
    return objectives.make_objective("rd", {"lmbda": 0.01})


def test_a_student_equal_to_its_teacher_has_zero_distortion() -> None:
    model = copy.deepcopy(_codec().model).train()
    distilled = Distilled(_rd(), frozen_teacher(model))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)  # the noise both forwards draw
    out = distilled.forward(model, x)
    assert torch.equal(out["teacher_x_hat"], out["x_hat"].detach())
    _, metrics = distilled.loss(x, out)
    assert float(metrics["mse"].detach()) == 0.0
    _, against_image = _rd().loss(x, out)
    assert float(against_image["mse"]) > 0.0  # the image is not the target


def test_the_teacher_is_frozen_and_left_unchanged() -> None:
    model = _codec().model
    teacher = frozen_teacher(model)
    assert teacher is not model and not any(p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_distilled_recovery_moves_the_student_towards_its_teacher(tmp_path) -> None:
    for i in range(2):
        Image.fromarray(_image(80, 96, seed=i)).save(tmp_path / f"img{i}.png")
    codec = _codec()
    pruned = imgcomp.prune(codec, decoder=0.5, method="structured")
    model, teacher = pruned.model, frozen_teacher(codec.model).eval()
    x = torch.from_numpy(_image(64, 64, seed=5)).permute(2, 0, 1)[None].float() / 255

    def gap() -> float:
        with torch.no_grad():
            return float(torch.mean((model(x)["x_hat"] - teacher(x)["x_hat"]) ** 2))

    before = gap()
    recover(
        model, steps=30, lmbda=0.01, data_dir=tmp_path, batch_size=2, patch_size=64, lr=1e-3,
        quantile_steps=2, teacher=teacher,
    )  # fmt: skip
    assert gap() < 0.5 * before


def test_objectives_without_a_reconstruction_are_refused() -> None:
    rnn = imgcomp.create_codec("toderici2017", pretrained=False, width=0.25, iterations=2)
    model = copy.deepcopy(rnn.model).train()
    objective = objectives.make_objective("residual-l1", {"iterations": 2})
    with pytest.raises(ImgcompError, match="x_hat"):
        Distilled(objective, frozen_teacher(model)).forward(model, torch.rand(1, 3, 32, 32))


def test_distill_is_recorded_and_checked() -> None:
    with pytest.raises(OpConfigError, match="distill"):
        StructuredPrune({"decoder": 0.3}, distill="yes")
    on = StructuredPrune({"decoder": 0.3}, recover_steps=5, lmbda=0.01, distill=True)
    off = StructuredPrune({"decoder": 0.3}, recover_steps=5, lmbda=0.01, distill=False)
    assert on.record().endswith(":distill") and ":distill" not in off.record()


def test_prune_resolves_distill_from_the_family(tmp_path) -> None:
    for i in range(2):
        Image.fromarray(_image(80, 96, seed=i)).save(tmp_path / f"img{i}.png")
    codec = _codec()  # Ballé: recovery against the image unless asked
    plain = imgcomp.prune(
        codec, StructuredPrune({"decoder": 0.5}, recover_steps=1, lmbda=0.01), data=tmp_path
    )
    asked = imgcomp.prune(
        codec,
        StructuredPrune({"decoder": 0.5}, recover_steps=1, lmbda=0.01, distill=True),
        data=tmp_path,
    )
    assert ":distill" not in plain.ops[0] and asked.ops[0].endswith(":distill")
    img = _image(64, 64)
    assert np.array_equal(asked.decode(asked.encode(img)), asked.reconstruct(img))


# -- recovery of the pruned modules alone --------------------------------------------------------
def test_train_only_fine_tunes_those_modules_and_nothing_else(tmp_path) -> None:
    for i in range(2):
        Image.fromarray(_image(80, 96, seed=i)).save(tmp_path / f"img{i}.png")
    model = imgcomp.prune(_codec(), decoder=0.5, method="structured").model
    before = copy.deepcopy(model.state_dict())
    result = recover(
        model, steps=3, lmbda=0.01, data_dir=tmp_path, batch_size=2, patch_size=64, lr=1e-3,
        quantile_steps=2, train_only=["g_s"],
    )  # fmt: skip
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("g_s.") for k in changed), changed
    assert np.isnan(result.aux_loss)  # no density among g_s: the quantiles are not refitted
    assert all(p.requires_grad for p in model.parameters())  # thawed afterwards
    with pytest.raises(ImgcompError, match="train_only"):
        recover(model, steps=1, lmbda=0.01, data_dir=tmp_path, train_only=["g_x"])


def test_hific_generator_recovery_alone_keeps_the_stream_byte_for_byte(tmp_path) -> None:
    from imgcomp.bitstream import unpack
    from imgcomp.ops.base import derive

    for i in range(2):
        Image.fromarray(_image(160, 192, seed=i)).save(tmp_path / f"img{i}.png")
    params = {"channels": 16, "blocks": 1, "hyper_channels": 16, "width": 0.125}
    codec = imgcomp.create_codec("hific", pretrained=False, **params)
    pruned = imgcomp.prune(codec, StructuredPrune({"generator": 0.5}, round_to=4))
    model = copy.deepcopy(pruned.model)
    recover(
        model, steps=2, lmbda=None, data_dir=tmp_path, batch_size=2, patch_size=128,
        quantile_steps=2, teacher=frozen_teacher(codec.model), train_only=["Generator"],
    )  # fmt: skip
    recovered = derive(pruned, model, "recovered")
    img = _image(96, 112, seed=9)
    ours, theirs = recovered.encode(img), codec.encode(img)
    assert unpack(ours)[1] == unpack(theirs)[1]  # the same sections: only the generator moved
    key = "Generator.conv_block_out.1.weight"
    assert not torch.equal(model.state_dict()[key], pruned.model.state_dict()[key])
    assert np.array_equal(recovered.decode(ours), recovered.reconstruct(img))
