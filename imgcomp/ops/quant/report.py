"""What a quantization did: per-layer decisions and serialized sizes before and after."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from imgcomp.nn.gdn import GDN

__all__ = ["LayerInfo", "QuantReport", "layers_of", "serialized_bytes"]


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a selected transform: quantized or kept float, and how or why."""

    name: str  # qualified name in the model, e.g. "g_s.0"
    kind: str  # original module class, e.g. "ConvTranspose2d"
    quantized: bool  # weights and/or arithmetic below float32
    detail: str
    weights: str = "float32"  # how the weights are stored: int8, bfloat16, int4 (fake), ...
    compute: str = "float32"  # the arithmetic it runs in: int8, bfloat16, float32


@dataclass
class QuantReport:
    """Result of :func:`quantize_model`.

    ``bytes_before`` / ``bytes_after`` are ``torch.save`` sizes of the selected transforms' state
    (the parts the mode changes). wK modes keep float32 tensors, so their ``bytes_after`` equals
    ``bytes_before`` and ``packed_bytes`` gives the K-bit packed size of the same transforms.
    """

    mode: str
    components: tuple[str, ...]
    layers: list[LayerInfo]
    bytes_before: int
    bytes_after: int
    packed_bytes: int | None = None
    engine: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        """bytes_after / bytes_before (packed_bytes / bytes_before for wK modes)."""
        after = self.packed_bytes if self.packed_bytes is not None else self.bytes_after
        return after / self.bytes_before if self.bytes_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["components"] = list(self.components)
        out["size_ratio"] = self.size_ratio
        return out

    def summary(self) -> str:
        """A few human-readable lines."""
        n_q = sum(layer.quantized for layer in self.layers)
        lines = [
            f"{self.mode} on {'+'.join(self.components)}: {n_q}/{len(self.layers)} layers "
            f"quantized; {self.bytes_before} -> "
            f"{self.packed_bytes if self.packed_bytes is not None else self.bytes_after} bytes "
            f"({self.size_ratio:.3f}x)" + (f"; engine {self.engine}" if self.engine else "")
        ]
        lines += [
            f"  {layer.name:<8} {layer.kind:<16} weights {layer.weights:<8} compute "
            f"{layer.compute:<8} {layer.detail}"
            for layer in self.layers
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def serialized_bytes(modules: Iterable[nn.Module]) -> int:
    """Size of the modules' state dicts saved as one safetensors file (the format shipped
    weights use: tensor bytes plus a small JSON header)."""
    from safetensors.torch import save

    tensors = {
        f"{i}.{k}": v.detach().cpu().contiguous()
        for i, m in enumerate(modules)
        for k, v in m.state_dict().items()
    }
    return len(save(tensors)) if tensors else 0


def layers_of(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers a report lists: leaf modules, with GDN counted as one layer."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        qual = f"{prefix}.{name}" if prefix else name
        if isinstance(child, GDN) or not list(child.children()):
            out.append((qual, child))
        else:
            out += layers_of(child, qual)
    return out
