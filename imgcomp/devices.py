"""Device names a user passes (``device="cuda:1"``), checked before anything moves there."""

from __future__ import annotations

import torch

from imgcomp.errors import ImgcompError

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device) -> torch.device:
    """``torch.device(name)`` for the CPU or a CUDA device this machine has; ImgcompError for
    anything else (a malformed name, ``meta``, CUDA on a CPU-only build, a missing GPU index)."""
    if isinstance(name, torch.device):
        device = name
    elif isinstance(name, str):
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError) as exc:
            raise ImgcompError(f"invalid device {name!r} (use cpu or cuda[:N]): {exc}") from None
    else:
        raise ImgcompError(f"device must be a string such as 'cpu' or 'cuda', got {name!r}")
    if device.type not in ("cpu", "cuda"):
        raise ImgcompError(f"unsupported device {str(device)!r} (use cpu or cuda[:N])")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ImgcompError(
                f"device {str(device)!r} requested but CUDA is not available "
                f"(this PyTorch build: {torch.__version__}); use device='cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ImgcompError(
                f"device {str(device)!r} requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return device
