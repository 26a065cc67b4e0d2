"""Fast float32 CPU inference of a transform: an ``nn.Sequential`` of convolutions, transposed
convolutions, GDN / IGDN and ReLU / LeakyReLU, run as a plan of functional steps.

What the plan changes against the modules' own forward (the same function; float sums run in
another order, as they do with another thread count):

* activations and weights channels_last (oneDNN's transposed convolutions are several times
  faster on channels_last than on NCHW);
* transposed convolutions with few output channels (< :data:`SUBPIXEL_MAX_OUT`: the RGB layer)
  as their exact sub-pixel convolution (:mod:`imgcomp.nn.subpixel`), faster there than oneDNN's
  native kernel; with more output channels the native one is faster and is kept;
* GDN as one matrix product on squares, in place, block by block (:func:`gdn_channels_last_`),
  its effective parameters computed once, on one thread: a block's ops are too small to share,
  and each multi-threaded op ends in a barrier, which stalls for a whole scheduler slice when
  another process holds a core (a 25 ms GDN took 1.7 s with 2 threads on a loaded 2-core
  host); activations in place.

:class:`PlanCache` keeps one plan per transform and rebuilds it when the transform's modules or
parameters change (a parameter's version counter counts in-place updates), so a plan never runs
stale weights. Anything else (autograd, training mode, another dtype or device, a layer the plan
does not know) runs the modules themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgcomp.nn.determinism import single_cpu_thread
from imgcomp.nn.gdn import GDN, gdn_channels_last_
from imgcomp.nn.subpixel import subpixel_geometry, subpixel_weights

__all__ = ["SUBPIXEL_MAX_OUT", "InferencePlan", "PlanCache", "build_plan"]

#: Transposed convolutions with fewer output channels than this run as sub-pixel convolutions.
SUBPIXEL_MAX_OUT = 16

_CL = torch.channels_last
#: One step: (activation, whether the plan owns it and may overwrite it) -> activation.
Step = Callable[[Tensor, bool], Tensor]


def _cl(t: Tensor) -> Tensor:
    return t.detach().contiguous(memory_format=_CL)


def _bias(m: nn.Module) -> Tensor | None:
    return None if m.bias is None else m.bias.detach()


def _conv_step(m: nn.Conv2d) -> Step | None:
    if m.padding_mode != "zeros":
        return None
    w, b = _cl(m.weight), _bias(m)
    stride, padding, dilation, groups = m.stride, m.padding, m.dilation, m.groups
    return lambda x, _owned: F.conv2d(x, w, b, stride, padding, dilation, groups)


def _deconv_step(m: nn.ConvTranspose2d) -> Step | None:
    if m.padding_mode != "zeros":
        return None
    g = subpixel_geometry(m) if m.out_channels < SUBPIXEL_MAX_OUT else None
    if g is not None:
        w, b = subpixel_weights(m, g)
        w, s, reach = _cl(w), g.stride, g.reach
        return lambda x, _owned: F.pixel_shuffle(F.conv2d(x, w, b, padding=reach), s)
    w, b = _cl(m.weight), _bias(m)
    args = (m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    return lambda x, _owned: F.conv_transpose2d(x, w, b, *args)


def _gdn_step(m: GDN) -> Step:
    gamma_t = m.effective_gamma().detach().t().contiguous()
    beta = m.effective_beta().detach().contiguous()
    inverse = m.inverse

    def step(x: Tensor, owned: bool) -> Tensor:
        if not (owned and x.is_contiguous(memory_format=_CL)):
            x = x.clone(memory_format=_CL)
        with single_cpu_thread(x.device):  # many small ops: see the module doc
            return gdn_channels_last_(x, gamma_t, beta, inverse)

    return step


def _relu_step(_m: nn.ReLU) -> Step:
    return lambda x, owned: x.relu_() if owned else F.relu(x)


def _leaky_step(m: nn.LeakyReLU) -> Step:
    slope = m.negative_slope
    return lambda x, owned: F.leaky_relu_(x, slope) if owned else F.leaky_relu(x, slope)


_BUILDERS: dict[type, Callable[[Any], Step | None]] = {
    nn.Conv2d: _conv_step,
    nn.ConvTranspose2d: _deconv_step,
    GDN: _gdn_step,
    nn.ReLU: _relu_step,
    nn.LeakyReLU: _leaky_step,
}


def _snapshot(seq: nn.Sequential) -> tuple[list[nn.Module], list[tuple]]:
    """What a plan copied from ``seq``: its layers and, per parameter, the tensor, its version
    counter (in-place updates), storage and dtype (``.data`` swaps, ``.to()``)."""
    params = [(p, p._version, p.data_ptr(), p.dtype) for p in seq.parameters()]
    return list(seq), params


def _same(a: tuple[list, list], b: tuple[list, list]) -> bool:
    if len(a[0]) != len(b[0]) or len(a[1]) != len(b[1]):
        return False
    if any(x is not y for x, y in zip(a[0], b[0], strict=True)):
        return False
    return all(
        p is q and rest == rest_q for (p, *rest), (q, *rest_q) in zip(a[1], b[1], strict=True)
    )


class InferencePlan:
    """The steps of one transform. ``contiguous_out`` hands back an NCHW-contiguous result
    (latents that code as C-order arrays); otherwise the last step's layout is kept
    (channels_last, or NCHW after a pixel shuffle)."""

    def __init__(self, steps: list[Step], contiguous_out: bool) -> None:
        self.steps = steps
        self.contiguous_out = contiguous_out

    def __call__(self, x: Tensor) -> Tensor:
        h = x.contiguous(memory_format=_CL)
        owned = h is not x
        for step in self.steps:
            h = step(h, owned)
            owned = True
        return h.contiguous() if self.contiguous_out else h


def build_plan(seq: nn.Sequential, contiguous_out: bool = False) -> InferencePlan | None:
    """The plan of ``seq``, or None where a layer is not one the plan knows (exact types: a
    subclass may compute something else) or a parameter is not a float32 CPU tensor."""
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in seq.parameters()):
        return None
    steps = []
    for m in seq:
        builder = _BUILDERS.get(type(m))
        step = builder(m) if builder is not None else None
        if step is None:
            return None
        steps.append(step)
    return InferencePlan(steps, contiguous_out)


def _hooked(seq: nn.Module) -> bool:
    """Whether a forward hook watches ``seq`` or a layer of it (calibration captures inputs
    that way): those must see the modules run."""
    g = nn.modules.module
    if g._global_forward_hooks or g._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in seq.modules())


class PlanCache:
    """One plan per transform, rebuilt when the transform's layers or parameters change; a deep
    copy or a pickle of the owning model starts with an empty cache (plans copy weights)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[int, bool], tuple[tuple, InferencePlan | None]] = {}

    def __deepcopy__(self, memo: dict) -> PlanCache:
        return PlanCache()

    def __getstate__(self) -> dict:
        return {"_plans": {}}

    def plan(self, seq: nn.Sequential, contiguous_out: bool = False) -> InferencePlan | None:
        """The current plan of ``seq`` (built or rebuilt as needed), None if it has none."""
        key = (id(seq), contiguous_out)
        snap = _snapshot(seq)
        held = self._plans.get(key)
        if held is None or not _same(held[0], snap):
            held = (snap, build_plan(seq, contiguous_out))
            self._plans[key] = held
        return held[1]

    def run(self, seq: nn.Module, x: Tensor, contiguous_out: bool = False) -> Tensor:
        """``seq(x)``, through its plan where one applies: an ``nn.Sequential`` in eval mode, a
        float32 CPU input, no autograd, no forward hooks; otherwise the modules themselves (an
        op's replacement of the transform, training, calibration)."""
        if (
            not isinstance(seq, nn.Sequential)
            or torch.is_grad_enabled()
            or torch.jit.is_tracing()  # an ONNX / TorchScript export records the modules
            or x.dtype != torch.float32
            or x.device.type != "cpu"
            or x.dim() != 4
            or any(m.training for m in seq.modules())
            or _hooked(seq)
        ):
            return seq(x)
        plan = self.plan(seq, contiguous_out)
        return seq(x) if plan is None else plan(x)
