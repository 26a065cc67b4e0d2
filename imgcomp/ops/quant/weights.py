"""Weight-only K-bit fake quantization (a precision study) and the size its packing would take.

Every ``Conv2d`` / ``ConvTranspose2d`` weight is rounded to symmetric per-output-channel levels
``scale * q`` with ``q`` in ``[-(2**(K-1) - 1), 2**(K-1) - 1]`` and ``scale = max|w| / qmax``
(so at most ``2**K - 1`` distinct values per channel), and stored back as float32. The output
channel axis is 0 for ``Conv2d`` weights ``[Cout, Cin/g, kh, kw]`` and 1 for ``ConvTranspose2d``
weights ``[Cin, Cout/g, kh, kw]`` (with groups, per group).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from imgcomp.errors import ImgcompError
from imgcomp.ops.config import WEIGHT_BITS

__all__ = [
    "WEIGHT_BITS",
    "Int8WeightConv",
    "check_bits",
    "conv_layers",
    "dequantize_weight",
    "fake_quantize_weight",
    "out_channels",
    "packed_bytes",
    "quantize_weight",
]


_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def check_bits(bits: object) -> int:
    """Validate a weight bit width (one of :data:`WEIGHT_BITS`: 2..8)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in WEIGHT_BITS:
        lo, hi = min(WEIGHT_BITS), max(WEIGHT_BITS)
        raise ImgcompError(f"weight bits must be an integer in {lo}..{hi}, got {bits!r}")
    return bits


def conv_layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(qualified name, layer) of every Conv2d / ConvTranspose2d inside ``module``."""
    return [
        (f"{prefix}.{name}" if prefix and name else prefix or name, m)
        for name, m in module.named_modules()
        if isinstance(m, _CONVS)
    ]


def _grouped(w: Tensor, transposed: bool, groups: int) -> tuple[Tensor, tuple[int, ...]]:
    """``w`` viewed with the output channels on their own axes; the dims to reduce over."""
    if transposed:  # [Cin, Cout/g, kh, kw] -> [g, Cin/g, Cout/g, kh, kw]
        return w.reshape(groups, w.shape[0] // groups, *w.shape[1:]), (1, 3, 4)
    return w, (1, 2, 3)


def _scale_view(scale: Tensor, transposed: bool, groups: int) -> Tensor:
    """Per-output-channel scales [Cout] shaped to broadcast over :func:`_grouped`'s view."""
    if transposed:
        return scale.reshape(groups, 1, -1, 1, 1)
    return scale.reshape(-1, 1, 1, 1)


def out_channels(layer: nn.Module) -> int:
    """Number of output channels (= per-channel scales) of a conv layer."""
    return int(layer.out_channels)


def quantize_weight(layer: nn.Module, bits: int) -> tuple[Tensor, Tensor]:
    """(integer levels as int8 in the weight's shape, float32 scale per output channel [Cout])
    of ``bits``-bit symmetric per-output-channel quantization of the layer's weight."""
    bits = check_bits(bits)
    transposed = isinstance(layer, nn.ConvTranspose2d)
    w = layer.weight.detach().float()
    qmax = 2 ** (bits - 1) - 1
    v, dims = _grouped(w, transposed, layer.groups)
    scale = v.abs().amax(dim=dims, keepdim=True) / qmax
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(v / safe), -qmax, qmax)
    return q.reshape(w.shape).to(torch.int8), scale.reshape(-1)


def dequantize_weight(q: Tensor, scale: Tensor, transposed: bool, groups: int) -> Tensor:
    """float32 weight ``q * scale`` from :func:`quantize_weight`'s output."""
    v, _ = _grouped(q.float(), transposed, groups)
    return (v * _scale_view(scale, transposed, groups)).reshape(q.shape)


def fake_quantize_weight(layer: nn.Module, bits: int) -> Tensor:
    """The layer's weight rounded to ``bits``-bit symmetric per-output-channel levels (float)."""
    q, scale = quantize_weight(layer, bits)
    w = dequantize_weight(q, scale, isinstance(layer, nn.ConvTranspose2d), layer.groups)
    return w.to(layer.weight.dtype)


class Int8WeightConv(nn.Module):
    """A Conv2d / ConvTranspose2d (and an optional fused activation) whose weight is stored as
    int8 with one float32 scale per output channel and dequantized on the fly: int8 size,
    float32 activations and compute (inputs are expected channels_last)."""

    def __init__(self, layer: nn.Module, activation: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(layer, _CONVS):
            raise TypeError(f"expected Conv2d or ConvTranspose2d, got {type(layer).__name__}")
        q, scale = quantize_weight(layer, 8)
        self.transposed = isinstance(layer, nn.ConvTranspose2d)
        self.stride, self.padding = layer.stride, layer.padding
        self.dilation, self.groups = layer.dilation, layer.groups
        self.output_padding = getattr(layer, "output_padding", (0, 0))
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale.float())
        bias = None if layer.bias is None else layer.bias.detach().float().clone()
        self.register_buffer("bias", bias)
        self.activation = activation

    def weight(self) -> Tensor:
        """The dequantized float32 weight (channels_last)."""
        w = dequantize_weight(self.weight_int8, self.weight_scale, self.transposed, self.groups)
        return w.contiguous(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        if self.transposed:
            out = torch.nn.functional.conv_transpose2d(
                x,
                self.weight(),
                self.bias,
                self.stride,
                self.padding,
                self.output_padding,
                self.groups,
                self.dilation,
            )
        else:
            out = torch.nn.functional.conv2d(
                x, self.weight(), self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        return out if self.activation is None else self.activation(out)

    def extra_repr(self) -> str:
        kind = "ConvTranspose2d" if self.transposed else "Conv2d"
        return f"{kind}{tuple(self.weight_int8.shape)}, int8 weights, float32 compute"


def packed_bytes(state: Iterable[tuple[str, Tensor]], packed: dict[int, int], bits: int) -> int:
    """Bytes of ``state`` tensors with those whose id is in ``packed`` (id -> output channels)
    stored as ``bits``-bit integers plus one float32 scale per output channel."""
    total = 0
    for _, t in state:
        if id(t) in packed:
            total += math.ceil(t.numel() * bits / 8) + 4 * packed[id(t)]
        else:
            total += t.numel() * t.element_size()
    return total
