"""Static int8 quantization of an exported transform with onnxruntime.quantization.

QDQ format (``QuantizeLinear`` / ``DequantizeLinear`` pairs that onnxruntime's CPU EP fuses into
``QLinearConv``), int8 per-output-channel symmetric weights, uint8 activations calibrated by
min / max on the inputs the float model gives the transform on training crops (deterministic:
the same crops give the same bytes); 7-bit weights (``reduce_range``) only on CPUs without VNNI,
as onnxruntime advises. The convolutions named in ``exclude`` (the family's latent-facing ones,
:func:`excluded_nodes`) keep float32 activations and weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from imgcomp.backends.deps import require_onnxruntime
from imgcomp.backends.onnx_export import INPUT
from imgcomp.errors import ImgcompError
from imgcomp.ops.quant.int8 import float_layers
from imgcomp.ops.quant.report import layers_of

__all__ = ["MIN_INT8_OUT", "excluded_nodes", "quantize_onnx"]

#: Convolutions with fewer output channels than this stay float32 (Ballé: g_s's RGB layer):
#: onnxruntime's int8 convolution is slower than its float one there.
MIN_INT8_OUT = 16
#: Calibration methods (``onnxruntime.quantization.CalibrationMethod`` names), in the order
#: tried: the 99.999th percentile of a histogram (clips rare outliers: 0.004 less SSIM drop
#: than min / max on the shipped q3 model), else min / max where a tensor's values are too
#: narrow for a histogram (tiny seeded models).
CALIBRATIONS = ("Percentile", "MinMax")


def excluded_nodes(model: bytes, unit: nn.Module, where: Mapping[str, str]) -> list[str]:
    """Names of the ONNX ``Conv`` nodes that stay float32: those of the unit's convolutions its
    family keeps on float32 activations (``where``: ``FamilySpec.int8_float_layers`` of the
    unit), and those of convolutions with fewer than :data:`MIN_INT8_OUT` output channels."""
    import onnx

    layers = list(float_layers(unit, where))  # relative layer names, e.g. "0", "6"
    layers += [
        name
        for name, m in layers_of(unit)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        and m.out_channels < MIN_INT8_OUT
        and name not in layers
    ]
    graph = onnx.load_from_string(model).graph
    convs = [node.name for node in graph.node if node.op_type == "Conv"]
    out = []
    for layer in layers:
        prefix = "/" + layer.replace(".", "/") + "/"
        named = [n for n in convs if n.startswith(prefix)]
        if not named:
            raise ImgcompError(f"no ONNX convolution of layer {layer!r} among {convs}")
        out += named
    return out


def _reader(inputs: Sequence[Tensor]):
    """The calibration inputs as an onnxruntime ``CalibrationDataReader``."""
    from onnxruntime.quantization import CalibrationDataReader

    feeds = iter([{INPUT: np.ascontiguousarray(t.detach().float().cpu().numpy())} for t in inputs])

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict | None:
            return next(feeds, None)

    return Reader()


def quantize_onnx(
    model: bytes, inputs: Sequence[Tensor], exclude: Sequence[str] = (), reduce_range: bool = False
) -> bytes:
    """QDQ int8 bytes of float ONNX ``model``, calibrated on ``inputs`` (see the module doc)."""
    require_onnxruntime()
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if len(inputs) == 0:
        raise ImgcompError("int8 calibration needs at least one input")
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="imgcomp-onnx-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model)
        root.setLevel(logging.ERROR)  # its advice to pre-process: shapes are static per node
        try:
            for method in CALIBRATIONS:
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # its progress prints
                        quantize_static(
                            str(src),
                            str(dst),
                            _reader(inputs),
                            quant_format=QuantFormat.QDQ,
                            per_channel=True,
                            reduce_range=reduce_range,
                            activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude),
                            calibrate_method=getattr(CalibrationMethod, method),
                            extra_options={"WeightSymmetric": True},
                        )
                    break
                except ValueError:  # a tensor's range too narrow for the histogram
                    if method == CALIBRATIONS[-1]:
                        raise
        finally:
            root.setLevel(level)
        return dst.read_bytes()
