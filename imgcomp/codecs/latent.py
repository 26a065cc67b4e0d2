"""Latent codecs: how a learned model's latents become payload sections of a stream, and back.

CompressAI's ``LatentCodec`` idea: the model's transforms map an image to latents and latents to
an image; a latent codec quantizes the latents, entropy-codes them with constriction
(:mod:`imgcomp.entropy`) into one or more sections and rebuilds the quantized latents from
those sections. :class:`imgcomp.codecs.learned.LearnedCodec` is generic over them.

* :class:`FactorizedLatent` - one section: ``y`` under a per-channel factorized density.
* :class:`HyperpriorLatent` - three sections: ``z`` (factorized density), ``y`` (Gaussian
  conditional through a scale table, entropy parameters computed on one CPU thread) and a
  4-byte CRC32 of the scale-table indexes, so a decoder whose entropy parameters differ from the
  encoder's fails with CodecMismatchError instead of decoding garbage. Options: ``rounding``
  (``"round"``: ``torch.round``, halves to even; ``"floor_half"``: ``floor(v + 0.5)``, HiFiC's),
  ``z_offset`` (``"median"``: z quantized around the density's medians, Ballé;
  ``"zero"``: ``q(z)``, HiFiC's ``floor(z + 0.5)``) and ``mean_offset`` (True: ``y_hat =
  q(y - mu) + mu``; False: ``y_hat = q(y)``, coded as ``q(y) - q(mu)``) and ``pad_y`` (HiFiC:
  y reflect-padded to a multiple of z's stride before coding; the latents keep that size).
* :class:`BinaryLatent` - one section per iteration of binary codes in {-1, +1} (the Toderici
  RNN), each under a fixed, per-channel or adaptive Bernoulli model, or a context model
  (:mod:`imgcomp.entropy.binary_context`): a stream holding only the first k sections decodes
  to k iterations.

Every ``decode`` takes untrusted sections: counts and lengths are checked and anything malformed
raises :class:`BitstreamError`, never a foreign exception.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from imgcomp.entropy import BinaryCoder, FactorizedCoder, GaussianCoder, categorical_model
from imgcomp.entropy.binary_context import ContextBitCoder
from imgcomp.entropy.stream import (
    close_decoder,
    decoding_errors,
    new_encoder,
    open_decoder,
    to_bytes,
)
from imgcomp.errors import BitstreamError, CodecMismatchError
from imgcomp.nn.density import FactorizedDensity, GaussianConditional

__all__ = [
    "INDEX_CHECK_SIZE",
    "BinaryLatent",
    "FactorizedLatent",
    "HyperpriorLatent",
    "LatentCodec",
    "LatentFactory",
    "Quantized",
    "Rounding",
    "index_check",
    "quantize_values",
]

Rounding = Literal["round", "floor_half"]
ROUNDINGS: tuple[str, ...] = ("round", "floor_half")
#: Bytes of the hyperprior's scale-table index checksum section.
INDEX_CHECK_SIZE = 4


@dataclass(frozen=True)
class Quantized:
    """The model's own eval-mode quantization of its latents: ``latents`` (what the synthesis
    transform gets) and the likelihoods of what is coded, hyper-latents first."""

    latents: Tensor
    likelihoods: tuple[Tensor, ...]


@runtime_checkable
class LatentCodec(Protocol):
    """Latents <-> payload sections; ``stride`` is the coded latents' downsampling factor
    relative to the padded model input (it gives their spatial size at decode time)."""

    stride: int

    def quantize(self, y: Tensor) -> Quantized:
        """Eval-mode quantization and likelihoods of ``y`` (no coding): the rate estimate and
        the reconstruction decode must equal."""
        ...

    def encode(self, y: Tensor) -> list[bytes]:
        """Entropy-code the quantized ``y`` into payload sections."""
        ...

    def decode(
        self, sections: Sequence[bytes], hw: tuple[int, int], device: torch.device
    ) -> Tensor:
        """The quantized latents (spatial size ``hw``) from untrusted sections; BitstreamError
        on a wrong count, length or payload."""
        ...

    def tables(self) -> Iterator[np.ndarray]:
        """The integer frequency tables both sides code with (they enter the fingerprint)."""
        ...


#: What a codec is given to build its latent codec from its (possibly modified) model.
LatentFactory = Callable[[torch.nn.Module], LatentCodec]


def quantize_values(v: Tensor, rounding: Rounding) -> Tensor:
    """``round(v)`` (halves to even) or ``floor(v + 0.5)`` (halves up, HiFiC), as floats."""
    if rounding == "round":
        return torch.round(v)
    if rounding == "floor_half":
        return torch.floor(v + 0.5)
    raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def index_check(indexes: np.ndarray) -> bytes:
    """4-byte CRC32 of the scale-table indexes: the decoder rebuilds them from z and compares, so
    entropy parameters that differ from the encoder's fail loudly instead of decoding garbage."""
    data = np.ascontiguousarray(indexes, dtype="<i4").tobytes()
    return zlib.crc32(data).to_bytes(INDEX_CHECK_SIZE, "little")


