"""Quantized square roots in bands: GDN's ``sqrt`` / ``rsqrt`` without a full-size float tensor.

PyTorch has no quantized square root, so FX's int8 GDN dequantizes the whole norm to float32,
takes the root and quantizes again: a float32 temporary as large as the float model's own
activation, which made int8 decode need more memory than float32. Here the same three kernels
run on bands of rows, each band's uint8 result copied into one output: the same bytes (each
element goes through the same arithmetic, and every band but the last holds a multiple of 64
elements, so the kernels' vector loops and tails fall on the same elements), with a band-sized
float temporary.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, fx

__all__ = ["ROOT_BAND_ELEMENTS", "quantized_root", "quantized_roots", "uint8_view"]

#: Elements per band (its float32 temporary is 4x this many bytes).
ROOT_BAND_ELEMENTS = 1 << 20

_ROOTS = {"sqrt_": True, "sqrt": True, "rsqrt_": False, "rsqrt": False}


def _root(x: Tensor, scale: float, zero_point: int, inverse: bool) -> Tensor:
    f = x.dequantize()
    f = f.sqrt_() if inverse else f.rsqrt_()
    return torch.quantize_per_tensor(f, scale, zero_point, torch.quint8)


def quantized_root(
    x: Tensor, scale: Tensor | float, zero_point: Tensor | int, inverse: bool
) -> Tensor:
    """``quantize_per_tensor(sqrt(x.dequantize()), scale, zero_point, quint8)`` (``rsqrt``
    unless ``inverse``) of a per-tensor quint8 ``x``, computed in bands of rows."""
    scale, zero_point = float(scale), int(zero_point)
    if (
        x.dtype != torch.quint8
        or x.qscheme() != torch.per_tensor_affine
        or x.dim() != 4
        or x.size(0) != 1
        or not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
    ):
        return _root(x, scale, zero_point, inverse)
    h = x.size(2)
    per_row = x[0, :, 0].numel()
    align = 64 // math.gcd(per_row, 64)  # rows whose element count is a multiple of 64
    rows = max(align, ROOT_BAND_ELEMENTS // max(per_row, 1) // align * align)
    if rows >= h or not x.is_contiguous(memory_format=torch.channels_last):
        return _root(x, scale, zero_point, inverse)  # one band, or NCHW (rows not contiguous)
    out = torch._empty_affine_quantized(
        x.shape,
        scale=scale,
        zero_point=zero_point,
        dtype=torch.quint8,
        memory_format=torch.channels_last,
    )
    raw = uint8_view(out)
    for r0 in range(0, h, rows):
        band = _root(x[:, :, r0 : r0 + rows], scale, zero_point, inverse)
        raw[:, :, r0 : r0 + rows].copy_(uint8_view(band))
    return out


def uint8_view(x: Tensor) -> Tensor:
    """The bytes of a per-tensor quint8 tensor as a uint8 tensor of its shape and strides, with
    no copy (``int_repr`` copies)."""
    return torch.empty(0, dtype=torch.uint8).set_(
        x.untyped_storage(), x.storage_offset(), x.shape, x.stride()
    )


def quantized_roots(graph: fx.GraphModule) -> int:
    """Replace each ``dequantize -> sqrt_/rsqrt_ -> quantize_per_tensor(quint8)`` chain of an
    FX-converted graph with :func:`quantized_root`; returns how many were replaced."""
    replaced = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_method" or node.target not in _ROOTS or len(node.users) != 1:
            continue
        deq = node.args[0]
        quant = next(iter(node.users))
        if not (
            isinstance(deq, fx.Node)
            and deq.op == "call_method"
            and deq.target == "dequantize"
            and len(deq.users) == 1
            and quant.op == "call_function"
            and quant.target is torch.quantize_per_tensor
            and len(quant.args) == 4
            and quant.args[0] is node
            and quant.args[3] == torch.quint8
        ):
            continue
        with graph.graph.inserting_before(quant):
            new = graph.graph.call_function(
                quantized_root, (deq.args[0], quant.args[1], quant.args[2], _ROOTS[node.target])
            )
        quant.replace_all_uses_with(new)
        for dead in (quant, node, deq):
            graph.graph.erase_node(dead)
        replaced += 1
    if replaced:
        graph.graph.lint()
        graph.recompile()
    return replaced
