"""Static int8 post-training quantization of a transform with torch.ao.quantization FX.

Steps: an exact float rewrite (:mod:`imgcomp.ops.quant.rewrite`), ``prepare_fx`` with the
engine's default qconfig mapping (per-channel symmetric int8 weights, histogram-calibrated uint8
activations; 7-bit ``reduce_range`` only on CPUs without VNNI), calibration on the inputs the
float model gives the transform on training crops, ``convert_fx``, then clean-ups: a zero-copy
channels_last ``PixelShuffle`` for quantized tensors, int8-weight float-compute layers where
float activations are asked for, and a plain state dict (quantized tensors as integer tensors
plus scales, sub-pixel weights in their compact transposed-conv layout: about a quarter of the
float32 size; see :mod:`imgcomp.ops.quant.state`).

The FX flow is deprecated in favour of PT2E (torchao), whose x86 quantizer skips
``conv_transpose2d``; FX is the flow that quantizes transposed convolutions.

Measured on the shipped ``mbt2018-mean`` quality 3 (4 Kodak images, 2 threads of an AVX512-VNNI
EPYC, medians; float32 synthesis ``g_s`` 134 ms, decode 168 ms):

Transposed convolutions (``deconv``):

* ``"subpixel"`` (default): each ``ConvTranspose2d`` (output exactly ``s`` x input) becomes an
  int8 stride-1 conv with ``s*s`` phases per channel plus a pixel shuffle, an exact rewrite that
  runs on fbgemm's fast int8 conv kernels with per-channel weights: ``g_s`` 49 ms.
* ``"native"``: FX's quantized ``ConvTranspose2d`` (per-tensor weights; fbgemm has no
  per-channel transposed conv): ``g_s`` 146 ms, no faster than float32. fbgemm's transposed conv
  is slow, slower than float32 where the output has few channels (the last decoder layer).

GDN / IGDN (``gdn``), rewritten as ``x * rsqrt(conv1x1(x*x))`` (``sqrt`` for IGDN) with the
effective gamma / beta frozen into the 1x1 conv:

* ``"int8"`` (default): ``x*x`` and the final product are quantized multiplies, the 1x1 norm
  conv is an int8 conv (10x faster than the float 1x1 conv here), and ``sqrt``/``rsqrt`` (PyTorch
  has no quantized square root) runs as dequantize / root / quantize on bands of rows
  (:mod:`imgcomp.ops.quant.roots`): the same bytes, without a full-size float32 temporary.
* ``"float"``: the whole GDN in float32 between a dequantize and a quantize: ``g_s`` 76 ms
  against 49 ms, the same SSIM.

The convolutions a family declares (``FamilySpec.int8_float_layers``, :func:`float_layers`; Ballé:
those that read or write a latent, g_a's last conv, g_s's first, the first and last of h_a and
h_s) run on float32 activations by default (``float_activations``), their weights still stored
as int8 (:class:`~imgcomp.ops.quant.weights.Int8WeightConv`): 8-bit activations there (clipped
rare large latents, coarse y before rounding) cost the most quality, and at 1/16 resolution the
float convs are cheap. SSIM drop on the 4 images: 0.0104 with every layer int8, 0.0083 with
these float, at no measurable latency cost (``g_s`` 51 ms and 49 ms in two quiet runs).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Collection, Mapping, Sequence
from functools import partial

import torch
from torch import Tensor, nn

from imgcomp.errors import ImgcompError
from imgcomp.nn.gdn import GDN
from imgcomp.ops.base import replace_submodule
from imgcomp.ops.quant.casting import map_tensors, to_compute, to_float32
from imgcomp.ops.quant.report import LayerInfo, layers_of
from imgcomp.ops.quant.rewrite import (
    ConvGDN,
    SubpixelConvTranspose2d,
    SubpixelGeometry,
    subpixel_geometry,
)
from imgcomp.ops.quant.roots import quantized_roots
from imgcomp.ops.quant.state import from_plain, to_plain
from imgcomp.ops.quant.weights import Int8WeightConv

__all__ = [
    "DECONV_MODES",
    "GDN_MODES",
    "FloatConvGDN",
    "Int8Transform",
    "QuantizedPixelShuffle",
    "float_layers",
    "quantize_int8",
    "select_engine",
]

DECONV_MODES = ("subpixel", "native")
GDN_MODES = ("int8", "float")

_QUANTIZED_PACKAGES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")


class FloatConvGDN(ConvGDN):
    """A :class:`ConvGDN` that FX leaves float (not traced, no qconfig)."""


def select_engine() -> str:
    """Set and return the quantized engine: ``x86`` (fbgemm + oneDNN), else ``fbgemm``."""
    supported = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm"):
        if engine in supported:
            torch.backends.quantized.engine = engine
            return engine
    raise ImgcompError(
        f"int8 needs the x86 or fbgemm quantized engine; this PyTorch has {supported}"
    )


def _has_vnni() -> bool:
    check = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(check()) if check is not None else False


def _qconfig_mapping(
    engine: str, gdn: str, float_layers: Collection[str] = (), float_modules: Sequence[type] = ()
):
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver

    mapping = get_default_qconfig_mapping(engine)
    # 7-bit activations only guard against int16 overflow in non-VNNI AVX2 kernels.
    activation = HistogramObserver.with_args(reduce_range=not _has_vnni())
    mapping.set_global(QConfig(activation=activation, weight=mapping.global_qconfig.weight))
    for kind, qconfig in list(mapping.object_type_qconfigs.items()):
        if kind in (nn.ConvTranspose2d, torch.nn.functional.conv_transpose2d):
            mapping.set_object_type(kind, QConfig(activation=activation, weight=qconfig.weight))
    if gdn == "float":
        mapping.set_object_type(FloatConvGDN, None)
    for cls in float_modules:
        mapping.set_object_type(cls, None)
    for name in float_layers:
        mapping.set_module_name(name, None)
    return mapping


def _rewrite(
    module: nn.Module, deconv: str, gdn: str, keep: Collection[str]
) -> dict[str, SubpixelGeometry]:
    """Replace, in place, GDN by ConvGDN (float-kept ones by FloatConvGDN) and transposed convs
    by sub-pixel convs (unless kept float); returns the sub-pixel layers' names and geometry."""
    subpixel: dict[str, SubpixelGeometry] = {}
    for name, child in list(module.named_modules()):
        for cname, c in list(child.named_children()):
            qual = f"{name}.{cname}" if name else cname
            if isinstance(c, GDN):
                floating = gdn == "float" or qual in keep
                setattr(child, cname, FloatConvGDN(c) if floating else ConvGDN(c))
            elif isinstance(c, nn.ConvTranspose2d) and deconv == "subpixel" and qual not in keep:
                g = subpixel_geometry(c)
                if g is not None:
                    setattr(child, cname, SubpixelConvTranspose2d(c, g))
                    subpixel[qual] = g
    return subpixel


