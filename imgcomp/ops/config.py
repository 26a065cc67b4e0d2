"""Typed op configs: what a pruning or quantization does, as a value (torchao's ``quantize_``).

    imgcomp.prune(codec, L1Prune({"encoder": 0.3, "decoder": 0.3}))
    imgcomp.prune(codec, StructuredPrune({"decoder": 0.3}, importance="activation", round_to=4))
    imgcomp.quantize(codec, Int8())                 # or Bf16(), WeightOnly(8)

Each config writes two strings from one grammar, and reads both back:

- ``tag``: its part of a benchmark case id (``enc0.3,dec0,ent0:l1``, ``...:l1-global``,
  ``...:structured``, ``bf16``, ``int8``, ``w8``); :func:`parse_tag` reads one.
- ``record()``: the op record that enters the stream fingerprint (``prune=enc0.3,...:l1-layer``,
  ``prune=...:structured-activation:round4:recover300@0.0067``, ``quantize:int8:encoder+decoder``);
  :func:`parse_record` reads one. Records must never change: saved streams depend on them.

Ratios are keyed by the family's component names and written by abbreviation: a component's
first three letters (:func:`abbreviation`), so the names of one family must differ there.
Training data (``data=``) is a call argument of the ops, not part of a config: it does not
enter the record.
"""

from __future__ import annotations

import ast
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from imgcomp.errors import ImgcompError

__all__ = [
    "BALLE_COMPONENTS",
    "IMPORTANCES",
    "SCOPES",
    "WEIGHT_BITS",
    "Bf16",
    "Int8",
    "L1Prune",
    "OpConfig",
    "OpConfigError",
    "PruneConfig",
    "QuantConfig",
    "StructuredPrune",
    "WeightOnly",
    "abbreviation",
    "check_ratio",
    "parse_quant_mode",
    "parse_record",
    "parse_tag",
    "quant_config",
]

#: The Ballé models' components, in the order tags and records list them.
BALLE_COMPONENTS = ("encoder", "decoder", "entropy")
#: L1 pruning scopes: one threshold per layer, or one per component.
SCOPES = ("layer", "global")
#: Structured pruning's channel importance criteria.
IMPORTANCES = ("l1", "l2", "activation")
#: Bit widths the wK modes accept, most precise first (the precision study's rows).
WEIGHT_BITS = tuple(range(8, 1, -1))
#: Options of int8 quantization that records carry (``;key=value``, sorted by key).
INT8_OPTIONS = ("deconv", "gdn", "float_activations")

_NUMBER = frozenset("0123456789.eE+-")


class OpConfigError(ImgcompError, ValueError):
    """A tag, record or op config that the grammar cannot read or write."""


# -- components and ratios ---------------------------------------------------------------------
def abbreviation(name: str) -> str:
    """A component's abbreviation in tags and records: its first three letters."""
    return name[:3]


def _abbreviations(components: Sequence[str]) -> dict[str, str]:
    """Abbreviation -> component name; OpConfigError when two names share an abbreviation."""
    out: dict[str, str] = {}
    for name in components:
        if not isinstance(name, str) or len(name) < 3 or not name.isidentifier():
            raise OpConfigError(f"component names must be identifiers of 3+ letters: {name!r}")
        abbr = abbreviation(name)
        if out.get(abbr, name) != name:
            raise OpConfigError(
                f"components {out[abbr]!r} and {name!r} share the abbreviation {abbr!r}"
            )
        out[abbr] = name
    return out


def check_components(
    names: object, known: Sequence[str] | None = BALLE_COMPONENTS
) -> tuple[str, ...]:
    """Component names as a tuple (duplicates dropped), each one of ``known`` (None: any)."""
    if isinstance(names, str):
        names = (names,)
    try:
        out = tuple(dict.fromkeys(names))  # type: ignore[arg-type]
    except TypeError:
        raise OpConfigError(f"components must be a sequence of names, got {names!r}") from None
    for name in out:
        if known is not None and name not in known:
            raise OpConfigError(f"unknown component {name!r}; components are {', '.join(known)}")
    if not out:
        raise OpConfigError("select at least one component")
    return out


