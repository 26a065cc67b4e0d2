"""Profile a learned codec's model: parameters, sparsity, storage and MACs per component.

Components are the model's ``encoder`` (g_a), ``decoder`` (g_s) and ``entropy`` (h_a, h_s and
the densities). What is measured:

* ``parameters``: elements of every ``nn.Parameter`` of the component, plus the weights and biases
  that quantized modules keep packed (read through their ``weight()``/``bias()`` methods), so an
  int8 model reports the same count as its float original. ``nonzero_parameters`` counts the
  elements that are not 0 (quantized weights: dequantized value not 0).
* ``serialized_bytes``: length of ``torch.save`` of the component's ``state_dict`` (tensors
  cloned, so no shared storage leaks in) into a ``BytesIO``. torch.save rather than safetensors
  because it also stores int8 quantized state dicts, so float and quantized sizes compare. If
  torch.save fails (an unpicklable packed object), the raw bytes of the state dict's tensors are
  counted instead and the profile's ``serialization`` says so.
* ``compressed_bytes``: ``zlib`` level 9 of those serialized bytes: zeros left by pruning compress,
  so this is where pruning shows on storage (dense float32 barely compresses).
* ``macs``: multiply-accumulates for ONE image of ``input_hw`` in the encode direction, measured
  with ``torch.utils.flop_counter.FlopCounterMode`` (MACs = flops / 2): encoder = g_a on the
  image, decoder = g_s on the latent y, entropy = h_a on y plus h_s on z (the hyper-latent). The
  image is first padded to the model's downsampling factor, as the codec does. Counted: every
  convolution and transposed convolution, including GDN's normalisation (a 1x1 convolution,
  C*C per pixel). Not counted: element-wise work (activations, GDN's square root, rounding), the
  densities (coding uses precomputed tables) and the entropy coder itself. Decoding costs
  ``module_macs["h_s"] + module_macs["g_s"]``.

Float models are measured on meta tensors (no arithmetic, any size, exact), in their own dtypes
(bf16 included) or, if that fails, as float32 copies. Models with quantized modules run for real
on small copies: quantized convolutions are invisible to FlopCounterMode, so their MACs are those
of the float layer with the same structure, computed from the layer's shape and its output size
(a transposed conv rewritten as conv + pixel shuffle counts as that conv). Those runs use the
smallest image the model accepts; the count is scaled to ``input_hw`` only after checking that it
grows exactly with H*W (else the full size is run). A component whose MACs cannot be established
gets ``macs=None`` and the reason in ``notes``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from imgcomp.errors import ImgcompError
from imgcomp.registry import find_family

__all__ = ["ComponentProfile", "ModelProfile", "format_profile", "profile_model"]

#: How ``serialized_bytes`` is measured.
SERIALIZATION = "torch.save(state_dict) into BytesIO"


@dataclass(frozen=True)
class ComponentProfile:
    """Sizes and cost of one component (or of the whole model)."""

    name: str
    parameters: int
    nonzero_parameters: int
    serialized_bytes: int
    compressed_bytes: int | None
    macs: int | None

    @property
    def sparsity(self) -> float:
        """Fraction of parameters that are zero (0.0 for a component without parameters)."""
        return 1.0 - self.nonzero_parameters / self.parameters if self.parameters else 0.0


@dataclass(frozen=True)
class ModelProfile:
    """Per-component profile of a model; ``total`` sums the components."""

    input_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    components: tuple[ComponentProfile, ...]
    total: ComponentProfile
    module_macs: dict[str, int | None] = field(default_factory=dict)
    serialization: str = SERIALIZATION
    macs_method: str = ""
    notes: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> ComponentProfile:
        """The profile of component ``name`` (or ``"total"``)."""
        if name == "total":
            return self.total
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)


# -- parameters and storage -----------------------------------------------------------------------
def _param_tensors(modules: Iterable[nn.Module]) -> list[Tensor]:
    """Every parameter tensor once: registered Parameters plus quantized modules' packed ones."""
    seen: set[int] = set()
    out: list[Tensor] = []

    def add(t: Any) -> None:
        if isinstance(t, Tensor) and id(t) not in seen:
            seen.add(id(t))
            out.append(t)

    for module in modules:
        for p in module.parameters():
            add(p)
        for sub in module.modules():
            for attr in ("weight", "bias"):
                getter = getattr(type(sub), attr, None)
                if callable(getter) and not isinstance(getattr(sub, attr, None), Tensor):
                    # quantized modules: weight()/bias() unpack the packed params (a method
                    # of that name that is something else is ignored)
                    with contextlib.suppress(Exception):
                        add(getattr(sub, attr)())
    return out


