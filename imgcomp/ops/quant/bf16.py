"""bfloat16 transforms: weights and activations in bf16, channels_last, float32 NCHW interface.

On CPUs with AVX512-BF16 / AMX, oneDNN runs bf16 channels_last convolutions (and transposed
convolutions) several times faster than float32 NCHW; fp16 convolutions, by contrast, fall back to
slow reference kernels on CPU, hence bf16 and not fp16. GDN layers become :class:`ConvGDN` (their
effective parameters computed once in float32, then rounded to bf16).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from imgcomp.nn.gdn import GDN
from imgcomp.ops.quant.casting import map_tensors, to_compute, to_float32
from imgcomp.ops.quant.report import LayerInfo, layers_of
from imgcomp.ops.quant.rewrite import ConvGDN

__all__ = ["Bf16Transform", "map_tensors", "to_bf16"]

_to_bf16 = partial(to_compute, dtype=torch.bfloat16)


class Bf16Transform(nn.Module):
    """Runs ``inner`` (bf16, channels_last) on float32 NCHW inputs; returns float32 NCHW.

    Every tensor argument is converted, also inside tuples (a recurrent cell's ``(x, states)``);
    a result ``(out, state)`` returns ``out`` in float32 and the state as it is (bf16: it only
    comes back to this module); other attributes are the inner module's (e.g. an RNN encoder's
    ``zero_states``).
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: object) -> object:
        if len(args) == 1 and isinstance(args[0], Tensor):  # the common case, kept cheap
            x = args[0].to(dtype=torch.bfloat16, memory_format=torch.channels_last)
            return self.inner(x).to(dtype=torch.float32, memory_format=torch.contiguous_format)
        out = self.inner(*map_tensors(args, _to_bf16))
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Tensor):
            # a recurrent step's (output, state): the state only comes back here, so it stays
            # bf16 channels_last between steps (converting it each step cost a fifth of an
            # RNN decode)
            return to_float32(out[0]), out[1]
        return map_tensors(out, to_float32)

    def __getattr__(self, name: str) -> object:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


def _replace_gdn(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, GDN):
            setattr(module, name, ConvGDN(child))
        else:
            _replace_gdn(child)


def to_bf16(module: nn.Module, prefix: str) -> tuple[Bf16Transform, list[LayerInfo]]:
    """``module`` (modified in place) wrapped as a :class:`Bf16Transform`, with layer info."""
    layers = [
        LayerInfo(
            f"{prefix}.{name}",
            type(m).__name__,
            True,
            "bf16 weights and activations, channels_last"
            + (" (effective gamma/beta as a 1x1 conv)" if isinstance(m, GDN) else ""),
            weights="bfloat16" if any(True for _ in m.parameters()) else "-",
            compute="bfloat16",
        )
        for name, m in layers_of(module)
    ]
    _replace_gdn(module)
    module.to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    for p in module.parameters():
        if p.dim() == 4 and p.shape[2:] == (1, 1):
            # A 1x1 kernel is channels_last either way; give it unit strides on its size-1
            # dims too, so byte views of the state dict (stream fingerprints) work.
            p.data = p.data.clone(memory_format=torch.contiguous_format)
    return Bf16Transform(module), layers
