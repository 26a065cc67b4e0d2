"""The convolutional LSTM cell of the Toderici RNN codec (``1zb/pytorch-image-comp-rnn``).

``gates = conv_ih(x) + conv_hh(h)`` split into input, forget, cell and output gates (that order);
``c' = σ(f)·c + σ(i)·tanh(g)``, ``h' = σ(o)·tanh(c')``. ``conv_hh`` has stride 1 and "same"
padding. Weights are [4·hidden, in, k, k]: hidden channel ``j`` lives in gate rows
``j, H+j, 2H+j, 3H+j`` (what structured pruning slices).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConvLSTMCell", "LSTMState"]

LSTMState = tuple[Tensor, Tensor]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: ``(x, (h, c)) -> (h', c')``; ``conv_ih`` carries the stride."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        hidden_kernel_size: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or hidden_channels <= 0:
            raise ValueError(f"channels must be positive, got {in_channels}, {hidden_channels}")
        self.hidden_channels = int(hidden_channels)
        self.conv_ih = nn.Conv2d(
            in_channels, 4 * hidden_channels, kernel_size, stride, padding, bias=bias
        )
        self.conv_hh = nn.Conv2d(
            hidden_channels,
            4 * hidden_channels,
            hidden_kernel_size,
            1,
            hidden_kernel_size // 2,
            bias=bias,
        )

    def forward(self, x: Tensor, state: LSTMState) -> LSTMState:
        h, c = state[0], state[1]  # indexed, not unpacked: FX can trace it (int8)
        gates = self.conv_ih(x) + self.conv_hh(h)
        i, f, g, o = gates.chunk(4, 1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        return h_next, c_next

    def zero_state(self, x_out: Tensor) -> LSTMState:
        """Zero (h, c) shaped like this cell's output for ``x_out`` ([B, *, h, w] at its scale)."""
        b, _, height, width = x_out.shape
        z = x_out.new_zeros(b, self.hidden_channels, height, width)
        return z, z.clone()
