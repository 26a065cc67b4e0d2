"""Saved codecs: a pruned / quantized learned codec in one safetensors file, and back.

    imgcomp.save_codec(imgcomp.quantize(codec, "int8"), "fast.safetensors")
    fast = imgcomp.load_codec("fast.safetensors")       # decodes the streams the original wrote

The file holds the model's state dict as plain tensors (int8 FX graphs in the compact form of
:mod:`imgcomp.ops.quant.state`: integer values plus scales) and, in the safetensors metadata,
``format`` (:data:`SAVED_FORMAT`) and ``codec``, a JSON record: the registry ``name`` and
``params`` of the base codec, the ``ops`` applied (``codec.ops``), the model ``config`` (arch,
N, M after pruning), the stream ``fingerprint`` (hex) and the imgcomp version that wrote it.

Loading rebuilds the structure and then loads the values: the model from ``config`` (the
family's ``rebuild``), every layer's width from the saved weight shapes where the config does not
name them all (the family's ``resize_saved``: Ballé's structured pruning), the quantized transforms
by re-applying each bf16 / int8 op to the rebuilt float model (int8 calibrated on one small
synthetic image: the saved values then replace the calibrated ones). L1 pruning and wK change
values only. The rebuilt codec's fingerprint must equal the saved one, else CheckpointError:
a file whose tensors or record were edited never loads as a different model. Reading uses
safetensors only (no pickle), and every failure is a CheckpointError.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import CheckpointError, ImgcompError
from imgcomp.fsutil import atomic_path
from imgcomp.ops.config import BALLE_COMPONENTS, Bf16, Int8, OpConfig, parse_record
from imgcomp.packed import SUFFIX as PACKED_SUFFIX
from imgcomp.packed import read_safetensors_bytes, safetensors_header
from imgcomp.train.export import read_weight_shapes

__all__ = [
    "LOAD_FORMAT",
    "SAVED_FORMAT",
    "is_saved_codec",
    "load_saved_codec",
    "read_record",
    "save_codec",
]

#: The ``format`` metadata of a saved codec file.
SAVED_FORMAT = "imgcomp.codec/1"
#: ``imgcomp.load_codec(..., format=LOAD_FORMAT)`` names a saved codec file.
LOAD_FORMAT = "imgcomp-codec"
_RECORD = "codec"


# -- op records --------------------------------------------------------------------------------
#: Records of the removed ``structured_op`` (values only, like any pruning): still loadable.
_LEGACY_PRUNE = "prune-structured("


def _op_config(op: object, components: Sequence[str] = BALLE_COMPONENTS) -> OpConfig | None:
    """The op config of a record this module can rebuild (None: a legacy pruning), else an
    error; the grammar is :mod:`imgcomp.ops.config`'s, over the family's ``components``."""
    if isinstance(op, str) and op.startswith(_LEGACY_PRUNE):
        return None
    if isinstance(op, str) and not op.startswith(("prune=", "quantize:")):
        raise ImgcompError(f"cannot save or rebuild the op {op!r} (known: prune, quantize)")
    return parse_record(op, components)  # type: ignore[arg-type]


def _check_op(op: object, components: Sequence[str] = BALLE_COMPONENTS) -> str:
    """The op record if this module can rebuild it (pruning, quantization), else an error."""
    _op_config(op, components)
    return op  # type: ignore[return-value]


def _codec_family_name(name: str) -> str | None:
    """The family of learned codec ``name``, None when it is not a registered learned codec."""
    from imgcomp.registry import codec_family

    try:
        return codec_family(name)
    except ImgcompError:
        return None


def _family_components(name: str) -> tuple[str, ...]:
    """The components of the family of learned codec ``name`` (Ballé's if it has none)."""
    from imgcomp.registry import get_family

    family = _codec_family_name(name)
    return get_family(family).component_names if family else tuple(BALLE_COMPONENTS)


# -- saving ------------------------------------------------------------------------------------
def save_codec(codec: LearnedCodec, path: str | os.PathLike[str]) -> Path:
    """Write a learned codec (with its pruning / quantization ops) to ``path`` (safetensors)."""
    from imgcomp.version import __version__

    if not isinstance(codec, LearnedCodec):
        raise ImgcompError(
            f"only learned codecs can be saved; {getattr(codec, 'name', codec)!r} is not one "
            "(a classic codec is rebuilt from its name and parameters)"
        )
    ops = [_check_op(op, _family_components(codec.name)) for op in codec.ops]
    record = {
        "name": codec.name,
        "params": codec.params,
        "ops": ops,
        "config": dict(codec.model.config),
        "fingerprint": codec.fingerprint.hex(),
        "imgcomp": __version__,
    }
    tensors = {
        key: value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for key, value in codec.model.state_dict().items()
    }
    dest = Path(path)
    with atomic_path(dest, suffix=".safetensors.tmp") as tmp:
        save_file(
            tensors, os.fspath(tmp), metadata={"format": SAVED_FORMAT, _RECORD: _dumps(record)}
        )
    return dest


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


# -- reading -----------------------------------------------------------------------------------
def _metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    where = os.fspath(path)
    if Path(where).suffix == PACKED_SUFFIX:  # packed weights (saved codecs are never packed)
        if not Path(where).exists():
            raise CheckpointError(f"no such file: {where!r}")
        return dict(safetensors_header(read_safetensors_bytes(where))[1])
    try:
        with safe_open(where, framework="pt") as f:
            return dict(f.metadata() or {})
    except FileNotFoundError:
        raise CheckpointError(f"no such file: {where!r}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where!r} is not a readable safetensors file: {exc}") from None


def is_saved_codec(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a readable safetensors file written by :func:`save_codec`."""
    try:
        return _metadata(path).get("format") == SAVED_FORMAT
    except CheckpointError:
        return False


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON record of a saved codec file, checked for its fields (CheckpointError if not)."""
    where = os.fspath(path)
    meta = _metadata(path)
    if meta.get("format") != SAVED_FORMAT:
        hint = ""
        if meta.get("format", "").startswith("imgcomp.weights/"):
            hint = "; it is a weights file: load it with imgcomp.load_codec(NAME, PATH)"
        raise CheckpointError(f"{where!r} is not a saved imgcomp codec{hint}")
    try:
        record = json.loads(meta[_RECORD])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{where!r}: unreadable codec record: {exc}") from None
    _check_record(record, where)
    return record


def _check_record(record: object, where: str) -> None:
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where!r}: bad codec record: {what}")

    if not isinstance(record, dict):
        raise bad("not a JSON object")
    for key, kind in (("name", str), ("params", dict), ("ops", list), ("config", dict)):
        if not isinstance(record.get(key), kind):
            raise bad(f"{key!r} missing or not a {kind.__name__}")
    scalar = (str, int, float, bool, type(None))
    if not all(isinstance(k, str) and isinstance(v, scalar) for k, v in record["params"].items()):
        raise bad("params must map names to numbers, strings or booleans")
    fp = record.get("fingerprint")
    if not isinstance(fp, str) or not re.fullmatch(r"[0-9a-f]{16}", fp):
        raise bad("fingerprint must be 16 hex digits")
    config = record["config"]
    components = _family_components(record["name"])
    family = _codec_family_name(record["name"])
    if family == "balle" or (family is None and "arch" in config):  # a Ballé model
        n, m = config.get("N"), config.get("M")
        dims_ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (n, m))
        if not isinstance(config.get("arch"), str) or not dims_ok:
            raise bad("config must give arch, N and M (positive integers)")
    try:
        for op in record["ops"]:
            _check_op(op, components)
    except ImgcompError as exc:
        raise bad(str(exc)) from None