def check_ratio(name: str, value: object) -> float:
    """``value`` as a pruning ratio in [0, 1): a real number, not a string, bool or NaN."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0.0 <= float(value) < 1.0:  # NaN fails the comparison too
        raise OpConfigError(f"pruning ratio of {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _format_ratios(ratios: Iterable[tuple[str, float]]) -> str:
    return ",".join(f"{abbreviation(k)}{v:g}" for k, v in ratios)


def _parse_ratios(text: str, components: Sequence[str], what: str) -> dict[str, float]:
    """``enc0.3,dec0,ent0`` -> {"encoder": 0.3, ...}: abbreviations of ``components``."""
    names = _abbreviations(components)
    out: dict[str, float] = {}
    for item in text.split(","):
        abbr, number = item[:3], item[3:]
        if abbr not in names or not number or not set(number) <= _NUMBER:
            raise OpConfigError(
                f"cannot read {item!r} in {what}: write ABBRvalue, ABBR one of "
                f"{', '.join(names)} (components {', '.join(components)}), e.g. enc0.3"
            )
        if names[abbr] in out:
            raise OpConfigError(f"{what} names {names[abbr]} twice")
        try:
            value = float(number)
        except ValueError:
            raise OpConfigError(f"cannot read the ratio {number!r} in {what}") from None
        out[names[abbr]] = check_ratio(names[abbr], value)
    return out


# -- the configs -------------------------------------------------------------------------------
class OpConfig:
    """What every op config gives: its case-id ``tag`` and its fingerprint ``record()``."""

    @property
    def tag(self) -> str:
        """The config's part of a benchmark case id."""
        raise NotImplementedError

    def record(self) -> str:
        """The op record entering the stream fingerprint (never change what it writes)."""
        raise NotImplementedError


@dataclass(frozen=True)
class PruneConfig(OpConfig):
    """Per-component pruning ratios in [0, 1), kept as (name, ratio) pairs in the given order."""

    ratios: Mapping[str, float] | tuple[tuple[str, float], ...]
    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        ratios = self.ratios
        if isinstance(ratios, tuple):
            ratios = dict(ratios)
        if not isinstance(ratios, Mapping) or not ratios:
            raise OpConfigError(f"ratios must map component names to ratios, got {self.ratios!r}")
        _abbreviations(list(ratios))
        pairs = tuple((name, check_ratio(name, r)) for name, r in ratios.items())
        object.__setattr__(self, "ratios", pairs)

    @property
    def ratio_map(self) -> dict[str, float]:
        """Component name -> ratio."""
        return dict(self.ratios)  # type: ignore[arg-type]

    @property
    def pruned(self) -> bool:
        """Whether any component is pruned (a ratio above 0)."""
        return any(r > 0 for r in self.ratio_map.values())

    def over(self, components: Sequence[str]) -> PruneConfig:
        """The config with a ratio for each of ``components`` in their order (0: not given);
        OpConfigError for a name that is not one of them."""
        ratios = self.ratio_map
        check_components(list(ratios), components)
        return replace(self, ratios={c: ratios.get(c, 0.0) for c in components})

    @property
    def _method_tag(self) -> str:
        return self.method

    @property
    def tag(self) -> str:
        """e.g. ``enc0.3,dec0,ent0:l1``."""
        return f"{_format_ratios(self.ratios)}:{self._method_tag}"  # type: ignore[arg-type]

    def _record_method(self) -> str:
        raise NotImplementedError

    def record(self) -> str:
        """e.g. ``prune=enc0.3,dec0,ent0:l1-layer``."""
        return f"prune={_format_ratios(self.ratios)}:{self._record_method()}"  # type: ignore[arg-type]


