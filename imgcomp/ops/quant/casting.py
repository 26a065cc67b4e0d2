"""Tensor casts at the float32 NCHW interface of the quantized transforms (bf16, int8).

A wrapped transform takes and gives float32 NCHW tensors; inside, it computes in its own dtype
on channels_last tensors. These helpers convert every tensor of an argument or a result, also
inside (nested) tuples and lists (a recurrent cell's ``(x, (h, c))``); non-floating tensors
(indices, masks) pass unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["map_tensors", "to_compute", "to_float32"]


def map_tensors(value: object, fn: Callable[[Tensor], Tensor]) -> object:
    """``fn`` applied to every tensor of a (nested) tuple / list of tensors and other values."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, fn) for v in value)
    return value


def to_compute(t: Tensor, dtype: torch.dtype) -> Tensor:
    """A floating tensor in ``dtype`` (channels_last when 4-d: what the kernels want inside a
    transform); any other tensor as it is."""
    if not t.is_floating_point():
        return t
    if t.dim() == 4:
        return t.to(dtype=dtype, memory_format=torch.channels_last)
    return t.to(dtype)


def to_float32(t: Tensor) -> Tensor:
    """A floating tensor as contiguous float32 (NCHW when 4-d: the interface); any other tensor
    as it is."""
    if not t.is_floating_point():
        return t
    return t.to(dtype=torch.float32, memory_format=torch.contiguous_format)
