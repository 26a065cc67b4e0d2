"""Quantization ops (bf16, int8, wK); the implementation lives in :mod:`imgcomp.ops.quant`."""

from imgcomp.ops.quant import (
    DEFAULT_COMPONENTS,
    MODES,
    Bf16Transform,
    Int8Transform,
    LayerInfo,
    QuantReport,
    calibration_images,
    packed_weight_bytes,
    parse_mode,
    quantize_codec,
    quantize_model,
    selected_transforms,
    serialized_bytes,
)

__all__ = [
    "DEFAULT_COMPONENTS",
    "MODES",
    "Bf16Transform",
    "Int8Transform",
    "LayerInfo",
    "QuantReport",
    "calibration_images",
    "packed_weight_bytes",
    "parse_mode",
    "quantize_codec",
    "quantize_model",
    "selected_transforms",
    "serialized_bytes",
]