def _count(tensors: Iterable[Tensor]) -> tuple[int, int]:
    total = nonzero = 0
    for t in tensors:
        t = t.detach()
        total += t.numel()
        nonzero += int(torch.count_nonzero(t.dequantize() if t.is_quantized else t))
    return total, nonzero


def _state_dict(modules: Mapping[str, nn.Module]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, module in modules.items():
        out.update(module.state_dict(prefix=f"{name}." if name else ""))
    return out


def _raw_bytes(t: Tensor) -> bytes:
    t = t.detach().cpu()
    if t.is_quantized:
        t = t.int_repr()
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _serialize(state: Mapping[str, Any]) -> tuple[bytes, bool]:
    """(bytes, exact): torch.save of the state dict, or the tensors' raw bytes if that fails."""
    cloned = {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in state.items()}
    buf = io.BytesIO()
    try:
        torch.save(cloned, buf)
        return buf.getvalue(), True
    except Exception:  # any unpicklable entry: fall back to raw tensor bytes
        return b"".join(_raw_bytes(v) for v in cloned.values() if isinstance(v, Tensor)), False


# -- MACs ----------------------------------------------------------------------------------------
def _is_packed_conv(m: nn.Module) -> bool:
    """A convolution FlopCounterMode cannot see (quantized modules keep their weights packed)."""
    return not isinstance(m, nn.modules.conv._ConvNd) and all(
        hasattr(m, a) for a in ("in_channels", "out_channels", "kernel_size", "groups")
    )


def _is_plain_float(modules: Iterable[nn.Module]) -> bool:
    for module in modules:
        if any(_is_packed_conv(m) for m in module.modules()):
            return False
        for v in module.state_dict().values():
            if not isinstance(v, Tensor) or v.is_quantized:
                return False
        if any(isinstance(b, Tensor) and b.is_quantized for b in module.buffers()):
            return False
    return True


def _copy(module: nn.Module, device: str, cast: bool) -> nn.Module:
    """A copy to measure: on ``meta`` without copying any data; ``cast``: floats as float32."""
    if device != "meta":
        out = copy.deepcopy(module).cpu().eval()
        return out.float() if cast else out
    memo: dict[int, Any] = {}
    for t in [*module.parameters(), *module.buffers()]:
        dtype = torch.float32 if cast and t.is_floating_point() else t.dtype
        meta = torch.empty(t.shape, dtype=dtype, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(module, memo).eval()


def _input_dtype(module: nn.Module) -> torch.dtype:
    """The dtype a module's input should have: that of its first floating parameter."""
    for t in [*module.parameters(), *module.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.float32


class _PackedConvMacs:
    """Hooks adding the float-equivalent MACs of convolutions FlopCounterMode does not see."""

    def __init__(self, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.macs = 0
        self._stack: list[tuple[int, int]] = []
        self._handles: list[Any] = []

    def attach(self, module: nn.Module) -> None:
        for m in module.modules():
            if _is_packed_conv(m):
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post))

    def _pre(self, m: nn.Module, args: Any) -> None:
        self._stack.append((self.counter.get_total_flops(), self.macs))

    def _post(self, m: nn.Module, args: Any, out: Any) -> None:
        flops0, macs0 = self._stack.pop()
        if self.counter.get_total_flops() != flops0 or self.macs != macs0:
            return  # already counted (an aten convolution inside, or a nested packed conv)
        x = args[0]
        k = math.prod(_pair(m.kernel_size))
        if getattr(m, "transposed", "Transpose" in type(m).__name__):
            self.macs += (
                x.shape[0]
                * m.in_channels
                * math.prod(x.shape[2:])
                * k
                * (m.out_channels // m.groups)
            )
        else:
            self.macs += (
                out.shape[0]
                * m.out_channels
                * math.prod(out.shape[2:])
                * k
                * (m.in_channels // m.groups)
            )

    def detach(self) -> None:
        for h in self._handles:
            h.remove()


def _pair(v: Any) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _as_float(t: Any) -> Tensor:
    if isinstance(t, (tuple, list)):
        t = t[0]
    if t.is_quantized:
        t = t.dequantize()
    return t.float()


def _run_chain(
    mods: Mapping[str, nn.Module],
    hw: tuple[int, int],
    device: str,
    cast: bool,
    chain: tuple[tuple[str, str, str | None], ...],
) -> dict[str, int]:
    """MACs per module of the family's chain (module, input, output) for one ``hw`` image."""
    make = torch.empty if device == "meta" else torch.rand
    acts: dict[str, Tensor] = {"x": make(1, 3, *hw, device=device)}
    macs: dict[str, int] = {}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        packed = _PackedConvMacs(counter)
        for m in mods.values():
            packed.attach(m)
        try:
            for name, src, dst in chain:
                if name not in mods:
                    continue
                module = mods[name]
                x = acts[src].to(torch.float32 if cast else _input_dtype(module))
                f0, p0 = counter.get_total_flops(), packed.macs
                out = _as_float(module(x))
                macs[name] = (counter.get_total_flops() - f0) // 2 + packed.macs - p0
                if dst is not None:
                    acts[dst] = out
        finally:
            packed.detach()
    return macs


def _run_pass(
    model: nn.Module,
    hw: tuple[int, int],
    device: str,
    cast: bool,
    family: Any,
    params: Mapping[str, Any],
) -> dict[str, int]:
    """MACs per component module of the family's coding pass, by hooks on those modules."""
    make = torch.empty if device == "meta" else torch.rand
    x = make(1, 3, *hw, device=device)
    macs: dict[str, int] = {}
    handles = []
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        packed = _PackedConvMacs(counter)
        packed.attach(model)
        stack: list[tuple[int, int]] = []
        for comp in family.components.values():
            for prefix in comp.modules:
                module = model.get_submodule(prefix)
                macs[prefix] = 0

                def pre(m, args, _s=stack):
                    _s.append((counter.get_total_flops(), packed.macs))

                def post(m, args, out, _p=prefix, _s=stack):
                    f0, p0 = _s.pop()
                    macs[_p] += (counter.get_total_flops() - f0) // 2 + packed.macs - p0

                handles += [
                    module.register_forward_pre_hook(pre),
                    module.register_forward_hook(post),
                ]
        try:
            family.coding_pass(model, x.to(torch.float32 if cast else _input_dtype(model)), params)
        finally:
            packed.detach()
            for h in handles:
                h.remove()
    return macs


def _measure(
    run: Any, hw: tuple[int, int], factor: int, device: str, cast: bool
) -> tuple[dict[str, int], str]:
    """``run(hw, device, cast)`` at the full size on meta, else small and scaled when exact."""
    how = " (float32 copies)" if cast else ""
    if device == "meta":
        return run(hw, device, cast), f"FlopCounterMode on meta tensors{how}"
    small = run((factor, factor), device, cast)
    check = run((2 * factor, 3 * factor), device, cast)
    if all(check[n] == 6 * small[n] for n in small):
        scale = (hw[0] // factor) * (hw[1] // factor)
        method = f"FlopCounterMode + packed-conv shapes at {factor}x{factor}{how}, scaled by H*W"
        return {n: v * scale for n, v in small.items()}, method + " (checked exact)"
    method = f"FlopCounterMode + packed-conv shapes at the padded size{how}"
    return run(hw, device, cast), method


def _module_macs(
    model: nn.Module,
    hw: tuple[int, int],
    factor: int,
    family: Any,
    params: Mapping[str, Any],
) -> tuple[dict[str, int | None], str, list[str]]:
    """MACs per module the family names (its ``macs_chain``, else its ``coding_pass``'s
    component modules): meta tensors if the model is plain float, else real runs; dtypes kept
    first (a bf16 wrapper casts its own input), float32 copies if that fails."""
    chain = tuple(getattr(family, "macs_chain", ()) or ())
    if chain:
        names = [n for n, _, _ in chain if isinstance(getattr(model, n, None), nn.Module)]
        mods = {n: getattr(model, n) for n in names}

        def run(size, device, cast):
            copies = {n: _copy(m, device, cast) for n, m in mods.items()}
            return _run_chain(copies, size, device, cast, chain)

    elif family is not None and getattr(family, "coding_pass", None) is not None:
        names = [p for comp in family.components.values() for p in comp.modules]
        mods = {n: model.get_submodule(n) for n in names}

        def run(size, device, cast):
            return _run_pass(_copy(model, device, cast), size, device, cast, family, params)

    else:
        mods = {}
    if not mods:
        return {}, "none", ["the model's family declares no MACs chain or pass: not measured"]
    attempts = [("meta", False), ("meta", True)] if _is_plain_float(mods.values()) else []
    attempts += [("cpu", False), ("cpu", True)]
    errors = []
    for device, cast in attempts:
        try:
            found, method = _measure(run, hw, factor, device, cast)
            break
        except Exception as err:  # try the next way; report if none works
            errors.append(f"{device}{'/float32' if cast else ''}: {err!r}"[:300])
    else:
        return dict.fromkeys(names), "failed", [f"MACs not measured: {'; '.join(errors)}"]
    macs: dict[str, int | None] = dict(found)
    notes = []
    for n, m in mods.items():
        has_weights = any(t.dim() >= 2 for t in _param_tensors([m]))
        if macs[n] == 0 and has_weights:
            notes.append(f"{n}: no convolution visible to FlopCounterMode or recognised; MACs None")
            macs[n] = None
    return macs, method, notes


# -- public ---------------------------------------------------------------------------------------
def _qualified(model: nn.Module) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def profile_model(
    model: nn.Module,
    input_hw: tuple[int, int] = (512, 768),
    compress: bool = True,
    params: Mapping[str, Any] | None = None,
) -> ModelProfile:
    """Parameters, non-zeros, serialized/zlib sizes and MACs (one ``input_hw`` image) per component.

    ``model`` is a BalleModel (or anything with ``components``, plain or quantized); it is not
    modified. ``compress=False`` skips zlib (the slow part: ~3 MB/s; ``compressed_bytes`` None).
    See the module docstring for exactly what each number counts.
    """
    components = getattr(model, "components", None)
    if not isinstance(components, Mapping):
        raise ImgcompError("profile_model needs a learned-codec model with .components")
    if (
        not isinstance(input_hw, (tuple, list))
        or len(input_hw) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in input_hw)
        or min(input_hw) <= 0
    ):
        raise ImgcompError(f"input_hw must be two positive ints, got {input_hw!r}")
    family = find_family(model)
    comp_names = family.component_names if family is not None else tuple(components)
    if family is not None:
        factor = family.padding(model).multiple
    else:
        factor = int(getattr(model, "downsampling_factor", 16))
    h, w = input_hw
    padded = (-(-h // factor) * factor, -(-w // factor) * factor)
    module_macs, macs_method, notes = _module_macs(model, padded, factor, family, params or {})

    names = _qualified(model)
    full = model.state_dict()
    states: dict[str, dict[str, Any]] = {}
    counts: dict[str, tuple[int, int]] = {}
    for comp in comp_names:
        mods = {names.get(id(m), ""): m for m in components.get(comp, [])}
        states[comp] = _state_dict(mods)
        counts[comp] = _count(_param_tensors(mods.values()))
    rest = set(full) - {k for state in states.values() for k in state}
    if rest:  # state outside the three components still counts towards the total's sizes
        states["other"] = {k: full[k] for k in sorted(rest)}
        notes.append(f"{len(rest)} state-dict entries outside the components, counted in total")
    serialized = {k: _serialize(v) for k, v in states.items()}
    zipped: dict[str, int | None] = dict.fromkeys(serialized)
    if compress:  # zlib releases the GIL: compress the components side by side
        with ThreadPoolExecutor(max_workers=min(4, len(serialized))) as pool:
            sizes = pool.map(lambda d: len(zlib.compress(d[0], 9)), serialized.values())
            zipped = dict(zip(serialized, sizes, strict=True))

    profiles: list[ComponentProfile] = []
    for comp in comp_names:
        runs = [module_macs[n] for n in _macs_modules(family, comp) if n in module_macs]
        macs = None if None in runs else sum(v for v in runs if v is not None)
        macs_notes = family.macs_notes if family is not None else {}
        if comp in macs_notes and module_macs and not runs:  # none of its MACs modules
            notes.append(macs_notes[comp])
        profiles.append(
            ComponentProfile(comp, *counts[comp], len(serialized[comp][0]), zipped[comp], macs)
        )
    total = ComponentProfile(
        "total",
        parameters=sum(p.parameters for p in profiles),
        nonzero_parameters=sum(p.nonzero_parameters for p in profiles),
        serialized_bytes=sum(len(d) for d, _ in serialized.values()),
        compressed_bytes=sum(zipped.values()) if compress else None,  # type: ignore[arg-type]
        macs=None if any(p.macs is None for p in profiles) else sum(p.macs for p in profiles),
    )
    exact = all(ok for _, ok in serialized.values())
    return ModelProfile(
        input_hw=(h, w),
        padded_hw=padded,
        components=tuple(profiles),
        total=total,
        module_macs=module_macs,
        serialization=SERIALIZATION if exact else "raw tensor bytes (torch.save failed)",
        macs_method=macs_method,
        notes=tuple(notes),
    )


def _macs_modules(family: Any, comp: str) -> tuple[str, ...]:
    """The modules whose MACs make up component ``comp``: its quantization units with a MACs
    chain (Ballé: g_a; g_s; h_a + h_s), else the component's own module prefixes."""
    if family is None:
        return ()
    if getattr(family, "macs_chain", ()):
        return tuple(family.quant_units.get(comp, ()))
    return tuple(family.components[comp].modules)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def format_profile(p: ModelProfile) -> str:
    """A small text table of a :class:`ModelProfile`."""
    header = (
        f"{'component':<10} {'params':>10} {'non-zero':>10} {'sparsity':>8} "
        f"{'serialized':>11} {'zlib-9':>11} {'GMACs':>8}"
    )
    lines = [header, "-" * len(header)]
    for c in (*p.components, p.total):
        macs = "n/a" if c.macs is None else f"{c.macs / 1e9:.3f}"
        zipped = "n/a" if c.compressed_bytes is None else _size(c.compressed_bytes)
        lines.append(
            f"{c.name:<10} {c.parameters:>10,} {c.nonzero_parameters:>10,} {c.sparsity:>8.1%} "
            f"{_size(c.serialized_bytes):>11} {zipped:>11} {macs:>8}"
        )
    ih, iw = p.input_hw
    ph, pw = p.padded_hw
    lines.append(
        f"MACs for one {ih}x{iw} image (padded to {ph}x{pw}), encode direction; "
        f"sizes: {p.serialization}, zlib level 9"
    )
    lines.extend(f"note: {n}" for n in p.notes)
    return "\n".join(lines)
