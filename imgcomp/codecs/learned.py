"""Learned codecs as real bitstream codecs: a model's transforms around a latent codec.

Encoding pads the image as the model's family says (Ballé: edge replication, bottom/right, to the
downsampling factor), runs the analysis transform and hands the latents to the codec's latent codec
(:mod:`imgcomp.codecs.latent`), which quantizes them exactly as the model does in eval mode and
entropy-codes them into payload sections (Ballé models: one section for ``y`` of the factorized
prior; ``z``, ``y`` and a 4-byte scale-table index checksum for hyperpriors). Decoding rebuilds
the quantized latents from the sections and runs the synthesis transform, so
``decode(encode(x))`` equals :meth:`LearnedCodec.reconstruct`, the model's own quantized
reconstruction. Which latent codec and padding a model gets is its family's declaration
(:func:`imgcomp.registry.find_family`); this module names no model.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from imgcomp.bitstream import ParamValue, StreamHeader
from imgcomp.codecs.base import ContainerCodec
from imgcomp.codecs.latent import LatentCodec, LatentFactory
from imgcomp.codecs.tiling import analyze, encode_tile_edge, synthesize, tile_edge, tiles_exactly
from imgcomp.devices import resolve_device
from imgcomp.errors import ImgcompError
from imgcomp.images import validate_rgb8
from imgcomp.registry import find_family


class LearnedCodec(ContainerCodec):
    """A model (``analysis`` / ``synthesis`` transforms) and a latent codec, wrapped as a codec.

    ``name`` is the registry name the stream records and ``params`` what rebuilds the codec
    through the registry (e.g. ``{"quality": 3}``). ``ops`` lists compression ops applied to the
    model (pruning, quantization); they enter the fingerprint, so streams of a modified model
    decode only with that model. ``latent`` builds the latent codec from the model (default: the
    one the model's family declares); it is rebuilt for every derived model, so ops keep it.

    ``decode_tile`` (output pixels; None: ``$IMGCOMP_DECODE_TILE`` or 2048, 0: never) bounds
    decode memory: larger images run the synthesis in tiles (:mod:`imgcomp.codecs.tiling`) where
    the family declares a ``synthesis_halo`` and the model's modules compute the same in tiles;
    ``encode_tile`` (``$IMGCOMP_ENCODE_TILE``) does the same for the analysis and encode memory
    where the family declares an ``analysis_halo``.
    """

    #: tile edge of the synthesis in output pixels (None: the process default)
    decode_tile: int | None = None
    #: tile edge of the analysis in input pixels (None: the process default)
    encode_tile: int | None = None

    def __init__(
        self,
        model: nn.Module,
        name: str,
        params: dict[str, ParamValue] | None = None,
        device: str | torch.device = "cpu",
        ops: tuple[str, ...] = (),
        latent: LatentFactory | None = None,
    ) -> None:
        super().__init__(**(params or {}))
        self.name = name
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.ops = tuple(ops)
        family = find_family(self.model)
        if family is None and latent is None:
            raise ImgcompError(
                f"{type(model).__name__} belongs to no registered model family; pass latent="
            )
        #: the model's family (None: an ad-hoc model with its own ``latent``)
        self.family: str | None = family.name if family is not None else None
        #: latent pixels of overlap the synthesis needs in tiles (0: never tiled)
        exact = family is not None and tiles_exactly(self.model)
        self.synthesis_halo: int = family.synthesis_halo if exact else 0
        #: latent pixels of overlap the analysis needs in tiles (0: never tiled)
        self.analysis_halo: int = family.analysis_halo if exact else 0
        self.latent_factory: LatentFactory = latent if latent is not None else family.latent
        self.latent: LatentCodec = self.latent_factory(self.model)
        if family is not None:
            padding = family.padding(self.model)
            self.pad_multiple, self.pad_mode = padding.multiple, padding.mode
        else:  # an ad-hoc model: edge replication to its downsampling factor
            self.pad_multiple = int(getattr(self.model, "downsampling_factor", 1))
            self.pad_mode = "replicate"
        self._fingerprint_cache: bytes | None = None

    def derive(self, model: nn.Module, op: str) -> LearnedCodec:
        """A codec of this codec's type around ``model`` with ``op`` appended to its ops (what
        every compression op returns); subclasses with another constructor override it."""
        return type(self)(
            model,
            self.name,
            self.params,
            device=self.device,
            ops=(*self.ops, op),
            latent=self.latent_factory,
        )

    # -- identity ------------------------------------------------------------------------------
    @property
    def components(self) -> dict[str, list[torch.nn.Module]]:
        """The model's parts by role (Ballé: ``encoder``, ``decoder``, ``entropy``)."""
        return self.model.components

    def fingerprint_material(self) -> bytes:
        """Architecture, every weight and buffer, the integer coding tables and the ops applied."""
        if self._fingerprint_cache is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr(sorted(self.model.config.items())).encode())
            for key, tensor in self.model.state_dict().items():
                h.update(key.encode())
                t = tensor.detach().to("cpu")
                h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
                if t.is_quantized:  # the values it stands for (per-tensor or per-channel)
                    t = t.dequantize()
                t = t.contiguous().reshape(-1)  # 0-dim and channels_last tensors too
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            for freqs in self.latent.tables():
                h.update(np.ascontiguousarray(freqs).tobytes())
            h.update(repr(self.ops).encode())
            self._fingerprint_cache = h.digest()
        return self._fingerprint_cache

    @property
    def coders(self) -> tuple[Any, ...]:
        """The latent codec's entropy coders (Ballé: (y coder,) or (z coder, y coder))."""
        return tuple(getattr(self.latent, "coders", ()))

    # -- tensors -------------------------------------------------------------------------------
    def _to_input(self, img: np.ndarray) -> torch.Tensor:
        """The model input of a validated image (:func:`model_input`)."""
        return model_input(img, self.pad_multiple, self.device, self.pad_mode)

    @staticmethod
    def _to_image(x_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
        """uint8 HxWx3 of ``round(255 * clamp(x_hat, 0, 1))``, cropped: one float HWC buffer
        updated in place (this runs on every decode; it was 2.4x slower out of place)."""
        x = x_hat[0, :, :h, :w].permute(1, 2, 0).float()
        out = torch.empty((h, w, x.shape[2]), dtype=torch.float32, device=x.device)
        torch.clamp(x, 0, 1, out=out)
        return out.mul_(255).round_().to(torch.uint8).cpu().numpy()

    def _latent_hw(self, header: StreamHeader) -> tuple[int, int]:
        """Spatial size of the coded latents of an image of the header's size."""
        f, s = self.pad_multiple, self.latent.stride
        return (-(-header.height // f) * f // s, -(-header.width // f) * f // s)

    def _analysis(self, img: np.ndarray) -> torch.Tensor:
        """The latents of a validated image, in tiles when it is large."""
        edge = encode_tile_edge(self.encode_tile)
        if self.analysis_halo and edge and max(img.shape[:2]) > edge:
            padded = pad_image(img, self.pad_multiple, self.pad_mode)
            y = analyze(
                self.model.analysis,
                lambda top, bottom, left, right: model_input(
                    padded[top:bottom, left:right], 1, self.device
                ),
                *padded.shape[:2],
                scale=self.latent.stride,
                halo=self.analysis_halo,
                edge=edge,
                device=self.device,
            )
            if y is not None:
                return y
        return self.model.analysis(self._to_input(img))

    def _synthesize(self, y_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
        """The uint8 image of the synthesis of ``y_hat``, in tiles when it is large."""
        return synthesize(
            self.model.synthesis,
            y_hat,
            h,
            w,
            self._to_image,
            scale=self.latent.stride,
            halo=self.synthesis_halo,
            edge=tile_edge(self.decode_tile),
        )

    # -- codec ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def reconstruct(self, img: np.ndarray) -> np.ndarray:
        """The model's own quantized reconstruction (no entropy coding): what decode must give."""
        img = validate_rgb8(img)
        y_hat = self.latent.quantize(self._analysis(img)).latents
        return self._synthesize(y_hat, *img.shape[:2])

    @torch.inference_mode()
    def estimated_bits(self, img: np.ndarray) -> float:
        """The model's own rate estimate: sum of -log2 likelihoods of the quantized latents."""
        q = self.latent.quantize(self._analysis(validate_rgb8(img)))
        return sum(float(-torch.log2(v.double()).sum()) for v in q.likelihoods)

    @torch.inference_mode()
    def encode_sections(self, img: np.ndarray) -> list[bytes]:
        return self.latent.encode(self._analysis(img))

    @torch.inference_mode()
    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        y_hat = self.latent.decode(sections, self._latent_hw(header), self.device)
        return self._synthesize(y_hat, header.height, header.width)


#: numpy's names of the padding modes :func:`model_input` takes
_NUMPY_PAD = {"replicate": "edge", "reflect": "reflect", "constant": "constant"}


def pad_image(img: np.ndarray, factor: int, mode: str = "replicate") -> np.ndarray:
    """A uint8 HxWxC image padded bottom / right to multiples of ``factor`` (``mode``: edge
    replication by default; ``img`` itself if no padding): the one padding rule of the model's
    input, whole (:func:`model_input`) or cut into encode tiles."""
    h, w = img.shape[:2]
    pad_h, pad_w = -h % factor, -w % factor
    if not (pad_h or pad_w):
        return img
    if mode not in _NUMPY_PAD:
        raise ImgcompError(f"no padding mode {mode!r}; known: {sorted(_NUMPY_PAD)}")
    return np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode=_NUMPY_PAD[mode])


def model_input(
    img: np.ndarray, factor: int, device: str | torch.device = "cpu", mode: str = "replicate"
) -> torch.Tensor:
    """[1, 3, H', W'] float32 in [0, 1] of a uint8 HxWx3 image that ``validate_rgb8`` passed,
    padded by :func:`pad_image` (padding the uint8 image moves a quarter of the bytes that
    padding the float tensor would): what encoding and calibration feed the model."""
    img = pad_image(img, factor, mode)
    # torch wraps a read-only array (np.asarray of a PIL image) only with a UserWarning; the
    # conversion to float copies anyway, so such an array is converted in numpy instead
    src = img if img.flags.writeable else img.astype(np.float32)
    return torch.from_numpy(src).permute(2, 0, 1)[None].to(device, torch.float32) / 255.0
