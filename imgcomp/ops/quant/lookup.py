"""Quantized square roots by lookup table: GDN's ``sqrt`` / ``rsqrt`` without a float tensor.

PyTorch has no quantized square root, so FX's int8 GDN dequantizes the whole norm to float32,
takes the root and quantizes again: a float32 temporary as large as the float model's own
activation, which made int8 decode need more memory than float32. A uint8 input has only 256
values, so the root of each is computed once per call, by the same dequantize / root / quantize
kernels on those 256 values, and gathered block by block into a uint8 output: the same bytes,
with no full-size float tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor, fx

__all__ = ["LOOKUP_BLOCK", "lookup_roots", "quantized_root", "uint8_view"]

#: Elements gathered per block (its int64 index temporary is 8x this many bytes).
LOOKUP_BLOCK = 1 << 18

_ROOTS = {"sqrt_": torch.sqrt, "sqrt": torch.sqrt, "rsqrt_": torch.rsqrt, "rsqrt": torch.rsqrt}


def quantized_root(
    x: Tensor, scale: Tensor | float, zero_point: Tensor | int, inverse: bool
) -> Tensor:
    """``quantize_per_tensor(sqrt(x.dequantize()), scale, zero_point, quint8)`` (``rsqrt``
    unless ``inverse``) of a per-tensor quint8 ``x``, through a 256-entry table."""
    if x.dtype != torch.quint8 or x.qscheme() != torch.per_tensor_affine:
        root = torch.sqrt if inverse else torch.rsqrt
        return torch.quantize_per_tensor(root(x.dequantize()), scale, zero_point, torch.quint8)
    scale, zero_point = float(scale), int(zero_point)
    levels = torch._make_per_tensor_quantized_tensor(
        torch.arange(256, dtype=torch.uint8), x.q_scale(), x.q_zero_point()
    )
    root = torch.sqrt if inverse else torch.rsqrt
    table = torch.quantize_per_tensor(root(levels.dequantize()), scale, zero_point, torch.quint8)
    table = table.int_repr()
    raw = uint8_view(x)
    out = torch.empty_like(raw)
    order = _memory_order(raw)
    src, dst = raw.permute(*order), out.permute(*order)
    if not (src.is_contiguous() and dst.is_contiguous()):  # not dense: no flat walk
        return torch.quantize_per_tensor(root(x.dequantize()), scale, zero_point, torch.quint8)
    src, dst = src.view(-1), dst.view(-1)
    for start in range(0, src.numel(), LOOKUP_BLOCK):
        part = src[start : start + LOOKUP_BLOCK]
        torch.index_select(table, 0, part.long(), out=dst[start : start + LOOKUP_BLOCK])
    return torch._make_per_tensor_quantized_tensor(out, scale, zero_point)


def uint8_view(x: Tensor) -> Tensor:
    """The bytes of a per-tensor quint8 tensor as a uint8 tensor of its shape and strides, with
    no copy (``int_repr`` copies)."""
    return torch.empty(0, dtype=torch.uint8).set_(
        x.untyped_storage(), x.storage_offset(), x.shape, x.stride()
    )


def _memory_order(t: Tensor) -> list[int]:
    """Dimensions from the outermost to the innermost in memory (a dense tensor's)."""
    return sorted(range(t.dim()), key=lambda d: (-t.stride(d), -t.size(d)))


def lookup_roots(graph: fx.GraphModule) -> int:
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
        inverse = _ROOTS[node.target] is torch.sqrt
        with graph.graph.inserting_before(quant):
            new = graph.graph.call_function(
                quantized_root, (deq.args[0], quant.args[1], quant.args[2], inverse)
            )
        quant.replace_all_uses_with(new)
        for dead in (quant, node, deq):
            graph.graph.erase_node(dead)
        replaced += 1
    if replaced:
        graph.graph.lint()
        graph.recompile()
    return replaced
