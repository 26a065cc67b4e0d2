"""Distillation for recovery fine-tuning: the family's own training objective with the unpruned
model's reconstruction as the distortion target instead of the image.

A pruned model recovers what it lost fastest by learning to reproduce its teacher (the same
model before pruning) rather than the photo: the teacher's output is reachable, and a
GAN-trained generator's synthesized texture, which the warm-up loss pulls away from, is kept.
The rate terms stay the student's own. Objectives qualify when their training forward returns
the reconstruction as ``"x_hat"`` (Ballé, HiFiC); the RNN's residual outputs do not.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imgcomp.errors import ImgcompError

__all__ = ["Distilled", "frozen_teacher"]


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (no gradients) to distil from."""
    teacher = copy.deepcopy(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@dataclass
class Distilled:
    """``objective`` with ``teacher``'s training-mode reconstruction of each batch (under the
    same random noise as the student's) as the target of its loss."""

    objective: Any
    teacher: nn.Module
    name: ClassVar[str] = "distilled"

    @property
    def progress_keys(self) -> tuple[str, ...]:
        return tuple(self.objective.progress_keys)

    def forward(self, model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, Any]:
        """The student's training forward, with the teacher's reconstruction beside it."""
        noise = torch.random.get_rng_state()
        self.teacher.train(model.training)
        with torch.no_grad():
            target = self.objective.forward(self.teacher, x, amp=amp).get("x_hat")
        if not isinstance(target, Tensor):
            raise ImgcompError(
                f"distillation needs an objective whose forward returns the reconstruction "
                f"('x_hat'); {type(self.objective).__name__} does not"
            )
        torch.random.set_rng_state(noise)  # the student draws the teacher's noise
        out = self.objective.forward(model, x, amp=amp)
        out["teacher_x_hat"] = target.detach().float()
        return out

    def loss(self, x: Tensor, out: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective's loss against the teacher's reconstruction."""
        return self.objective.loss(out["teacher_x_hat"], out)

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        return self.objective.derived(means)
