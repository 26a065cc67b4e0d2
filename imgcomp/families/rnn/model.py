"""The Toderici et al. 2017 RNN codec, layer for layer as ``1zb/pytorch-image-comp-rnn``.

:class:`EncoderCell` (a strided conv, then three strided ConvLSTMs), :class:`Binarizer`
(``sign(tanh(conv1x1))``, stochastic while training) and :class:`DecoderCell` (a 1x1 conv, four
ConvLSTMs each followed by a 2x pixel shuffle, ``tanh(conv1x1) / 2``) keep the original module
and key names, so the original checkpoints load with ``strict=True``. :class:`TodericiRNN` runs
the residual loop: ``res = x - 0.5``; per iteration encode ``res``, binarize, decode, ``res -=
out``; the reconstruction is ``0.5 + Σ out``. Widths are parameters (original by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgcomp.errors import ImageError
from imgcomp.nn.conv_lstm import ConvLSTMCell, LSTMState

__all__ = [
    "DECODER_WIDTHS",
    "ENCODER_WIDTHS",
    "Binarizer",
    "DecoderCell",
    "EncoderCell",
    "TodericiRNN",
    "build_rnn",
    "scaled_widths",
]

#: The original widths: encoder conv, rnn1..rnn3 hidden; decoder conv1, rnn1..rnn4 hidden.
ENCODER_WIDTHS: tuple[int, ...] = (64, 256, 512, 512)
DECODER_WIDTHS: tuple[int, ...] = (512, 512, 512, 256, 128)
CODE_CHANNELS = 32
MAX_ITERATIONS = 16

States = tuple[LSTMState, ...]


class EncoderCell(nn.Module):
    """conv 3x3/2 (no activation), then three ConvLSTMs with 3x3/2 input and 1x1 hidden convs."""

    def __init__(self, widths: Sequence[int] = ENCODER_WIDTHS) -> None:
        super().__init__()
        c0, h1, h2, h3 = _widths(widths, 4, "encoder")
        self.conv = nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False)
        self.rnn1 = ConvLSTMCell(c0, h1, 3, stride=2, padding=1, hidden_kernel_size=1)
        self.rnn2 = ConvLSTMCell(h1, h2, 3, stride=2, padding=1, hidden_kernel_size=1)
        self.rnn3 = ConvLSTMCell(h2, h3, 3, stride=2, padding=1, hidden_kernel_size=1)

    @property
    def cells(self) -> tuple[ConvLSTMCell, ...]:
        return (self.rnn1, self.rnn2, self.rnn3)

    def zero_states(self, x: Tensor) -> States:
        """Zero states for an input [B, 3, H, W]: at H/4, H/8 and H/16."""
        b, _, h, w = x.shape
        return tuple(
            _zeros(x, b, cell.hidden_channels, h >> s, w >> s)
            for cell, s in zip(self.cells, (2, 3, 4), strict=True)
        )

    def forward(self, x: Tensor, states: States) -> tuple[Tensor, States]:
        x = self.conv(x)
        out = []
        for cell, state in zip(self.cells, states, strict=True):
            state = cell(x, state)
            out.append(state)
            x = state[0]
        return x, tuple(out)


class Binarizer(nn.Module):
    """``sign(tanh(conv1x1(x)))`` in {-1, +1}; while training, +1 with probability (1 + t) / 2
    and a straight-through gradient (the original's stochastic sign)."""

    def __init__(self, in_channels: int = 512, code_channels: int = CODE_CHANNELS) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, code_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        t = torch.tanh(self.conv(x))
        if self.training:
            noise = torch.rand_like(t)
            hard = torch.where((1 - t) / 2 <= noise, 1.0, -1.0).to(t.dtype)
            return t + (hard - t).detach()
        # sign(t), with an exact 0 (never seen in practice) sent to +1 so codes stay binary
        return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


class DecoderCell(nn.Module):
    """conv1 1x1, four ConvLSTMs (3x3 input; hidden 1x1, 1x1, 3x3, 3x3), each followed by a 2x
    pixel shuffle, then ``tanh(conv2 1x1) / 2``."""

    def __init__(
        self, widths: Sequence[int] = DECODER_WIDTHS, code_channels: int = CODE_CHANNELS
    ) -> None:
        super().__init__()
        c0, h1, h2, h3, h4 = _widths(widths, 5, "decoder")
        for name, h in (("rnn1", h1), ("rnn2", h2), ("rnn3", h3), ("rnn4", h4)):
            if h % 4:
                raise ValueError(
                    f"decoder {name} width {h} must be a multiple of 4 (pixel shuffle)"
                )
        self.conv1 = nn.Conv2d(code_channels, c0, 1, bias=False)
        self.rnn1 = ConvLSTMCell(c0, h1, 3, padding=1, hidden_kernel_size=1)
        self.rnn2 = ConvLSTMCell(h1 // 4, h2, 3, padding=1, hidden_kernel_size=1)
        self.rnn3 = ConvLSTMCell(h2 // 4, h3, 3, padding=1, hidden_kernel_size=3)
        self.rnn4 = ConvLSTMCell(h3 // 4, h4, 3, padding=1, hidden_kernel_size=3)
        self.conv2 = nn.Conv2d(h4 // 4, 3, 1, bias=False)

    @property
    def cells(self) -> tuple[ConvLSTMCell, ...]:
        return (self.rnn1, self.rnn2, self.rnn3, self.rnn4)

    def zero_states(self, codes: Tensor) -> States:
        """Zero states for codes [B, C, h, w]: at h, 2h, 4h and 8h."""
        b, _, h, w = codes.shape
        return tuple(
            _zeros(codes, b, cell.hidden_channels, h << s, w << s)
            for cell, s in zip(self.cells, (0, 1, 2, 3), strict=True)
        )

    def forward(self, codes: Tensor, states: States) -> tuple[Tensor, States]:
        x = self.conv1(codes)
        out = []
        for cell, state in zip(self.cells, states, strict=True):
            state = cell(x, state)
            out.append(state)
            x = F.pixel_shuffle(state[0], 2)
        return torch.tanh(self.conv2(x)) / 2, tuple(out)


class TodericiRNN(nn.Module):
    """Encoder, binarizer and decoder with the residual loop (see the module docstring).

    ``analysis`` / ``synthesis`` work on one image: codes are [T, C, H/16, W/16] in {-1, +1},
    one row per iteration. ``forward`` is the training pass: the decoder output of every
    iteration, for the loss on the residuals.
    """

    family: ClassVar[str] = "rnn"
    downsampling_factor: ClassVar[int] = 16
    input_multiple: ClassVar[int] = 32

    def __init__(
        self,
        encoder_widths: Sequence[int] = ENCODER_WIDTHS,
        decoder_widths: Sequence[int] = DECODER_WIDTHS,
        code_channels: int = CODE_CHANNELS,
    ) -> None:
        super().__init__()
        self.encoder_widths = _widths(encoder_widths, 4, "encoder")
        self.decoder_widths = _widths(decoder_widths, 5, "decoder")
        self.code_channels = int(code_channels)
        if self.code_channels <= 0:
            raise ValueError(f"code_channels must be positive, got {code_channels}")
        self.encoder = EncoderCell(self.encoder_widths)
        self.binarizer = Binarizer(self.encoder_widths[-1], self.code_channels)
        self.decoder = DecoderCell(self.decoder_widths, self.code_channels)
        #: the learned code model: P(+1) 16-bit frequencies [C, buckets, contexts] of
        #: :mod:`imgcomp.entropy.binary_context`; empty: none (streams use the adaptive model)
        self.register_buffer("code_model", torch.zeros(0, dtype=torch.int32))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, *rest):
        key = prefix + "code_model"
        present = key in state_dict
        if present:  # its size is the table's, not fixed by the architecture
            self.code_model = torch.zeros_like(state_dict[key], dtype=torch.int32)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, *rest)
        if not present and key in missing:  # a model without a code model is a valid model
            missing.remove(key)
            self.code_model = torch.zeros(0, dtype=torch.int32)

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this model: ``TodericiRNN(**config)``."""
        return {
            "encoder_widths": list(self.encoder_widths),
            "decoder_widths": list(self.decoder_widths),
            "code_channels": self.code_channels,
        }

    @property
    def components(self) -> dict[str, list[nn.Module]]:
        """Component name -> submodules: encoder, binarizer, decoder."""
        return {"encoder": [self.encoder], "binarizer": [self.binarizer], "decoder": [self.decoder]}

    def check_input(self, x: Tensor) -> None:
        """Refuse inputs that are not [B, 3, H, W] with sides multiples of 16."""
        f = self.downsampling_factor
        if x.dim() != 4 or x.size(1) != 3 or x.size(2) % f or x.size(3) % f:
            raise ImageError(
                f"RNN input must be [B, 3, H, W] with H, W multiples of {f}, got {list(x.shape)}"
            )

    def iterate(self, x: Tensor, iterations: int):
        """The residual loop on ``x`` [B, 3, H, W] in [0, 1]: ``(codes, decoder output)`` of each
        iteration (``res = x - 0.5``; encode ``res``, binarize, decode, ``res -= out``)."""
        self.check_input(x)
        _check_iterations(iterations)
        res = x - 0.5
        enc = self.encoder.zero_states(x)
        dec = None
        for _ in range(iterations):
            encoded, enc = self.encoder(res, enc)
            codes = self.binarizer(encoded)
            if dec is None:
                dec = self.decoder.zero_states(codes)
            out, dec = self.decoder(codes, dec)
            res = res - out
            yield codes, out

    def forward(self, x: Tensor, iterations: int) -> list[Tensor]:
        """Training pass: the decoder output of each of ``iterations`` residual iterations."""
        return [out for _, out in self.iterate(x, iterations)]

    def analysis(self, x: Tensor, iterations: int = 16) -> Tensor:
        """The codes [T, C, h, w] of one image [1, 3, H, W] in [0, 1] (encoder, binarizer and
        decoder in the loop, as the original ``encoder.py``)."""
        if x.dim() == 4 and x.size(0) != 1:
            raise ImageError(f"analysis codes one image at a time, got a batch of {x.size(0)}")
        return torch.cat([codes for codes, _ in self.iterate(x, iterations)])

    def synthesis(self, codes: Tensor) -> Tensor:
        """``0.5 + Σ out`` [1, 3, H, W] (not clipped) of the codes [T, C, h, w] of one image."""
        recon = None
        for out in self.decode_iterations(codes):
            recon = out + 0.5 if recon is None else recon + out
        if recon is None:
            raise ValueError("synthesis needs at least one iteration of codes")
        return recon

    def decode_iterations(self, codes: Tensor):
        """The decoder output of each iteration of ``codes`` [T, C, h, w], in order."""
        if codes.dim() != 4 or codes.size(1) != self.code_channels:
            raise ValueError(
                f"codes must be [T, {self.code_channels}, h, w], got {list(codes.shape)}"
            )
        dec = self.decoder.zero_states(codes[:1])
        for t in range(codes.size(0)):
            out, dec = self.decoder(codes[t : t + 1], dec)
            yield out


def scaled_widths(width: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The original encoder and decoder widths times ``width``, as multiples of 4 (>= 4)."""
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"width must be a number in (0, 4], got {width!r}")

    def scale(c: int) -> int:
        return max(4, round(c * width / 4) * 4)

    return tuple(map(scale, ENCODER_WIDTHS)), tuple(map(scale, DECODER_WIDTHS))


def build_rnn(width: float = 1.0, code_channels: int = CODE_CHANNELS) -> TodericiRNN:
    """A fresh model at ``width`` times the original widths."""
    enc, dec = scaled_widths(width)
    return TodericiRNN(enc, dec, code_channels)


def _widths(widths: Sequence[int], n: int, what: str) -> tuple[int, ...]:
    out = tuple(int(w) for w in widths)
    if len(out) != n or any(w <= 0 for w in out) or any(int(w) != w for w in widths):
        raise ValueError(f"{what} widths must be {n} positive integers, got {list(widths)}")
    return out


def _zeros(like: Tensor, b: int, c: int, h: int, w: int) -> LSTMState:
    z = like.new_zeros(b, c, h, w)
    return z, z.clone()


def _check_iterations(iterations: int) -> None:
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, int)
        or not (1 <= iterations <= MAX_ITERATIONS)
    ):
        raise ValueError(
            f"iterations must be an integer in 1..{MAX_ITERATIONS}, got {iterations!r}"
        )