def factorized_coder(density: FactorizedDensity) -> FactorizedCoder:
    """The exact integer coder of a factorized density's pmf table (one table per channel)."""
    table = density.pmf_table()
    pmfs = [table.pmf[c, : int(n)] for c, n in enumerate(table.length)]
    return FactorizedCoder.from_pmfs(pmfs, table.lo, table.tail_mass)


def _check_count(kind: str, sections: Sequence[bytes], expected: int) -> None:
    if len(sections) != expected:
        raise BitstreamError(f"{kind} stream must have {expected} sections, has {len(sections)}")


def _check_hw(hw: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in hw)
    if h <= 0 or w <= 0:
        raise BitstreamError(f"latent size {h}x{w} is empty")
    return h, w


class _Factorized:
    """A factorized density quantized around an offset (its medians, or zero) and coded."""

    def __init__(self, density: FactorizedDensity, rounding: Rounding, median: bool) -> None:
        quantize_values(torch.zeros(()), rounding)  # validates the option
        self.density, self.rounding, self.median = density, rounding, median
        self._coder: FactorizedCoder | None = None

    @property
    def coder(self) -> FactorizedCoder:
        if self._coder is None:
            self._coder = factorized_coder(self.density)
        return self._coder

    def _offset(self, v: Tensor) -> Tensor | None:
        return self.density.medians.reshape(1, -1, *([1] * (v.dim() - 2))) if self.median else None

    def quantize(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """(symbols as floats, v_hat)."""
        m = self._offset(v)
        if m is None:
            q = quantize_values(v, self.rounding)
            return q, q
        q = quantize_values(v - m, self.rounding)
        return q, q + m

    def dequantize(self, symbols: Tensor) -> Tensor:
        m = self._offset(symbols)
        return symbols.to(torch.float32) if m is None else symbols.to(m.dtype) + m

    def encode(self, v: Tensor) -> bytes:
        q, _ = self.quantize(v)
        return self.coder.encode(q.to(torch.int32)[0].cpu().numpy())

    def decode(self, data: bytes, shape: tuple[int, int, int], device: torch.device) -> Tensor:
        symbols = self.coder.decode(data, shape)
        return self.dequantize(torch.from_numpy(symbols)[None].to(device))


class FactorizedLatent:
    """``y`` [1, C, h, w] under a per-channel factorized density: one section (Ballé 2018)."""

    def __init__(
        self, density: FactorizedDensity, stride: int = 16, rounding: Rounding = "round"
    ) -> None:
        self.stride = int(stride)
        self._y = _Factorized(density, rounding, median=True)

    @property
    def coders(self) -> tuple[FactorizedCoder]:
        """The entropy coder (built once)."""
        return (self._y.coder,)

    def tables(self) -> Iterator[np.ndarray]:
        """The per-channel frequency tables."""
        yield from self._y.coder.freqs

    def quantize(self, y: Tensor) -> Quantized:
        """``q(y - median) + median`` and its likelihood."""
        _, y_hat = self._y.quantize(y)
        return Quantized(y_hat, (self._y.density.likelihood(y_hat),))

    def encode(self, y: Tensor) -> list[bytes]:
        """One section: the symbols ``q(y - median)``."""
        return [self._y.encode(y)]

    def decode(
        self, sections: Sequence[bytes], hw: tuple[int, int], device: torch.device
    ) -> Tensor:
        """``symbols + median`` from the one section."""
        _check_count("factorized", sections, 1)
        shape = (self._y.density.channels, *_check_hw(hw))
        return self._y.decode(sections[0], shape, device)


class HyperpriorLatent:
    """``z = hyper_analysis(y)`` under a factorized density, ``y`` under a Gaussian conditional
    whose scales (and means) ``entropy_parameters(z_hat)`` gives: sections z, y, index check.

    ``entropy_parameters`` must be deterministic across thread counts (one CPU thread, as
    ``_Hyperprior.entropy_parameters`` is); ``hyper_stride`` is z's downsampling relative to y.
    With ``pad_y`` the decoded latents have y's padded size (the synthesis output is cropped).
    """

    def __init__(
        self,
        hyper_analysis: Callable[[Tensor], Tensor],
        z_density: FactorizedDensity,
        entropy_parameters: Callable[[Tensor], tuple[Tensor, Tensor | None]],
        y_conditional: GaussianConditional,
        *,
        stride: int = 16,
        hyper_stride: int = 4,
        rounding: Rounding = "round",
        z_offset: Literal["median", "zero"] = "median",
        mean_offset: bool = True,
        pad_y: bool = False,
    ) -> None:
        if z_offset not in ("median", "zero"):
            raise ValueError(f"z_offset must be 'median' or 'zero', got {z_offset!r}")
        self.stride, self.hyper_stride = int(stride), int(hyper_stride)
        self.rounding, self.z_offset, self.mean_offset = rounding, z_offset, bool(mean_offset)
        self.pad_y = bool(pad_y)
        self.hyper_analysis = hyper_analysis
        self.entropy_parameters = entropy_parameters
        self.y_conditional = y_conditional
        self._z = _Factorized(z_density, rounding, median=z_offset == "median")
        self._y_coder: GaussianCoder | None = None

    # -- coders --------------------------------------------------------------------------------
    @property
    def coders(self) -> tuple[FactorizedCoder, GaussianCoder]:
        """(z coder, y coder), built once."""
        if self._y_coder is None:
            gc = self.y_conditional
            table = gc.scale_table.detach().cpu().double().numpy()
            self._y_coder = GaussianCoder(table, tail_mass=gc.tail_mass)
        return self._z.coder, self._y_coder

    def tables(self) -> Iterator[np.ndarray]:
        """z's per-channel tables, then one Gaussian table per scale level."""
        for coder in self.coders:
            yield from coder.freqs

    # -- quantization --------------------------------------------------------------------------
    def _y_symbols(self, y: Tensor, means: Tensor | None) -> tuple[Tensor, Tensor]:
        """(symbols as floats, y_hat) of ``y`` given the means."""
        if means is None:
            q = quantize_values(y, self.rounding)
            return q, q
        if self.mean_offset:
            q = quantize_values(y - means, self.rounding)
            return q, q + means
        y_hat = quantize_values(y, self.rounding)
        return y_hat - quantize_values(means, self.rounding), y_hat

    def _y_hat(self, symbols: Tensor, means: Tensor | None) -> Tensor:
        if means is None:
            return symbols.to(torch.float32)
        if self.mean_offset:
            return symbols.to(means.dtype) + means
        return symbols.to(means.dtype) + quantize_values(means, self.rounding)

    def _pad(self, y: Tensor) -> Tensor:
        """``y`` padded bottom/right to multiples of ``hyper_stride`` if ``pad_y`` (reflect, as
        HiFiC; replicate where a side is too short to reflect), else ``y``."""
        k = self.hyper_stride
        ph, pw = -y.size(-2) % k, -y.size(-1) % k
        if not self.pad_y or not (ph or pw):
            return y
        short = ph >= y.size(-2) or pw >= y.size(-1)
        return F.pad(y, (0, pw, 0, ph), mode="replicate" if short else "reflect")

    def _hyper(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(z symbols as floats, z_hat, scales, means)."""
        z_sym, z_hat = self._z.quantize(self.hyper_analysis(y))
        scales, means = self.entropy_parameters(z_hat)
        return z_sym, z_hat, scales, means

    def quantize(self, y: Tensor) -> Quantized:
        """``y_hat`` and the likelihoods of ``z_hat`` and ``y_hat`` (in that order)."""
        y = self._pad(y)
        _, z_hat, scales, means = self._hyper(y)
        _, y_hat = self._y_symbols(y, means)
        z_lik = self._z.density.likelihood(z_hat)
        return Quantized(y_hat, (z_lik, self.y_conditional.likelihood(y_hat, scales, means)))

    # -- coding --------------------------------------------------------------------------------
    def encode(self, y: Tensor) -> list[bytes]:
        """Sections z, y (grouped by scale-table index) and the 4-byte index checksum."""
        z_coder, y_coder = self.coders
        y = self._pad(y)
        z_sym, _, scales, means = self._hyper(y)
        y_sym, _ = self._y_symbols(y, means)
        indexes = self.y_conditional.build_indexes(scales)[0].cpu().numpy()
        z_bytes = z_coder.encode(z_sym.to(torch.int32)[0].cpu().numpy())
        y_flat = y_sym.to(torch.int32)[0].cpu().numpy().reshape(-1)
        y_bytes = y_coder.encode(y_flat, indexes.reshape(-1))
        return [z_bytes, y_bytes, index_check(indexes)]

    def decode(
        self, sections: Sequence[bytes], hw: tuple[int, int], device: torch.device
    ) -> Tensor:
        """z, then the entropy parameters, the index check, then y."""
        _check_count("hyperprior", sections, 3)
        if len(sections[2]) != INDEX_CHECK_SIZE:
            raise BitstreamError(
                f"index checksum section has {len(sections[2])} bytes, not {INDEX_CHECK_SIZE}"
            )
        h, w = _check_hw(hw)
        y_coder = self.coders[1]
        k = self.hyper_stride
        if self.pad_y:
            h, w = -(-h // k) * k, -(-w // k) * k
        z_shape = (self._z.density.channels, -(-h // k), -(-w // k))
        z_hat = self._z.decode(sections[0], z_shape, device)
        scales, means = self.entropy_parameters(z_hat)
        indexes = self.y_conditional.build_indexes(scales)[0].cpu().numpy()
        if indexes.shape[1:] != (h, w):
            raise BitstreamError(f"entropy parameters of {indexes.shape[1:]}, latents of {(h, w)}")
        if index_check(indexes) != sections[2]:
            raise CodecMismatchError(
                "this decoder's entropy parameters differ from the encoder's (scale-table "
                "index checksum mismatch): the stream is corrupt, or this machine's float "
                "arithmetic does not reproduce the encoder's hyperprior (another CPU "
                "instruction set or device); decode where it was encoded"
            )
        y_sym = y_coder.decode(sections[1], indexes.reshape(-1)).reshape(indexes.shape)
        y_sym_t = torch.from_numpy(np.ascontiguousarray(y_sym))[None].to(device)
        return self._y_hat(y_sym_t, means)


#: Frequency precision of the binary models (P(+1) in units of 2**-16).
_BIT_PRECISION = 16


def _bit_freq(p: float) -> int:
    """P(+1) as a 16-bit frequency in [1, 2**16 - 1]."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a bit probability must lie in (0, 1), got {p}")
    return min(max(round(p * (1 << _BIT_PRECISION)), 1), (1 << _BIT_PRECISION) - 1)


class BinaryLatent:
    """Iterative binary codes [T, C, h, w] in {-1, +1} (the Toderici RNN): one section per
    iteration, so the first k sections decode to the first k iterations exactly.

    ``probability`` is P(code = +1): one float for every bit, ``C`` floats (one per channel), or
    None for an adaptive model (each section carries its own estimate, :class:`BinaryCoder`).
    Fixed probabilities are quantized to 16-bit frequencies, which enter the fingerprint.
    """

    def __init__(
        self,
        channels: int,
        probability: float | Sequence[float] | None = 0.5,
        *,
        stride: int = 16,
        max_iterations: int = 16,
        context: ContextBitCoder | None = None,
    ) -> None:
        if channels <= 0 or max_iterations <= 0:
            raise ValueError(f"channels and max_iterations must be positive ({channels})")
        self.channels, self.stride = int(channels), int(stride)
        self.max_iterations = int(max_iterations)
        if context is not None and context.channels != self.channels:
            raise ValueError(f"context model of {context.channels} channels for {channels}")
        self.context = context
        self._freqs: list[np.ndarray] | None = None
        if probability is not None:
            probs = np.broadcast_to(np.asarray(probability, dtype=np.float64), (self.channels,))
            q = [_bit_freq(float(p)) for p in probs]
            self._freqs = [np.array([(1 << _BIT_PRECISION) - f, f], np.int64) for f in q]
            self._models = [categorical_model(f, _BIT_PRECISION) for f in self._freqs]
            self._p_one = torch.tensor([f / (1 << _BIT_PRECISION) for f in q], dtype=torch.float64)

    def tables(self) -> Iterator[np.ndarray]:
        """Per-channel [P(-1), P(+1)] frequency tables (none for the adaptive models), or the
        learned context model's."""
        if self.context is not None:
            freqs = getattr(self.context, "freqs", None)
            if freqs is not None:
                yield np.ascontiguousarray(freqs)
            return
        yield from self._freqs or []

    def _check_codes(self, codes: Tensor) -> Tensor:
        if codes.dim() != 4 or codes.size(1) != self.channels:
            raise ValueError(f"codes must be [T, {self.channels}, h, w], got {list(codes.shape)}")
        if not 1 <= codes.size(0) <= self.max_iterations:
            raise ValueError(f"1..{self.max_iterations} iterations, got {codes.size(0)}")
        if not bool(((codes == 1) | (codes == -1)).all()):
            raise ValueError("binary codes must be -1 or +1")
        return codes

    def quantize(self, y: Tensor) -> Quantized:
        """The codes themselves and each bit's probability under the model (0.5 adaptive)."""
        codes = self._check_codes(y)
        if self.context is not None:
            bits = self.context.bits(codes.cpu().numpy())
            return Quantized(codes, (torch.from_numpy(np.exp2(-bits)),))
        if self._freqs is None:
            return Quantized(codes, (torch.full(codes.shape, 0.5, dtype=torch.float64),))
        p = self._p_one.to(codes.device).reshape(1, -1, 1, 1)
        return Quantized(codes, (torch.where(codes > 0, p, 1 - p),))

    def encode(self, y: Tensor) -> list[bytes]:
        """One section per iteration (channel by channel, C-order within a channel)."""
        if self.context is not None:
            return self.context.encode(self._check_codes(y).cpu().numpy())
        bits = (self._check_codes(y) > 0).to(torch.int32).cpu().numpy()
        return [self._encode_iteration(it) for it in bits]

    def _encode_iteration(self, bits: np.ndarray) -> bytes:
        if self._freqs is None:
            return BinaryCoder().encode(bits)
        coder = new_encoder()
        for c in range(self.channels - 1, -1, -1):  # a stack: the last channel goes in first
            coder.encode_reverse(np.ascontiguousarray(bits[c].reshape(-1)), self._models[c])
        return to_bytes(coder)

    def _decode_iteration(self, data: bytes, n: int) -> np.ndarray:
        if self._freqs is None:
            return BinaryCoder().decode(data, self.channels * n).reshape(self.channels, n)
        coder = open_decoder(data)
        with decoding_errors():
            out = np.stack([coder.decode(m, n) for m in self._models])
            close_decoder(coder)
        return out

    def decode(
        self, sections: Sequence[bytes], hw: tuple[int, int], device: torch.device
    ) -> Tensor:
        """The codes [k, C, h, w] of the k sections present (1 <= k <= max_iterations)."""
        if not 1 <= len(sections) <= self.max_iterations:
            raise BitstreamError(
                f"binary stream must have 1..{self.max_iterations} sections (one per "
                f"iteration), has {len(sections)}"
            )
        h, w = _check_hw(hw)
        if self.context is not None:
            codes = self.context.decode(sections, h, w)
            return torch.from_numpy(codes.astype(np.float32)).to(device)
        its = [self._decode_iteration(s, h * w) for s in sections]
        bits = torch.from_numpy(np.stack(its).astype(np.float32)).reshape(-1, self.channels, h, w)
        return (bits * 2 - 1).to(device)
