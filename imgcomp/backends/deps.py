"""The optional packages a backend needs, checked before any work with what to install."""

from __future__ import annotations

import importlib.util

from imgcomp.errors import ImgcompError

__all__ = ["ONNXRUNTIME", "require_onnxruntime"]

#: The ONNX Runtime backend's name (``create_codec(..., backend=ONNXRUNTIME)``).
ONNXRUNTIME = "onnxruntime"
#: Import name -> what pip installs it from.
_NEEDED = {"onnx": "onnx", "onnxruntime": "onnxruntime"}


def require_onnxruntime() -> None:
    """Raise ImgcompError naming the install command unless onnx and onnxruntime import."""
    missing = [pip for name, pip in _NEEDED.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise ImgcompError(
            f"the {ONNXRUNTIME} backend needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'imgcomp[onnx]' (or pip install {' '.join(missing)})"
        )
