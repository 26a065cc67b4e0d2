"""Export a model's transform (one module, one tensor in, one tensor out) to ONNX bytes.

The transform is first rewritten exactly (:mod:`imgcomp.ops.quant.rewrite`): GDN / IGDN as a
1x1 convolution on squares with its effective parameters frozen, and each transposed
convolution as a stride-1 sub-pixel convolution plus ``DepthToSpace``, which onnxruntime runs
faster in float32 and, unlike ``ConvTranspose``, as a fused int8 convolution. The export uses
torch's TorchScript exporter (``dynamo=False``: offline, no onnxscript, the same bytes for the
same weights) at a fixed opset with dynamic batch, height and width, and is checked against the
torch module on the example input.
"""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from imgcomp.errors import ImgcompError
from imgcomp.nn.gdn import GDN
from imgcomp.ops.base import replace_submodule
from imgcomp.ops.quant.rewrite import ConvGDN, SubpixelConvTranspose2d, subpixel_geometry

__all__ = ["INPUT", "OPSET", "OUTPUT", "export_transform", "prepare_transform"]

#: The ONNX opset of every export (fixed: the bytes, hence the fingerprint, must not drift).
OPSET = 17
INPUT, OUTPUT = "input", "output"
#: Largest difference allowed between the exported graph and the torch module on the example
#: (relative to the output's largest magnitude): a wrong export, not rounding, exceeds it.
_CHECK_TOLERANCE = 1e-4


def prepare_transform(module: nn.Module) -> nn.Module:
    """A float32 eval copy of ``module`` with GDN and transposed convolutions rewritten exactly
    (see the module docstring); the caller's module is left as it is."""
    out = copy.deepcopy(module).float().eval()
    for name, child in list(out.named_modules()):
        if not name:
            continue
        if isinstance(child, GDN):
            replace_submodule(out, name, ConvGDN(child))
        elif isinstance(child, nn.ConvTranspose2d):
            geometry = subpixel_geometry(child)
            if geometry is not None:
                replace_submodule(out, name, SubpixelConvTranspose2d(child, geometry))
    return out


def export_transform(module: nn.Module, example: Tensor) -> bytes:
    """ONNX bytes of ``module`` (after :func:`prepare_transform`) on inputs shaped like
    ``example`` ([B, C, H, W]; B, H and W dynamic); ImgcompError when the exported graph does
    not compute what the module does on ``example``."""
    from imgcomp.backends.session import new_session

    prepared = prepare_transform(module)
    x = example.detach().to("cpu", torch.float32).contiguous()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        try:
            torch.onnx.export(
                prepared,
                (x,),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={
                    INPUT: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"},
                },
                do_constant_folding=True,
            )
        except Exception as exc:  # the exporter's own errors name no imgcomp type
            raise ImgcompError(
                f"cannot export {type(module).__name__} to ONNX ({type(exc).__name__}: {exc})"
            ) from exc
        expected = prepared(x).numpy()
    data = buffer.getvalue()
    got = new_session(data, threads=1).run(None, {INPUT: x.numpy()})[0]
    scale = max(float(np.abs(expected).max()), 1.0)
    if (
        got.shape != expected.shape
        or float(np.abs(got - expected).max()) > _CHECK_TOLERANCE * scale
    ):
        raise ImgcompError(
            f"the ONNX export of {type(module).__name__} does not compute what the module does "
            f"(shapes {got.shape} / {expected.shape})"
        )
    return data
