"""Backends: where a learned codec's transforms run, the entropy coding unchanged.

``torch`` is the model itself; ``onnxruntime`` exports the transforms its family declares
(``FamilySpec.quant_units``; Ballé: g_a, g_s, h_a, h_s) to ONNX and runs them in onnxruntime's
CPU execution provider, in float32 or int8 (static QDQ quantization). Importing this package
needs neither onnx nor onnxruntime; converting a codec does (:func:`require_onnxruntime`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgcomp.backends.deps import ONNXRUNTIME, require_onnxruntime
from imgcomp.registry import register_backend

if TYPE_CHECKING:
    from imgcomp.codecs.learned import LearnedCodec

__all__ = ["BACKENDS", "ONNXRUNTIME", "require_onnxruntime", "to_backend"]

#: The backends :func:`to_backend` converts to (``torch``, the default, is the codec itself).
BACKENDS = (ONNXRUNTIME,)


def to_backend(codec: Any, backend: str = ONNXRUNTIME, **options: Any) -> LearnedCodec:
    """A new codec whose transforms run on ``backend``: :func:`imgcomp.backends.api.to_backend`."""
    from imgcomp.backends.api import to_backend as _to_backend

    return _to_backend(codec, backend, **options)


register_backend(ONNXRUNTIME, lambda codec: to_backend(codec, ONNXRUNTIME), require_onnxruntime)
