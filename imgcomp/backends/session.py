"""onnxruntime sessions on the CPU execution provider, and an nn.Module that runs one.

:class:`OnnxRuntimeModule` stands in for a transform inside a model copy: torch tensors in and
out, so the latent codec and the entropy coding around it are unchanged. The ONNX bytes are a
buffer of the module, so they enter the model's state dict (and a codec's fingerprint), travel
with ``copy.deepcopy`` and rebuild the session on first use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from imgcomp.backends.deps import require_onnxruntime

__all__ = ["OnnxRuntimeModule", "new_session"]


def new_session(model: bytes, threads: int = 1):
    """An ``onnxruntime.InferenceSession`` of ``model`` on the CPU EP: ``threads`` intra-op
    threads that sleep when idle (no spinning to steal time from torch), all graph
    optimisations, sequential execution."""
    require_onnxruntime()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModule(nn.Module):
    """One transform as an ONNX graph run by onnxruntime (float32 NCHW in, float32 out).

    ``threads``: the session's intra-op threads; None: torch's thread count when the session
    is made. Transforms whose output both encoder and decoder must compute bit-identically
    (the hyper-synthesis) use 1, whatever the caller's thread count.
    """

    def __init__(self, model: bytes, threads: int | None = None, kind: str = "float32") -> None:
        super().__init__()
        data = torch.frombuffer(bytearray(model), dtype=torch.uint8)
        self.register_buffer("onnx_model", data)
        self.threads = threads
        self.kind = kind
        self._session = None

    def session(self):
        """The inference session (made on first use)."""
        if self._session is None:
            threads = torch.get_num_threads() if self.threads is None else self.threads
            self._session = new_session(self.onnx_model.numpy().tobytes(), threads)
        return self._session

    def forward(self, x: Tensor) -> Tensor:
        session = self.session()
        feed = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = session.run(None, {session.get_inputs()[0].name: feed})[0]
        return torch.from_numpy(out).to(x.device)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_session"] = None  # sessions neither pickle nor deep-copy; rebuilt on first use
        return state

    def extra_repr(self) -> str:
        threads = "torch's" if self.threads is None else self.threads
        return f"{self.kind}, {self.onnx_model.numel()} bytes, threads={threads}"
