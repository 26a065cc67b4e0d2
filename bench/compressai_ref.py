"""CompressAI as a reference codec for side-by-side timing: imported with its optional
dependencies stubbed, loaded with our weights, wrapped as image -> bytes -> image.

``pip install compressai`` pulls torchvision and torch-geometric, which this project does not
install (torchvision would replace the pinned torch); CompressAI imports them, einops and
pandas only for its data transforms, point-cloud layers and plots, none of which the image
models touch. :func:`import_compressai` installs empty stand-ins for those that are missing
(here, in the bench harness: the package never imports CompressAI) and returns None, with the
reason, when CompressAI itself is not installed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imgcomp.codecs.learned import LearnedCodec, model_input
from imgcomp.families.balle.compressai import export_compressai_state_dict
from imgcomp.families.balle.model import ScaleHyperprior

__all__ = ["CompressAICodec", "import_compressai", "stand_in_hyperprior"]

#: Optional imports of CompressAI's that its image models never use.
STUBBED = ("torchvision", "torch_geometric", "einops", "pandas")


class _Anything:
    """Stand-in for any attribute of a stubbed module: a class to subclass, a decorator
    factory, a callable; none of it runs in the image models."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, fn: Any = None, *args: Any, **kwargs: Any) -> Any:
        return fn


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (_Anything,), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the stubbed packages (and any submodule) when nothing else does."""

    def find_spec(self, fullname: str, path: Any, target: Any = None):
        if fullname.split(".")[0] not in STUBBED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def import_compressai() -> tuple[types.ModuleType | None, str]:
    """(compressai, version) once importable, else (None, why): stubs what is missing of
    :data:`STUBBED` (appended to ``sys.meta_path``, so an installed package always wins)."""
    if _missing("compressai"):
        return None, "CompressAI is not installed (pip install --no-deps compressai)"
    if any(_missing(name) for name in STUBBED) and not any(
        isinstance(f, _StubFinder) for f in sys.meta_path
    ):
        sys.meta_path.append(_StubFinder())
    try:
        compressai = importlib.import_module("compressai")
        importlib.import_module("compressai.models")
    except Exception as exc:  # a broken install: the bench skips with the reason
        return None, f"CompressAI does not import: {type(exc).__name__}: {exc}"
    return compressai, getattr(compressai, "__version__", "?")


@dataclass
class CompressAICodec:
    """CompressAI's model of our model's architecture running our weights, as a codec: encode
    an image to its strings, decode the strings to uint8 pixels; the image handling matches
    :class:`imgcomp.codecs.learned.LearnedCodec`'s (edge padding, clamp, round)."""

    net: torch.nn.Module
    multiple: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> CompressAICodec:
        """CompressAI's twin of a Ballé model (same N, M, weights and scale table)."""
        compressai, why = import_compressai()
        if compressai is None:
            raise RuntimeError(why)
        from compressai.zoo.image import model_architectures

        net = model_architectures[model.arch](model.N, model.M)
        net.load_state_dict(export_compressai_state_dict(model))
        conditional = getattr(model, "y_conditional", None)
        table = None if conditional is None else conditional.scale_table.detach().clone()
        net.update(scale_table=table, force=True)
        return cls(net.eval(), int(model.downsampling_factor))

    def _input(self, img: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(img).permute(2, 0, 1)[None].to(torch.float32) / 255.0
        h, w = img.shape[:2]
        ph, pw = -h % self.multiple, -w % self.multiple
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    @torch.inference_mode()
    def encode(self, img: np.ndarray) -> tuple[list[list[bytes]], Any, tuple[int, int]]:
        out = self.net.compress(self._input(img))
        return out["strings"], out["shape"], img.shape[:2]

    @staticmethod
    def size(encoded: tuple[list[list[bytes]], Any, tuple[int, int]]) -> int:
        """Bytes of the strings (CompressAI writes no container)."""
        return sum(len(s) for strings in encoded[0] for s in strings)

    @torch.inference_mode()
    def decode(self, encoded: tuple[list[list[bytes]], Any, tuple[int, int]]) -> np.ndarray:
        strings, shape, (h, w) = encoded
        x_hat = self.net.decompress(strings, shape)["x_hat"]
        return x_hat[0, :, :h, :w].mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def stand_in_hyperprior(mean_scale: torch.nn.Module, images: list[np.ndarray]) -> LearnedCodec:
    """A ``bmshj2018-hyperprior`` codec to time, as no such weights ship: the trained
    ``g_a`` / ``g_s`` / ``h_a`` / ``z_prior`` of a shipped ``mbt2018-mean`` model, and an
    ``h_s`` of the same shapes as the architecture's (seed 0) whose last convolution gives each
    channel's RMS of ``y`` over ``images`` (zero weights, that bias): dense layers cost what
    trained ones cost, and the rates stay those of a sensible scale model, not a quality claim."""
    torch.manual_seed(0)
    model = ScaleHyperprior(mean_scale.N, mean_scale.M)
    shared = ("g_a.", "g_s.", "h_a.", "z_prior.")
    state = {k: v for k, v in mean_scale.state_dict().items() if k.startswith(shared)}
    missing = model.load_state_dict(state, strict=False).missing_keys
    assert all(k.startswith(("h_s.", "y_conditional.")) for k in missing), missing
    with torch.inference_mode():
        ys = [mean_scale.analysis(model_input(img, 64)) for img in images]
        rms = torch.cat([y.flatten(2) for y in ys], dim=2).pow(2).mean(dim=(0, 2)).sqrt()
        last = model.h_s[4]
        last.weight.zero_()
        last.bias.copy_(rms)
    return LearnedCodec(model.eval(), "scale-hyperprior", {"stand_in": True})