@dataclass(frozen=True)
class L1Prune(PruneConfig):
    """Unstructured L1-magnitude pruning: the smallest conv weights zeroed, per layer or per
    component (``scope="global"``)."""

    scope: str = "layer"
    method: ClassVar[str] = "l1"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope not in SCOPES:
            raise OpConfigError(f"unknown L1 scope {self.scope!r}; use one of {SCOPES}")

    @property
    def _method_tag(self) -> str:
        return "l1" if self.scope == "layer" else f"l1-{self.scope}"

    def _record_method(self) -> str:
        return f"l1-{self.scope}"


@dataclass(frozen=True)
class StructuredPrune(PruneConfig):
    """Structured pruning: whole channels removed (``importance``), widths rounded down to
    multiples of ``round_to``, then ``recover_steps`` of fine-tuning on the family's objective
    (rate-distortion at ``lmbda``; None: the shipped weights' training lambda, resolved when the
    op runs; objectives without a lambda leave it None), against the unpruned model's
    reconstruction with ``distill`` (:mod:`imgcomp.ops.distill`; None: the family's
    ``recovery["distill"]``, resolved when the op runs). The case-id tag names
    the method only (``...:structured``); the record names every option."""

    importance: str = "l1"
    recover_steps: int = 0
    lmbda: float | None = None
    round_to: int | None = None
    distill: bool | None = None
    method: ClassVar[str] = "structured"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.importance not in IMPORTANCES:
            raise OpConfigError(
                f"unknown importance {self.importance!r}; use one of {', '.join(IMPORTANCES)}"
            )
        steps = self.recover_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise OpConfigError(f"recover_steps must be an integer >= 0, got {steps!r}")
        lam = self.lmbda
        if lam is not None and (
            isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0 < lam < 1e9
        ):
            raise OpConfigError(f"lmbda must be a positive number or None, got {lam!r}")
        r = self.round_to
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise OpConfigError(f"round_to must be a positive integer or None, got {r!r}")
        object.__setattr__(self, "round_to", None if r == 1 else r)
        if self.distill is not None and not isinstance(self.distill, bool):
            raise OpConfigError(f"distill must be True, False or None, got {self.distill!r}")

    def _record_method(self) -> str:
        out = f"structured-{self.importance}"
        if self.round_to:
            out += f":round{self.round_to}"
        if self.recover_steps:  # lmbda None: an objective without one (the RNN's residual L1)
            out += f":recover{self.recover_steps}"
            if self.lmbda is not None:
                out += f"@{self.lmbda:g}"
            if self.distill:
                out += ":distill"
        return out


@dataclass(frozen=True)
class QuantConfig(OpConfig):
    """Quantization of the units of ``components`` (all of the Ballé three by default); the
    names are checked against a family's when the op runs (:meth:`within`)."""

    components: tuple[str, ...] = BALLE_COMPONENTS
    mode: ClassVar[str] = ""

    def __post_init__(self) -> None:
        names = check_components(self.components, known=None)
        _abbreviations(names)  # identifiers: records join them with "+"
        object.__setattr__(self, "components", names)

    def within(self, components: Sequence[str]) -> QuantConfig:
        """The config itself; OpConfigError for a component that is not one of ``components``."""
        check_components(self.components, components)
        return self

    def options(self) -> dict[str, Any]:
        """The keyword options of ``quantize_model`` this config sets (recorded, sorted)."""
        return {}

    @property
    def tag(self) -> str:
        """The mode (``bf16``, ``int8``, ``w8``): case ids quantize every component."""
        if self.components != BALLE_COMPONENTS or self.options():
            raise OpConfigError(f"no case-id tag for {self!r}: case ids use the defaults")
        return self.mode

    def record(self) -> str:
        """e.g. ``quantize:int8:encoder+decoder+entropy;deconv=native``."""
        extra = "".join(f";{k}={v}" for k, v in sorted(self.options().items()))
        return f"quantize:{self.mode}:{'+'.join(self.components)}{extra}"


@dataclass(frozen=True)
class Bf16(QuantConfig):
    """bf16 channels_last transforms inside a float32 NCHW interface."""

    mode: ClassVar[str] = "bf16"