def float_layers(module: nn.Module, where: Mapping[str, str]) -> dict[str, str]:
    """The layers of an int8 unit that int8 keeps on float32 activations by default, from its
    family's declaration ``where`` (``FamilySpec.int8_float_layers``: ``"first"`` or ``"last"``
    among the unit's convolutions, or a convolution's name relative to the unit -> why):
    name (relative to ``module``) -> why."""
    convs = [n for n, m in layers_of(module) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if not convs:
        return {}
    at = {"first": convs[0], "last": convs[-1]}
    missing = sorted(set(where) - set(at) - set(convs))
    if missing:
        raise ImgcompError(
            f"int8 float layers {missing} are no convolutions of the unit ({', '.join(convs)})"
        )
    return {at.get(position, position): why for position, why in where.items()}


class QuantizedPixelShuffle(nn.PixelShuffle):
    """PixelShuffle that shuffles a per-tensor quantized tensor's bytes directly (no copy to
    NCHW and back): the result stays channels_last, as the next int8 conv wants it."""

    def forward(self, x: Tensor) -> Tensor:
        if not (x.is_quantized and x.qscheme() == torch.per_tensor_affine):
            return super().forward(x)
        dtype = {torch.quint8: torch.uint8, torch.qint8: torch.int8}.get(x.dtype)
        if dtype is None:
            return super().forward(x)
        raw = torch.empty(0, dtype=dtype).set_(
            x.untyped_storage(), x.storage_offset(), x.shape, x.stride()
        )
        out = torch.pixel_shuffle(raw, self.upscale_factor)
        return torch._make_per_tensor_quantized_tensor(out, x.q_scale(), x.q_zero_point())


def _is_quantized_module(m: nn.Module) -> bool:
    return type(m).__module__.startswith(_QUANTIZED_PACKAGES)


def _plain_state(module: Int8Transform, state: dict, prefix: str, _meta) -> None:
    to_plain(state, prefix, module.graph, module.compact)


def _quantized_state(module: Int8Transform, state: dict, prefix: str, *_args) -> None:
    from_plain(state, prefix, module.graph, module.compact)


class Int8Transform(nn.Module):
    """An FX-quantized transform: float32 in, float32 out, int8 inside.

    ``compact`` maps state-dict keys (relative to ``graph``) of sub-pixel conv weights to their
    geometry, so they serialize in transposed-conv layout (see :mod:`imgcomp.ops.quant.state`).
    A whole transform hands back NCHW; a unit nested inside a float computation
    (``channels_last_out``, e.g. one RNN convolution among float gates) hands back the
    channels_last tensor it computed, so the float ops after it and the next unit copy nothing.
    """

    #: its quantized convolutions round by the size of their input (torch's x86 engine picks
    #: fbgemm or oneDNN kernels by shape: one level apart in 6 pixels of a 1500x700 decode in
    #: tiles), so a model holding one decodes on the whole image (:mod:`imgcomp.codecs.tiling`)
    tiles_exactly = False

    def __init__(
        self,
        graph: nn.Module,
        engine: str,
        compact: dict[str, SubpixelGeometry],
        channels_last_out: bool = False,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.engine = engine
        self.compact = dict(compact)
        self.channels_last_out = bool(channels_last_out)
        self.register_state_dict_post_hook(_plain_state)
        self.register_load_state_dict_pre_hook(_quantized_state)

    def forward(self, *args: object) -> object:
        if len(args) == 1 and isinstance(args[0], Tensor):
            x = args[0].to(dtype=torch.float32, memory_format=torch.channels_last)
            y = self.graph(x).to(dtype=torch.float32)
            return y if self.channels_last_out else y.contiguous()
        # a unit of several inputs (a recurrent cell's (x, (h, c))): tensors inside tuples too
        out = self.graph(*map_tensors(args, _to_float32_channels_last))
        return map_tensors(out, to_float32)


def _as_args(captured: object) -> tuple:
    """The call arguments of one captured input (a tensor, or the tuple of a unit's arguments),
    as float32 CPU tensors."""
    args = captured if isinstance(captured, tuple) else (captured,)
    return tuple(map_tensors(args, lambda t: t.float().cpu()))


_to_float32_channels_last = partial(to_compute, dtype=torch.float32)


def _layer_report(
    original: nn.Module,
    graph: nn.Module,
    prefix: str,
    subpixel: dict[str, SubpixelGeometry],
    gdn: str,
    keep: dict[str, str],
) -> list[LayerInfo]:
    def converted(name: str) -> nn.Module | None:
        try:
            return graph.get_submodule(name)
        except AttributeError:
            return None

    def quantized(name: str) -> bool:
        m = converted(name)
        return m is not None and _is_quantized_module(m)

    out: list[LayerInfo] = []
    for name, m in layers_of(original):
        kind, qual = type(m).__name__, f"{prefix}.{name}"
        conv = isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        if name in keep and conv:
            ok = isinstance(converted(name), Int8WeightConv)
            info = LayerInfo(
                qual, kind, ok, f"float32 activations: {keep[name]}", "int8", "float32"
            )
        elif name in keep or (isinstance(m, GDN) and gdn == "float"):
            why = keep.get(name, "requested (gdn='float')")
            info = LayerInfo(qual, kind, False, f"float32 between dequantize/quantize: {why}")
        elif isinstance(m, GDN):
            ok = quantized(f"{name}.norm")
            info = LayerInfo(
                qual,
                kind,
                ok,
                "x*x and the final product as quantized mul, 1x1 norm conv int8; "
                "sqrt/rsqrt in float32 between dequantize and quantize, in bands of rows",
                "int8" if ok else "float32",
                "int8" if ok else "float32",
            )
        elif name in subpixel:
            ok = quantized(f"{name}.conv")
            info = LayerInfo(
                qual,
                kind,
                ok,
                "sub-pixel Conv2d (per-channel weights) + pixel shuffle, an exact rewrite",
                "int8" if ok else "float32",
                "int8" if ok else "float32",
            )
        elif conv:
            ok = quantized(name)
            per = "per-tensor" if isinstance(m, nn.ConvTranspose2d) else "per-channel"
            q = type(converted(name)).__name__
            detail = f"{q} ({per} weights)" if ok else f"kept float32 ({q})"
            info = LayerInfo(qual, kind, ok, detail, *(("int8",) * 2 if ok else ("float32",) * 2))
        elif converted(name) is None and out:  # an activation fused into the layer before
            prev = out[-1]
            info = LayerInfo(
                qual, kind, prev.quantized, f"fused into {prev.name}", "-", prev.compute
            )
        else:
            q = converted(name)
            ok = quantized(name) or isinstance(q, (nn.ReLU, nn.LeakyReLU, nn.Identity))
            info = LayerInfo(
                qual,
                kind,
                ok,
                f"on {'int8' if ok else 'float32'} tensors",
                "-",
                "int8" if ok else "float32",
            )
        out.append(info)
    return out


def _weight_only(graph: nn.Module, names: Collection[str]) -> None:
    """Swap the float conv layers among ``names`` for int8-weight, float-compute ones."""
    import torch.ao.nn.intrinsic as nni

    for name in names:
        m = graph.get_submodule(name)
        if isinstance(m, nni._FusedModule) and isinstance(m[0], (nn.Conv2d, nn.ConvTranspose2d)):
            new = Int8WeightConv(m[0], m[1] if len(m) > 1 else None)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            new = Int8WeightConv(m)
        else:
            continue
        replace_submodule(graph, name, new)


def quantize_int8(
    module: nn.Module,
    inputs: Sequence[Tensor],
    prefix: str,
    deconv: str = "subpixel",
    gdn: str = "int8",
    float_activations: dict[str, str] | None = None,
    float_modules: Sequence[type] = (),
    channels_last_out: bool = False,
) -> tuple[Int8Transform, list[LayerInfo]]:
    """FX-quantize a float transform calibrated on ``inputs``; the original is not modified.

    ``float_activations`` maps layer names (relative to ``module``) to the reason they run on
    float32 activations (convolutions keep int8-stored weights; see :class:`Int8WeightConv`);
    ``float_modules`` are module classes kept whole in float32 between a dequantize and a
    quantize (a family's ``int8_float_modules``, e.g. HiFiC's ChannelNorm);
    ``channels_last_out`` see :class:`Int8Transform`.
    """
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if deconv not in DECONV_MODES:
        raise ImgcompError(f"deconv must be one of {DECONV_MODES}, got {deconv!r}")
    if gdn not in GDN_MODES:
        raise ImgcompError(f"gdn must be one of {GDN_MODES}, got {gdn!r}")
    if not inputs:
        raise ImgcompError("int8 calibration needs at least one input")
    original = module
    if not list(module.children()):  # a single layer: FX quantizes it as a module of a graph
        module = nn.Sequential(module)
    keep = dict(float_activations or {})
    names = {n for n, _ in layers_of(module)}
    unknown = sorted(set(keep) - names)
    if unknown:
        raise ImgcompError(f"no layer {', '.join(unknown)} in {prefix}; layers: {sorted(names)}")
    engine = select_engine()
    work = copy.deepcopy(module).cpu().eval().float()
    subpixel = _rewrite(work, deconv, gdn, keep)
    custom = PrepareCustomConfig().set_non_traceable_module_classes([FloatConvGDN, *float_modules])
    with warnings.catch_warnings():
        # torch.ao.quantization's FX flow is deprecated in favour of PT2E, which cannot
        # quantize conv_transpose2d; these deprecation notices are expected.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")
        prepared = prepare_fx(
            work,
            _qconfig_mapping(engine, gdn, keep, float_modules),
            example_inputs=_as_args(inputs[0]),
            prepare_custom_config=custom,
        )
        with torch.no_grad():
            for x in inputs:
                prepared(*_as_args(x))
        graph = convert_fx(prepared)
    quantized_roots(graph)
    for name, m in list(graph.named_modules()):
        if type(m) is nn.PixelShuffle:
            replace_submodule(graph, name, QuantizedPixelShuffle(m.upscale_factor))
    _weight_only(graph, keep)
    compact = {
        f"{name}.conv.weight": g
        for name, g in subpixel.items()
        if _is_quantized_module(graph.get_submodule(f"{name}.conv"))
    }
    layers = _layer_report(module, graph, prefix, subpixel, gdn, keep)
    transform = Int8Transform(graph, engine, compact, channels_last_out)
    for key, value in vars(original).items():  # plain attributes (a cell's hidden_channels)
        if not key.startswith("_") and key != "training" and isinstance(value, (int, float, str)):
            setattr(transform, key, value)
    return transform, layers
