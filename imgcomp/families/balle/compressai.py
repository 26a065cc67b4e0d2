"""Load CompressAI checkpoints (bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean).

CompressAI's layout differs from ours only in names and in constants it stores as buffers:
``entropy_bottleneck.*`` -> ``y_prior.*`` (factorized) or ``z_prior.*`` (hyperpriors),
``gaussian_conditional.*`` -> ``y_conditional.*``; GDN reparametrisation constants, bounds and
the aux-loss target are checked against ours and dropped; entropy-coder tables (``_offset``,
``_quantized_cdf``, ``_cdf_length``) are ignored because ours derive from the density.
:func:`export_compressai_state_dict` maps the other way (CompressAI's ``update()`` then builds
its tables), so both libraries can run the same weights side by side.
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from imgcomp.checkpoints import load_plain
from imgcomp.errors import CheckpointError, UnknownCodecError
from imgcomp.families.balle.model import ARCHITECTURES, BalleModel
from imgcomp.nn.density import FactorizedDensity, GaussianConditional, scale_table
from imgcomp.nn.gdn import GDN

__all__ = [
    "convert_compressai_state_dict",
    "detect_arch",
    "export_compressai_state_dict",
    "infer_dims",
    "load_compressai",
    "normalize_keys",
    "read_checkpoint",
]

_EB, _GC = "entropy_bottleneck", "gaussian_conditional"
_TABLES = ("_offset", "_quantized_cdf", "_cdf_length")
_OLD_LIST = re.compile(r"^entropy_bottleneck\._(biases|matrices|factors)\.(\d+)$")
_OLD_FLAT = re.compile(r"^entropy_bottleneck\._(bias|matrix|factor)(\d+)$")
_PLURAL = {"bias": "biases", "matrix": "matrices", "factor": "factors"}


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU; anything but plain data is refused."""
    return load_plain(path)