# -- rebuilding --------------------------------------------------------------------------------
def _weight_shape(saved: Mapping[str, Tensor], name: str, layer: nn.Module) -> tuple[int, int]:
    """(in, out) channels of float layer ``name`` read from its saved weight, in whichever form
    the ops left it: float, bf16 (``inner.``), int8 (``graph.``: integer values, sub-pixel
    weights in their transposed-conv layout, or int8-stored weights of float layers)."""
    attr, _, rest = name.partition(".")
    candidates = [
        f"{name}.weight",
        f"{attr}.inner.{rest}.weight",
        f"{attr}.graph.{rest}.weight",
        f"{attr}.graph.{rest}.weight.int",
        f"{attr}.graph.{rest}.conv.weight.int",
        f"{attr}.graph.{rest}.weight_int8",
    ]
    found = [saved[k] for k in candidates if k in saved]
    if len(found) != 1:
        raise CheckpointError(f"found {len(found)} saved weights for layer {name}, expected 1")
    shape = tuple(found[0].shape)
    if len(shape) != 4 or shape[2:] != tuple(layer.kernel_size) or min(shape) < 1:
        raise CheckpointError(f"saved weight of {name} has shape {list(shape)}")
    return (shape[0], shape[1]) if isinstance(layer, nn.ConvTranspose2d) else (shape[1], shape[0])


def _calibration_image() -> np.ndarray:
    """One fixed 64 x 64 image: int8 graphs need a calibration pass to exist, not good ranges."""
    y, x = np.mgrid[0:64, 0:64]
    noise = np.random.default_rng(0).integers(0, 64, (64, 64, 3))
    return (np.stack([x * 3, y * 3, (x + y) * 2], axis=-1) + noise).clip(0, 255).astype(np.uint8)


