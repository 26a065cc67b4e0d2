"""Quantization of learned codecs' transforms: bf16, static int8 (FX) and K-bit weight-only.

``quantize_model`` / ``quantize_codec`` (:mod:`.api`) dispatch to :mod:`.bf16`, :mod:`.int8`
(with :mod:`.rewrite` and :mod:`.state`) and :mod:`.weights`; :mod:`.calibration` draws the
int8 calibration crops; ``scripts/measure_quant.py`` measures every mode on Kodak.
"""

from imgcomp.ops.quant.api import (
    DEFAULT_COMPONENTS,
    MODES,
    packed_weight_bytes,
    parse_mode,
    quantize_codec,
    quantize_model,
    selected_transforms,
)
from imgcomp.ops.quant.bf16 import Bf16Transform
from imgcomp.ops.quant.calibration import calibration_images
from imgcomp.ops.quant.int8 import Int8Transform
from imgcomp.ops.quant.report import LayerInfo, QuantReport, serialized_bytes

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
