"""``toderici2017`` (alias ``rnn``): the RNN codec as a progressive stream codec.

    create_codec("toderici2017", iterations=3)                       # shipped weights
    load_codec("toderici2017", checkpoint=".../encoder_epoch_00000066.pth", format="original")
    create_codec("toderici2017", pretrained=False, width=0.25)       # seeded random (timing)

A stream holds one section per iteration (0.125 bpp each before entropy coding), so
:func:`imgcomp.truncate` cuts a 16-iteration stream to any lower rate. ``iterations`` is the
one parameter that does not enter the fingerprint: a decoder built for any iteration count
decodes every stream of the same model, and a truncated stream is byte-identical to one encoded
at that count. :meth:`RNNCodec.encode_npz` / :meth:`RNNCodec.decode_npz` speak the original
tools' code files.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

import numpy as np
import torch
from torch import nn

from imgcomp.bitstream import FINGERPRINT_SIZE, ParamValue, StreamHeader
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import BitstreamError, ImgcompError
from imgcomp.families.rnn.model import MAX_ITERATIONS, TodericiRNN, build_rnn
from imgcomp.families.weights import load_family_model
from imgcomp.images import validate_rgb8
from imgcomp.registry import register_codec

__all__ = ["NAME", "RNNCodec", "load_rnn_model"]

NAME = "toderici2017"


class RNNCodec(LearnedCodec):
    """A :class:`LearnedCodec` whose analysis runs ``params["iterations"]`` iterations."""

    def __init__(self, model: nn.Module, name: str, params: dict[str, ParamValue], **kwargs):
        super().__init__(model, name, params, **kwargs)
        self.iterations = _check_iterations(self.params.get("iterations"))

    @property
    def fingerprint(self) -> bytes:
        """Name, params except ``iterations``, model material (see the module docstring)."""
        h = hashlib.blake2b(digest_size=FINGERPRINT_SIZE)
        h.update(self.name.encode())
        rest = {k: v for k, v in self.params.items() if k != "iterations"}
        h.update(repr(sorted(rest.items())).encode())
        h.update(self.fingerprint_material())
        return h.digest()

    def with_iterations(self, iterations: int) -> RNNCodec:
        """The same model at another iteration count (same fingerprint, shared model)."""
        codec = type(self)(
            self.model,
            self.name,
            {**self.params, "iterations": iterations},
            device=self.device,
            ops=self.ops,
            latent=self.latent_factory,
        )
        codec._fingerprint_cache = self._fingerprint_cache
        return codec

    def _analysis(self, img: np.ndarray) -> torch.Tensor:
        return self.model.analysis(self._to_input(img), self.iterations)

    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        if header.params.get("iterations") != len(sections):
            raise BitstreamError(
                f"stream says iterations={header.params.get('iterations')!r} but holds "
                f"{len(sections)} sections"
            )
        return super().decode_sections(sections, header)

    # -- the original tools' code files -------------------------------------------------------
    @torch.inference_mode()
    def encode_npz(self, img: np.ndarray) -> bytes:
        """The original ``encoder.py``'s code file of ``img``: ``np.savez`` of ``shape`` (T, 1,
        C, h, w) and ``codes`` (``np.packbits`` of the codes as 0/1) of the image padded to 32."""
        codes = self._analysis(validate_rgb8(img)).cpu().numpy()
        bits = ((codes.astype(np.int8) + 1) // 2).astype(np.int8)[:, None]
        out = io.BytesIO()
        np.savez(out, shape=np.array(bits.shape), codes=np.packbits(bits.reshape(-1)))
        return out.getvalue()

    @torch.inference_mode()
    def decode_npz(self, data: bytes) -> np.ndarray:
        """The image (uint8, the padded size 16h x 16w) of an original code file."""
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as f:
                shape, packed = np.asarray(f["shape"]), np.asarray(f["codes"])
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise BitstreamError(
                f"not an RNN code file (npz with shape and codes): {exc}"
            ) from None
        c = self.model.code_channels
        if (
            shape.shape != (5,)
            or not np.issubdtype(shape.dtype, np.integer)
            or not 1 <= int(shape[0]) <= MAX_ITERATIONS
            or int(shape[1]) != 1
            or int(shape[2]) != c
            or not (1 <= int(shape[3]) <= 4096 and 1 <= int(shape[4]) <= 4096)
        ):
            raise BitstreamError(f"code file shape {shape.tolist()} is not (1..16, 1, {c}, h, w)")
        n = int(np.prod(shape.astype(np.int64)))
        if packed.dtype != np.uint8 or packed.shape != (-(-n // 8),):
            raise BitstreamError(
                f"code file holds {packed.size} bytes of codes, needs {-(-n // 8)}"
            )
        bits = np.unpackbits(packed)[:n].reshape([int(v) for v in shape])
        codes = torch.from_numpy(bits[:, 0].astype(np.float32) * 2 - 1).to(self.device)
        h, w = int(shape[3]) * 16, int(shape[4]) * 16
        return self._to_image(self.model.synthesis(codes), h, w)


def load_rnn_model(
    checkpoint: str | os.PathLike[str] | None = None,
    format: str = "imgcomp",
    pretrained: bool = True,
    width: float = 1.0,
    seed: int = 0,
) -> TodericiRNN:
    """The model behind ``toderici2017`` from one weight source (see the module docstring)."""
    from imgcomp.families.rnn.original import load_original

    return load_family_model(
        "rnn",
        NAME,
        TodericiRNN,
        checkpoint,
        format,
        pretrained,
        load_original,
        lambda: build_rnn(width),
        seed,
    )


@register_codec(NAME, "rnn", progressive=True, family="rnn", stream_params=("iterations",))
def toderici2017(
    iterations: int = 3,
    checkpoint: str | None = None,
    format: str = "imgcomp",
    pretrained: bool = True,
    width: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
) -> RNNCodec:
    """The Toderici 2017 RNN codec at ``iterations`` (1..16, 0.125 bpp each before entropy
    coding); see :mod:`imgcomp.families.rnn.codec`."""
    iterations = _check_iterations(iterations)
    model = load_rnn_model(checkpoint, format, pretrained, width, seed)
    if checkpoint is not None:
        params: dict[str, ParamValue] = {"checkpoint": os.fspath(checkpoint), "format": format}
    elif pretrained:
        params = {}
    else:
        params = {"pretrained": False, "width": width, "seed": seed}
    return RNNCodec(model, NAME, {"iterations": iterations, **params}, device=device)


def _check_iterations(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (1 <= int(value) <= MAX_ITERATIONS)
    ):
        raise ImgcompError(f"iterations must be an integer in 1..{MAX_ITERATIONS}, got {value!r}")
    return int(value)