@dataclass(frozen=True)
class Int8(QuantConfig):
    """Static int8 post-training quantization (calibrated when applied); ``deconv``, ``gdn`` and
    ``float_activations`` as :func:`imgcomp.ops.quant.quantize_model` takes them (None: its
    default, not recorded)."""

    deconv: str | None = None
    gdn: str | None = None
    float_activations: tuple[str, ...] | None = None
    mode: ClassVar[str] = "int8"

    def __post_init__(self) -> None:
        super().__post_init__()
        names = self.float_activations
        if names is not None:
            if isinstance(names, str):
                names = (names,)
            object.__setattr__(self, "float_activations", tuple(str(n) for n in names))

    def options(self) -> dict[str, Any]:
        """deconv, gdn and float_activations where given (None: the default, not recorded)."""
        fa = self.float_activations
        out: dict[str, Any] = {"deconv": self.deconv, "gdn": self.gdn}
        out["float_activations"] = None if fa is None else list(fa)  # written as a list
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class WeightOnly(QuantConfig):
    """K-bit (2..8) symmetric per-output-channel weight-only fake quantization."""

    bits: int = field(default=8, kw_only=True)

    def __init__(self, bits: int, components: Sequence[str] = BALLE_COMPONENTS) -> None:
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "components", components)
        self.__post_init__()

    def __post_init__(self) -> None:
        super().__post_init__()
        b = self.bits
        if isinstance(b, bool) or not isinstance(b, int) or b not in WEIGHT_BITS:
            raise OpConfigError(f"weight-only bits must be one of 2..8, got {b!r}")

    @property
    def mode(self) -> str:  # type: ignore[override]
        """``wK``."""
        return f"w{self.bits}"


# -- modes and parsing -------------------------------------------------------------------------
MODES = ("bf16", "int8", *(f"w{k}" for k in sorted(WEIGHT_BITS)))


def parse_quant_mode(mode: object) -> tuple[str, int | None]:
    """``("bf16", None)``, ``("int8", None)`` or ``("w", K)``; OpConfigError otherwise."""
    if mode in ("bf16", "int8"):
        return mode, None  # type: ignore[return-value]
    if isinstance(mode, str) and mode in MODES:
        return "w", int(mode[1:])
    raise OpConfigError(f"unknown quantization mode {mode!r}; modes are {', '.join(MODES)}")


def quant_config(
    mode: object, components: Sequence[str] = BALLE_COMPONENTS, **options: Any
) -> QuantConfig:
    """The config of a quantization mode (bf16, int8, w2..w8) over ``components``; ``options``
    (deconv, gdn, float_activations) apply to int8 only."""
    kind, bits = parse_quant_mode(mode)
    if kind == "int8":
        unknown = sorted(set(options) - set(INT8_OPTIONS))
        if unknown:
            raise OpConfigError(f"unknown int8 options {unknown}; known: {INT8_OPTIONS}")
        return Int8(components, **options)
    if options:
        raise OpConfigError(f"{', '.join(sorted(options))} applies to the int8 mode only")
    return Bf16(components) if kind == "bf16" else WeightOnly(bits, components)  # type: ignore[arg-type]


def _prune_from(
    ratios: str, method: str, components: Sequence[str], what: str
) -> tuple[dict[str, float], list[str]]:
    if not ratios or not method:
        raise OpConfigError(f"cannot read {what}: write RATIOS:METHOD, e.g. enc0.3,dec0,ent0:l1")
    return _parse_ratios(ratios, components, what), method.split(":")