def _replay(model: nn.Module, ops: list[str], components: Sequence[str]) -> None:
    """Re-apply the ops that replace modules (bf16, int8) to the rebuilt float model, in order."""
    from imgcomp.ops.quant.api import quantize_model

    for op in ops:
        config = _op_config(op, components)
        if isinstance(config, Int8):
            quantize_model(
                model, "int8", [_calibration_image()], config.components, **config.options()
            )
        elif isinstance(config, Bf16):
            quantize_model(model, "bf16", None, config.components)
        # pruning: the shapes were rebuilt, the values come from the file; wK rounds weight
        # values only: the saved values are already rounded


def _load_values(model: nn.Module, saved: Mapping[str, Tensor]) -> None:
    """Load the saved tensors into the rebuilt model; the keys must match, both ways."""
    expected = list(model.state_dict())  # plain form, as saved

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    problems = []
    if missing := [k for k in expected if k not in saved]:
        problems.append(f"missing {some(missing)}")
    if unexpected := sorted(set(saved) - set(expected)):
        problems.append(f"unexpected {some(unexpected)}")
    if problems:
        raise CheckpointError(
            f"the saved tensors do not fit the model its ops rebuild: {'; '.join(problems)}"
        )
    model.load_state_dict(saved, strict=True)


def _build_float(family: Any, config: Mapping[str, Any]) -> nn.Module:
    """The float model a saved record's ``config`` describes (before resizing and ops)."""
    if family.rebuild is not None:
        return family.rebuild(config)
    training = family.training
    return training.build(training.normalize(config))


def _check_size_first(where: str, family: Any, config: Mapping[str, Any]) -> None:
    """CheckpointError when the model the record describes, built on the meta device (no
    memory) and resized to the file's weight shapes, has more values than the file's tensors
    hold: a record claiming huge widths over small tensors is refused before any allocation."""
    shapes = read_weight_shapes(where)
    stand_ins = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    try:
        with torch.device("meta"):
            model = _build_float(family, config)
            if family.resize_saved is not None:
                family.resize_saved(
                    model, lambda name, layer: _weight_shape(stand_ins, name, layer), stand_ins
                )
    except CheckpointError as exc:
        raise CheckpointError(f"{where!r}: {exc}") from None
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{where!r}: its record describes no model: {type(exc).__name__}: {exc}"
        ) from None
    need = sum(t.numel() for t in model.state_dict().values())
    have = sum(math.prod(s) for s in shapes.values())
    if need > have:
        raise CheckpointError(
            f"{where!r}: its record describes a model of {need:,} values, but the file holds "
            f"{have:,}: the record was edited"
        )


def load_saved_codec(path: str | os.PathLike[str], device: str = "cpu") -> LearnedCodec:
    """The codec :func:`save_codec` wrote to ``path``; CheckpointError when the file is not one,
    was edited, or does not rebuild into the model that was saved (fingerprint check)."""
    from imgcomp.registry import canonical_name, codec_family, get_family
    from imgcomp.zoo import LEARNED

    where = os.fspath(path)
    record = read_record(path)
    name, params, ops, config = (record[k] for k in ("name", "params", "ops", "config"))
    try:
        family_name = codec_family(name) if canonical_name(name) == name else None
    except ImgcompError:
        family_name = None
    if family_name is None:
        raise CheckpointError(f"{where!r}: {name!r} is not a learned codec of this imgcomp")
    family = get_family(family_name)
    if family_name == "balle" and LEARNED[name] != config.get("arch"):
        raise CheckpointError(f"{where!r}: {name} is a {LEARNED[name]}, not {config.get('arch')}")
    if torch.device(device).type != "cpu" and any(
        isinstance(_op_config(op, family.component_names), Int8) for op in ops
    ):
        raise ImgcompError("int8 codecs run on the CPU; load this one with device='cpu'")
    _check_size_first(where, family, config)
    try:
        saved = load_file(where)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read the tensors of {where!r}: {exc}") from None
    try:
        with torch.random.fork_rng(devices=[]):  # the rebuild draws values; the caller keeps RNG
            torch.manual_seed(0)
            model = _build_float(family, config)
            if family.resize_saved is not None:  # widths the config does not name (pruned)
                family.resize_saved(
                    model, lambda name, layer: _weight_shape(saved, name, layer), saved
                )
            model.eval()
            _replay(model, ops, family.component_names)
        _load_values(model, saved)
        make = family.codec or LearnedCodec
        codec = make(model, name, params, device=device, ops=tuple(ops))
        fingerprint = codec.fingerprint.hex()
    except CheckpointError as exc:
        raise CheckpointError(f"{where!r}: {exc}") from None
    except Exception as exc:  # shapes or values that do not fit the rebuilt model
        raise CheckpointError(
            f"{where!r} does not rebuild into a codec: {type(exc).__name__}: {exc}"
        ) from None
    if fingerprint != record["fingerprint"]:
        raise CheckpointError(
            f"{where!r}: the rebuilt codec's fingerprint {fingerprint} is not the saved "
            f"{record['fingerprint']}: the file was modified, or written by another imgcomp"
        )
    return codec
