"""A plain, compact state dict for FX-quantized transforms.

``convert_fx`` leaves quantized tensors (qint8 weights) and many 0-dim scale / zero-point
tensors in the state dict; neither serializes compactly nor byte-hashes (stream fingerprints).
:func:`to_plain` rewrites them, :func:`from_plain` restores them, losslessly:

* every quantized tensor ``k`` -> ``k.int`` (its integer values; sub-pixel conv weights in their
  transposed-conv layout, without the structural zeros) and ``k.qparams``: ``[axis, scales...,
  zero_points...]`` per channel (zero points left out when all 0) or ``[-1, scale, zero_point]``
  per tensor, in float32 when that is exact, else float64;
* sub-pixel conv biases (the transposed conv's bias repeated ``s*s`` times) -> one per channel;
* every other one-element tensor -> one float64 vector ``scalars`` (in state-dict order).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imgcomp.ops.quant.rewrite import (
    SubpixelGeometry,
    compact_subpixel_weight,
    expand_subpixel_weight,
)

__all__ = ["from_plain", "scalar_keys", "to_plain"]

SCALARS = "scalars"


def _is_scalar(v: object) -> bool:
    return isinstance(v, Tensor) and not v.is_quantized and v.numel() == 1 and v.dim() <= 1


def scalar_keys(graph: nn.Module) -> list[tuple[str, Tensor]]:
    """The graph's one-element state entries (relative key, current tensor), in order."""
    return [(k, v) for k, v in graph.state_dict().items() if _is_scalar(v)]


def _exact_float32(values: Tensor) -> Tensor:
    as32 = values.to(torch.float32)
    return as32 if torch.equal(as32.to(values.dtype), values) else values


def _qparams(v: Tensor) -> Tensor:
    if v.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scales = v.q_per_channel_scales().to(torch.float64)
        zps = v.q_per_channel_zero_points().to(torch.float64)
        parts = [torch.tensor([float(v.q_per_channel_axis())], dtype=torch.float64), scales]
        if bool(zps.any()):
            parts.append(zps)
        return _exact_float32(torch.cat(parts))
    return _exact_float32(
        torch.tensor([-1.0, v.q_scale(), float(v.q_zero_point())], dtype=torch.float64)
    )


def _dequalify(qp: Tensor, ints: Tensor) -> Tensor:
    """Quantized tensor from integer values and :func:`_qparams` output."""
    qp = qp.to(torch.float64)
    axis = int(qp[0])
    if axis < 0:
        return torch._make_per_tensor_quantized_tensor(ints, float(qp[1]), int(qp[2]))
    c = ints.shape[axis]
    scales = qp[1 : 1 + c]
    zps = qp[1 + c : 1 + 2 * c] if qp.numel() >= 1 + 2 * c else torch.zeros(c, dtype=torch.float64)
    return torch._make_per_channel_quantized_tensor(ints, scales, zps.to(torch.int64), axis)


def _bias_key(weight_key: str) -> str:
    return weight_key[: -len("weight")] + "bias"


def to_plain(
    state: dict, prefix: str, graph: nn.Module, compact: dict[str, SubpixelGeometry]
) -> None:
    """Rewrite, in place, the entries under ``prefix + "graph."`` of a state dict."""
    gp = prefix + "graph."
    scalars = [state.pop(gp + k) for k, _ in scalar_keys(graph) if gp + k in state]
    for key in [k for k in state if k.startswith(gp) and state[k] is None]:
        del state[key]  # a quantized layer without bias saves bias None: implied by its absence
    for key in [k for k in state if k.startswith(gp)]:
        v = state[key]
        if not isinstance(v, Tensor) or not v.is_quantized:
            continue
        del state[key]
        rel = key[len(gp) :]
        ints = v.int_repr()
        if rel in compact:
            ints = compact_subpixel_weight(ints, compact[rel])
            bias = state.get(_bias_key(key))
            s2 = compact[rel].stride ** 2
            if isinstance(bias, Tensor) and bias.numel() % s2 == 0:
                per = bias.reshape(-1, s2)
                if torch.equal(per, per[:, :1].expand_as(per)):
                    state[_bias_key(key)] = per[:, 0].clone()
        state[key + ".int"] = ints
        state[key + ".qparams"] = _qparams(v)
    if scalars:
        state[prefix + SCALARS] = torch.stack([s.reshape(()).to(torch.float64) for s in scalars])


def from_plain(
    state: dict, prefix: str, graph: nn.Module, compact: dict[str, SubpixelGeometry]
) -> None:
    """Inverse of :func:`to_plain` (in place), using ``graph`` for the scalar entries' keys."""
    gp = prefix + "graph."
    packed = state.pop(prefix + SCALARS, None)
    if packed is not None:
        keys = scalar_keys(graph)
        if packed.numel() == len(keys):
            for (k, current), value in zip(keys, packed, strict=True):
                state[gp + k] = value.to(current.dtype).reshape(current.shape)
        else:
            state[prefix + SCALARS] = packed  # let load_state_dict report the mismatch
    for key in [k for k in state if k.startswith(gp) and k.endswith(".int")]:
        base = key[: -len(".int")]
        qp = state.get(base + ".qparams")
        if qp is None:
            continue
        ints = state.pop(key)
        del state[base + ".qparams"]
        rel = base[len(gp) :]
        if rel in compact:
            g = compact[rel]
            ints = expand_subpixel_weight(ints, g)
            bias = state.get(_bias_key(base))
            if isinstance(bias, Tensor) and bias.numel() == g.out_channels:
                state[_bias_key(base)] = bias.repeat_interleave(g.stride**2)
        state[base] = _dequalify(qp, ints)
        bias_key = _bias_key(base)
        if base.endswith(".weight") and bias_key not in state:
            state[bias_key] = None  # a layer without bias (dropped by to_plain)