def parse_tag(tag: str, components: Sequence[str] = BALLE_COMPONENTS) -> OpConfig | None:
    """The config a case-id tag names (None for ``none``): a pruning tag ``RATIOS:l1``,
    ``RATIOS:l1-global``, ``RATIOS:structured`` (the config's defaults for what the tag does not
    say; RATIOS gives every one of ``components`` in order) or a quantization mode."""
    if not isinstance(tag, str):
        raise OpConfigError(f"tags are strings, got {tag!r}")
    if tag == "none":
        return None
    if ":" not in tag:
        try:
            return quant_config(tag)
        except OpConfigError:
            raise OpConfigError(
                f"cannot read the tag {tag!r}: a quantization mode ({', '.join(MODES)}), "
                "none, or a pruning RATIOS:METHOD such as enc0.3,dec0.3,ent0.3:l1"
            ) from None
    ratios, _, method = tag.partition(":")
    what = f"the pruning tag {tag!r}"
    values, parts = _prune_from(ratios, method, components, what)
    if list(values) != list(components):
        abbrs = ",".join(abbreviation(c) for c in components)
        raise OpConfigError(f"cannot read {what}: a tag gives every component's ratio, {abbrs}")
    if parts == ["structured"]:
        return StructuredPrune(values)
    if parts[0].startswith("l1") and len(parts) == 1:
        scope = parts[0].removeprefix("l1").removeprefix("-") or "layer"
        if parts[0] != "l1-layer" and scope in SCOPES:
            return L1Prune(values, scope=scope)
    raise OpConfigError(f"cannot read {what}: methods are l1, l1-global and structured")


def parse_record(record: str, components: Sequence[str] = BALLE_COMPONENTS) -> OpConfig:
    """The config an op record names (:meth:`OpConfig.record` reads back to it)."""
    if not isinstance(record, str):
        raise OpConfigError(f"op records are strings, got {record!r}")
    what = f"the op record {record!r}"
    if record.startswith("prune="):
        ratios, _, method = record.removeprefix("prune=").partition(":")
        values, parts = _prune_from(ratios, method, components, what)
        head, rest = parts[0], parts[1:]
        if head.startswith("l1-") and not rest:
            config: OpConfig = L1Prune(values, scope=head[3:])
        elif head.startswith("structured-"):
            options: dict[str, Any] = {"importance": head.removeprefix("structured-")}
            for part in rest:
                if (
                    part.startswith("round")
                    and "round_to" not in options
                    and "lmbda" not in options
                ):
                    options["round_to"] = _integer(part.removeprefix("round"), what)
                elif part.startswith("recover") and "recover_steps" not in options:
                    steps, at, lam = part.removeprefix("recover").partition("@")
                    options["recover_steps"] = _integer(steps, what)
                    options["lmbda"] = _number(lam, what) if at else None
                else:
                    raise OpConfigError(f"cannot read {part!r} in {what}")
            config = StructuredPrune(values, **options)
        else:
            raise OpConfigError(f"cannot read {what}: unknown pruning method {method!r}")
    elif record.startswith("quantize:"):
        head, *extras = record.split(";")
        parts = head.split(":")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise OpConfigError(f"cannot read {what}: write quantize:MODE:COMPONENTS")
        opts: dict[str, Any] = {}
        for extra in extras:
            key, sep, value = extra.partition("=")
            if not sep or key not in INT8_OPTIONS or key in opts:
                raise OpConfigError(f"cannot read {what}: unknown option {extra!r}")
            try:
                opts[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                opts[key] = value  # plain words (deconv=native) are written unquoted
        selection = check_components(tuple(parts[2].split("+")), components)
        config = quant_config(parts[1], selection, **opts)
    else:
        raise OpConfigError(f"cannot read {what}: known ops are prune= and quantize:")
    if config.record() != record:  # one spelling per op: what the record hash depends on
        raise OpConfigError(f"{what} is not written as this imgcomp writes it: {config.record()!r}")
    return config


def _integer(text: str, what: str) -> int:
    if not text.isdigit():
        raise OpConfigError(f"cannot read the integer {text!r} in {what}")
    return int(text)


def _number(text: str, what: str) -> float:
    if not text or not set(text) <= _NUMBER:
        raise OpConfigError(f"cannot read the number {text!r} in {what}")
    try:
        return float(text)
    except ValueError:
        raise OpConfigError(f"cannot read the number {text!r} in {what}") from None
