"""``to_backend``: a codec whose transforms run in onnxruntime, float32 or int8.

The model is copied (the caller's codec is left as it is), every transform its family declares
(``FamilySpec.quant_units``; Ballé: g_a, g_s, h_a, h_s) is exported to ONNX
(:mod:`imgcomp.backends.onnx_export`), int8 ones quantized on calibration crops
(:mod:`imgcomp.backends.onnx_int8`), and each is replaced by an
:class:`~imgcomp.backends.session.OnnxRuntimeModule`; the entropy densities, the latent codec and
the stream format stay as they are. The new codec's ops end with ``backend=onnxruntime:...``:
onnxruntime's kernels round differently from torch's, so a stream of one backend decodes only
on the same backend (anything else is refused with CodecMismatchError by the fingerprint,
which also covers the ONNX bytes). The hyper-synthesis runs on one thread, so encoder and
decoder compute the same scale indexes whatever their thread counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from imgcomp.backends.deps import ONNXRUNTIME, require_onnxruntime
from imgcomp.backends.onnx_export import export_transform
from imgcomp.backends.onnx_int8 import excluded_nodes, quantize_onnx
from imgcomp.backends.session import OnnxRuntimeModule
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError
from imgcomp.ops.base import copy_model, derive, replace_submodule, require_learned
from imgcomp.ops.config import check_components
from imgcomp.ops.quant.api import selected_transforms
from imgcomp.ops.quant.bf16 import Bf16Transform
from imgcomp.ops.quant.calibration import calibration_images, capture_inputs
from imgcomp.ops.quant.int8 import Int8Transform
from imgcomp.registry import family_of

__all__ = ["BACKEND_OP", "backend_of", "to_backend"]

#: The prefix of a backend's op record (``backend=onnxruntime:int8:encoder+decoder+entropy``).
BACKEND_OP = "backend="
#: Side of the synthetic image the float export traces on (a multiple of every padding).
_EXAMPLE_SIDE = 64


def backend_of(codec: LearnedCodec) -> str:
    """``torch``, or the backend a codec's ops record (:data:`BACKEND_OP`)."""
    for op in getattr(codec, "ops", ()):
        if op.startswith(BACKEND_OP):
            return op[len(BACKEND_OP) :].split(":", 1)[0]
    return "torch"


def _example_image() -> np.ndarray:
    """A seeded random uint8 image the export traces (its values only fix shapes)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (_EXAMPLE_SIDE, _EXAMPLE_SIDE, 3), dtype=np.uint8)


def _check_float(codec: LearnedCodec, units: dict[str, nn.Module]) -> None:
    if codec.device.type != "cpu":
        raise ImgcompError(f"the {ONNXRUNTIME} backend runs on the CPU; create the codec there")
    if backend_of(codec) != "torch":
        raise ImgcompError(f"the codec runs on {backend_of(codec)} already")
    for name, unit in units.items():
        if any(isinstance(m, (Bf16Transform, Int8Transform)) for m in unit.modules()):
            raise ImgcompError(
                f"{name} is quantized by torch ({codec.ops[-1]}); convert the float (or pruned) "
                f"codec and quantize in onnxruntime: to_backend(codec, int8=True)"
            )
        bad = [p for p in unit.parameters() if p.dtype != torch.float32]
        if bad:
            raise ImgcompError(f"{name} holds {bad[0].dtype} weights; export needs float32")


def _first_inputs(captured: dict[str, list[Tensor]]) -> dict[str, Tensor]:
    out = {}
    for name, seen in captured.items():
        if not seen or not isinstance(seen[0], Tensor):
            raise ImgcompError(f"{name} takes no single tensor: it cannot run in {ONNXRUNTIME}")
        out[name] = seen[0]
    return out


def to_backend(
    codec: LearnedCodec,
    backend: str = ONNXRUNTIME,
    *,
    int8: bool = False,
    calibration: Sequence[np.ndarray] | None = None,
    components: Sequence[str] | None = None,
) -> LearnedCodec:
    """A new codec running ``codec``'s transforms in onnxruntime (see the module docstring).

    ``int8``: static QDQ int8 of the transforms of ``components`` (None: every component),
    calibrated on ``calibration`` (uint8 HxWx3 training crops; None:
    :func:`~imgcomp.ops.quant.calibration.calibration_images`), the family's latent-facing
    convolutions kept float32 (``FamilySpec.int8_float_layers``); the other transforms float32.
    A pruned codec converts like any other (structured pruning's smaller widths are exported).
    """
    if backend != ONNXRUNTIME:
        raise ImgcompError(f"unknown backend {backend!r}; backends: torch, {ONNXRUNTIME}")
    require_onnxruntime()
    codec = require_learned(codec)
    family = family_of(codec.model)
    known = family.component_names
    chosen = check_components(known if components is None else components, known)
    if components is not None and not int8:
        raise ImgcompError("components select what int8 quantizes; give int8=True")
    model = copy_model(codec)
    units = selected_transforms(model)
    if not units:
        raise ImgcompError(f"the {family.name} family declares no transforms to export")
    _check_float(codec, units)
    quantized = set(selected_transforms(model, chosen)) if int8 else set()
    # transforms whose outputs pick the coding tables run on one thread (the family declares)
    coding = [c for c in family.coding_components if c in known]
    one_thread = set(selected_transforms(model, coding)) if coding else set()
    examples = _first_inputs(capture_inputs(model, units, [_example_image()]))
    seen: dict[str, list[Tensor]] = {}
    reduce_range = False
    if quantized:
        from imgcomp.hardware import cpu_capabilities

        images = calibration_images() if calibration is None else calibration
        seen = capture_inputs(model, {n: units[n] for n in quantized}, images)
        reduce_range = cpu_capabilities().int8_dot is False
    for name, unit in units.items():
        data = export_transform(unit, examples[name])
        kind = "float32"
        if name in quantized:
            keep = excluded_nodes(data, unit, family.int8_float_layers.get(name, {}))
            data = quantize_onnx(data, seen[name], keep, reduce_range)
            kind = "int8"
        threads = 1 if name in one_thread else None
        replace_submodule(model, name, OnnxRuntimeModule(data, threads=threads, kind=kind))
    mode = f"int8:{'+'.join(chosen)}" if int8 else "float32"
    return derive(codec, model, f"{BACKEND_OP}{ONNXRUNTIME}:{mode}")