def _unwrap(obj: Any) -> dict[str, Tensor]:
    """The state_dict inside a bare dict or a training wrapper ``{epoch, state_dict, ...}``."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("checkpoint is not a (non-empty) state_dict")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"state_dict entries that are not named tensors: {_listing(bad)}")
    return dict(obj)


def normalize_keys(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Strip ``module.``, map old entropy-bottleneck names to ``matrices.N`` etc.; CPU tensors."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        new = key[len("module.") :] if key.startswith("module.") else key
        m = _OLD_LIST.match(new)
        if m:
            new = f"{_EB}.{m.group(1)}.{m.group(2)}"
        m = _OLD_FLAT.match(new)
        if m:
            new = f"{_EB}.{_PLURAL[m.group(1)]}.{m.group(2)}"
        if new in out:
            raise CheckpointError(f"checkpoint holds {new!r} twice (under different old names)")
        out[new] = value.detach().to("cpu")
    return out


def infer_dims(sd: Mapping[str, Tensor]) -> tuple[int, int]:
    """(N, M) from ``g_a.0.weight.size(0)`` and ``g_a.6.weight.size(0)``."""
    dims = []
    for key in ("g_a.0.weight", "g_a.6.weight"):
        t = sd.get(key)
        if t is None or t.dim() != 4:
            raise CheckpointError(f"cannot infer N and M: {key!r} missing or not a conv weight")
        dims.append(int(t.size(0)))
    return dims[0], dims[1]


def detect_arch(sd: Mapping[str, Tensor]) -> str:
    """Architecture name from the keys: no ``h_a`` -> factorized; h_s output 2M -> mbt2018-mean."""
    _, M = infer_dims(sd)
    if not any(k.startswith("h_a.") for k in sd):
        return "bmshj2018-factorized"
    last = sd.get("h_s.4.weight")
    if last is None or last.dim() != 4:
        raise CheckpointError("cannot detect the architecture: 'h_s.4.weight' missing")
    if last.size(0) == 2 * M:
        return "mbt2018-mean"
    if last.size(0) == M:
        return "bmshj2018-hyperprior"
    raise CheckpointError(f"cannot detect the architecture: h_s output {last.size(0)} for M={M}")


def _listing(keys: list[str], limit: int = 25) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _constants(model: BalleModel) -> tuple[dict[str, list[float]], set[str], dict[str, str]]:
    """CompressAI keys of (checked constants -> values, ignored tables, renamed prefixes)."""
    consts: dict[str, list[float]] = {}
    ignored: set[str] = set()
    prefixes: dict[str, str] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, GDN):
            for part in ("beta_reparam", "gamma_reparam"):
                rep = getattr(mod, part)
                consts[f"{name}.{part}.pedestal"] = [rep.pedestal_value]
                consts[f"{name}.{part}.lower_bound.bound"] = [
                    math.sqrt(rep.minimum + rep.pedestal_value)
                ]
        elif isinstance(mod, FactorizedDensity):
            prefixes[name] = _EB
            t = math.log(2.0 / mod.tail_mass - 1.0)
            consts[f"{_EB}.target"] = [-t, 0.0, t]
            consts[f"{_EB}.likelihood_lower_bound.bound"] = [mod.likelihood_bound_value]
            ignored.update(f"{_EB}.{t}" for t in _TABLES)
        elif isinstance(mod, GaussianConditional):
            prefixes[name] = _GC
            consts[f"{_GC}.scale_bound"] = [mod.scale_bound_value]
            consts[f"{_GC}.lower_bound_scale.bound"] = [mod.scale_bound_value]
            consts[f"{_GC}.likelihood_lower_bound.bound"] = [mod.likelihood_bound_value]
            ignored.update(f"{_GC}.{t}" for t in _TABLES)
    return consts, ignored, prefixes


def _their_key(ours: str, prefixes: Mapping[str, str]) -> str:
    head, _, rest = ours.partition(".")
    return f"{prefixes[head]}.{rest}" if head in prefixes else ours


def export_compressai_state_dict(model: BalleModel) -> OrderedDict[str, Tensor]:
    """CompressAI's state_dict of ``model`` (float32, CPU): our tensors under its names, the
    constants it stores, and empty coder tables, which its ``update(force=True)`` fills."""
    consts, ignored, prefixes = _constants(model)
    out: OrderedDict[str, Tensor] = OrderedDict(
        (_their_key(k, prefixes), v.detach().to("cpu", torch.float32).clone())
        for k, v in model.state_dict().items()
    )
    out.update((k, torch.tensor(v, dtype=torch.float32)) for k, v in consts.items())
    out.update((k, torch.zeros(0, dtype=torch.int32)) for k in sorted(ignored))
    return out


def convert_compressai_state_dict(
    sd: Mapping[str, Any], arch: str | None = None
) -> OrderedDict[str, Tensor]:
    """Our state_dict (float32, CPU) from a CompressAI one; strict about keys, shapes, constants.

    ``sd`` may be a bare state_dict or a training wrapper, with ``module.`` prefixes and old
    entropy-bottleneck names. ``arch`` is detected from the keys when None.
    """
    return _convert(sd, arch)[1]


def _convert(
    sd: Mapping[str, Any], arch: str | None
) -> tuple[tuple[str, int, int], OrderedDict[str, Tensor]]:
    sd = normalize_keys(_unwrap(sd))
    N, M = infer_dims(sd)
    if arch is None:
        arch = detect_arch(sd)
    elif arch not in ARCHITECTURES:
        raise UnknownCodecError(
            f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    else:
        try:
            detected = detect_arch(sd)
        except CheckpointError:  # let the key check below list what is wrong
            detected = arch
        if detected != arch:
            raise CheckpointError(f"checkpoint holds a {detected} model, not {arch}")
    with torch.device("meta"):
        ref = ARCHITECTURES[arch](N, M)
    consts, ignored, prefixes = _constants(ref)
    ours = ref.state_dict()
    mapping = {_their_key(k, prefixes): k for k in ours}

    expected = set(mapping) | set(consts) | ignored
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected:
        parts = [f"{arch} (N={N}, M={M}) checkpoint does not match the layout"]
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        raise CheckpointError("; ".join(parts))

    bad_consts = []
    for key, values in consts.items():
        t = sd[key]
        want = torch.tensor(values, dtype=torch.float64)
        if (
            not t.is_floating_point()
            or t.shape != want.shape
            or not torch.allclose(t.double(), want, rtol=1e-6, atol=0.0)
        ):
            bad_consts.append(key)
    if bad_consts:
        raise CheckpointError(
            f"constants differ from this implementation's: {_listing(bad_consts)}"
        )

    out: OrderedDict[str, Tensor] = OrderedDict()
    bad_shape, bad_value = [], []
    for theirs, key in mapping.items():
        t = sd[theirs]
        if key.endswith("scale_table") and t.numel() == 0:
            t = scale_table()  # never updated (training checkpoint): the default levels
        want = ours[key].shape
        if key.endswith("scale_table"):
            ok = t.dim() == 1 and t.numel() >= 2 and bool(torch.all(t[1:] > t[:-1]))
            if not ok or not bool(torch.all(t > 0)):
                bad_shape.append(f"{theirs} (not a positive increasing scale table)")
                continue
        elif t.shape != want:
            bad_shape.append(f"{theirs} {list(t.shape)} != {list(want)}")
            continue
        if not t.is_floating_point():
            bad_value.append(f"{theirs} (dtype {t.dtype})")
            continue
        if not bool(torch.isfinite(t).all()):
            bad_value.append(f"{theirs} (NaN or Inf)")
            continue
        out[key] = t.to(torch.float32).contiguous()
    if bad_shape:
        raise CheckpointError(f"tensor shapes do not match: {_listing(bad_shape)}")
    if bad_value:
        raise CheckpointError(f"invalid tensors: {_listing(bad_value)}")
    return (arch, N, M), out


def load_compressai(
    source: str | os.PathLike[str] | Mapping[str, Any], arch: str | None = None
) -> BalleModel:
    """Model (eval mode, CPU) from a CompressAI checkpoint file or an in-memory state_dict."""
    obj = source if isinstance(source, Mapping) else read_checkpoint(source)
    (arch, n, m), sd = _convert(obj, arch)
    model = ARCHITECTURES[arch](n, m)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # defensive: convert() already checked keys and shapes
        raise CheckpointError(f"checkpoint does not fit {arch}: {exc}") from None
    return model.eval()
