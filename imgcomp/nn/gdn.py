"""Generalized divisive normalization (Ballé et al. 2016) with the lower-bounded reparametrisation.

GDN computes ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; the inverse (IGDN) multiplies by
the square root instead. ``beta`` and ``gamma`` are kept in *stored* form ``p`` and used as
``max(p, bound)**2 - pedestal`` so that they stay non-negative (beta stays above ``beta_min``)
while gradients keep flowing - the same form learned-codec checkpoints store.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BETA_MIN",
    "GDN",
    "PEDESTAL",
    "LowerBoundFunction",
    "NonNegative",
    "gdn_channels_last_",
    "lower_bound",
]

#: Squared reparametrisation offset (2**-18)**2 = 2**-36; subtracted after squaring.
PEDESTAL: float = 2.0**-36
#: Smallest effective beta (keeps the normaliser away from 0).
BETA_MIN: float = 1e-6
#: Pixels per block of :func:`gdn_channels_last_` (a block's squares and norms stay in cache).
GDN_BLOCK_PIXELS = 2048


class LowerBoundFunction(torch.autograd.Function):
    """``max(x, bound)`` whose gradient passes where ``x >= bound`` or where it would raise ``x``.

    A plain ``max`` kills the gradient below the bound, so a parameter stuck there could never
    come back; this is Ballé's ``lower_bound`` op (gradient descent raises ``x`` when grad < 0).
    """

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:  # type: ignore[override]
        bound = bound.to(dtype=x.dtype, device=x.device)
        ctx.save_for_backward(x, bound)
        return torch.maximum(x, bound)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        x, bound = ctx.saved_tensors
        passes = (x >= bound) | (grad_output < 0)
        return grad_output * passes.to(grad_output.dtype), None


def lower_bound(x: Tensor, bound: Tensor | float) -> Tensor:
    """Apply :class:`LowerBoundFunction`; ``bound`` is a float or a broadcastable tensor."""
    if not isinstance(bound, Tensor):
        bound = torch.tensor(float(bound), dtype=x.dtype, device=x.device)
    return LowerBoundFunction.apply(x, bound)


class NonNegative(nn.Module):
    """Reparametrisation ``stored -> max(stored, sqrt(minimum + pedestal))**2 - pedestal``.

    The constants live in non-persistent buffers (they are fixed by ``minimum`` and never trained),
    so they follow the module across devices without appearing in our state_dict.
    """

    def __init__(self, minimum: float = 0.0, pedestal: float = PEDESTAL) -> None:
        super().__init__()
        self.minimum = float(minimum)
        self.pedestal_value = float(pedestal)
        self.register_buffer("pedestal", torch.tensor([pedestal]), persistent=False)
        self.register_buffer(
            "bound", torch.tensor([math.sqrt(minimum + pedestal)]), persistent=False
        )

    def stored_from_effective(self, value: Tensor) -> Tensor:
        """Stored form whose effective value is ``value`` (values below ``minimum`` clamp to it)."""
        ped = self.pedestal.to(value)
        return torch.sqrt(torch.maximum(value + ped, ped))

    def forward(self, stored: Tensor) -> Tensor:
        """Effective (non-negative) value of a stored parameter."""
        return lower_bound(stored, self.bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """GDN over the channel dimension of NCHW tensors; ``inverse=True`` gives IGDN.

    Parameters (stored form): ``beta`` [C] and ``gamma`` [C, C]. Training initialisation gives
    effective ``beta = 1`` and ``gamma = gamma_init * I``.
    """

    def __init__(
        self,
        channels: int,
        inverse: bool = False,
        beta_min: float = BETA_MIN,
        gamma_init: float = 0.1,
    ) -> None:
        super().__init__()
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels = int(channels)
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegative(minimum=beta_min)
        self.gamma_reparam = NonNegative(minimum=0.0)
        beta = self.beta_reparam.stored_from_effective(torch.ones(channels))
        gamma = self.gamma_reparam.stored_from_effective(gamma_init * torch.eye(channels))
        self.beta = nn.Parameter(beta)
        self.gamma = nn.Parameter(gamma)

    def effective_beta(self) -> Tensor:
        """Effective beta [C] (>= beta_min)."""
        return self.beta_reparam(self.beta)

    def effective_gamma(self) -> Tensor:
        """Effective gamma [C, C] (>= 0)."""
        return self.gamma_reparam(self.gamma)

    def forward(self, x: Tensor) -> Tensor:
        c = self.channels
        if x.dim() != 4 or x.size(1) != c:
            raise ValueError(f"GDN expects [B,{c},H,W], got {list(x.shape)}")
        gamma = self.effective_gamma().reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, self.effective_beta())
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))

    def extra_repr(self) -> str:
        return f"{self.channels}, inverse={self.inverse}"


def gdn_channels_last_(
    x: Tensor, gamma_t: Tensor, beta: Tensor, inverse: bool, block: int = GDN_BLOCK_PIXELS
) -> Tensor:
    """GDN (IGDN if ``inverse``) of a channels_last [B, C, H, W] tensor, in place, ``block``
    pixels at a time: per block ``x * rsqrt(beta + x**2 @ gamma_t)`` (``gamma_t`` the effective
    gamma transposed, [C, C]), the 1x1 convolution on squares as one matrix product, without
    the three full-size temporaries of :meth:`GDN.forward`."""
    c = x.size(1)
    if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError(f"expected a channels_last [B,{c},H,W] tensor, got {list(x.shape)}")
    flat = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view: channels_last is [B*H*W, C]
    rows = min(block, flat.size(0))
    squares = flat.new_empty((rows, c))
    norm = flat.new_empty((rows, c))
    for start in range(0, flat.size(0), rows):
        part = flat[start : start + rows]
        n = part.size(0)
        sq, nm = squares[:n], norm[:n]
        torch.mul(part, part, out=sq)
        torch.addmm(beta, sq, gamma_t, out=nm)
        part.mul_(nm.sqrt_() if inverse else nm.rsqrt_())
    return x
