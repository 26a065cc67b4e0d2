"""The study table: per pruning / quantization configuration, time, SSIM and real stream size.

Reproduces the layout of the original study (per-component pruning ratios; total inference time;
SSIM; average compressed image size in bytes) with every number measured on real bitstreams:
each image is encoded to bytes and those bytes are decoded. Encode and decode are timed as the
benchmark's speed-ups are (:mod:`imgcomp.timing`): in rounds that each run every configuration's
encodes and decodes in turn, medians kept.

The study is generic over model families (:class:`imgcomp.families.spec.FamilySpec`): a
configuration carries a ratio per component of its family, the table's ratio columns are the
family's ``table_components`` (Ballé: encoder, decoder, probability model; the Toderici RNN's
Table 1: encoder, decoder) and the grids are per family (:func:`get_grid`).

    codec = imgcomp.create_codec("mbt2018-mean", quality=3)
    images = [(item.name, item.load()) for item in load_dataset("kodak")]
    rows = run_study(codec, STUDY_GRID, images)
    print(format_study_table(rows))

    rnn = imgcomp.create_codec("toderici2017", iterations=3)
    rows = run_study(rnn, get_grid("study", family=rnn.family), images)   # Table 1: 4 rows
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np

import imgcomp
from imgcomp import progress
from imgcomp.codecs.base import Codec
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError, UnknownCodecError
from imgcomp.evaluate import ImageResult, RoundTripError, evaluate_image, summarize
from imgcomp.memory import format_mib, peak_fields
from imgcomp.ops.config import (
    BALLE_COMPONENTS,
    L1Prune,
    OpConfig,
    OpConfigError,
    PruneConfig,
    QuantConfig,
    StructuredPrune,
    abbreviation,
    check_ratio,
    parse_quant_mode,
    parse_tag,
    quant_config,
)
from imgcomp.ops.profile import ComponentProfile
from imgcomp.registry import codec_family, get_family, list_families
from imgcomp.timing import SideBySide, time_side_by_side

__all__ = [
    "DEFAULT_FAMILY",
    "EXTENDED_GRID",
    "GRIDS",
    "GRID_RATIOS",
    "STRUCTURED_CONFIG",
    "STRUCTURED_RECOVER_STEPS",
    "STRUCTURED_ROUND_TO",
    "STUDY_GRID",
    "TABLE_COLUMNS",
    "StudyConfig",
    "StudyProgress",
    "StudyRow",
    "case_family",
    "config_from_tags",
    "extended_grid",
    "format_study_table",
    "get_grid",
    "parse_case_id",
    "row_from_summary",
    "rows_to_json",
    "run_study",
    "structured_config",
    "study_grid",
]

#: The family of a configuration that names none (``StudyConfig()``, ``STUDY_GRID``): Ballé,
#: the original study's models.
DEFAULT_FAMILY = "balle"
#: The ratios the study's grid crosses over the family's table components.
GRID_RATIOS = (0.0, 0.3)

_OPTIONS = ("method", "scope", "importance", "recover_steps", "quant", "round_to")


def _components(family: str) -> tuple[str, ...]:
    return get_family(family).component_names


@dataclass(frozen=True, init=False)
class StudyConfig:
    """One configuration of the study: per-component pruning ratios, method, then quantization.

    ``ratios`` holds a (component, ratio) pair for every component of ``family``, in the family's
    order (components not given are 0). Build one with the ratios by name, or positionally in the
    order of the family's table components (Ballé: encoder, decoder, entropy; the RNN: encoder,
    decoder), or as a ``ratios`` mapping / tuple of pairs::

        StudyConfig(0.3, 0.0, 0.3)                                  # Ballé
        StudyConfig(decoder=0.3, quant="w8")                        # Ballé
        StudyConfig(encoder=0.3, decoder=0.3, family="rnn")         # the RNN
        StudyConfig(ratios={"binarizer": 0.5}, family="rnn")
    """

    ratios: tuple[tuple[str, float], ...]
    method: str = "l1"
    scope: str = "layer"
    importance: str = "l1"
    recover_steps: int = 0
    quant: str | None = None
    round_to: int | None = None
    family: str = DEFAULT_FAMILY

    def __init__(
        self,
        *positional: float,
        ratios: Mapping[str, float] | Iterable[tuple[str, float]] | None = None,
        method: str = "l1",
        scope: str = "layer",
        importance: str = "l1",
        recover_steps: int = 0,
        quant: str | None = None,
        round_to: int | None = None,
        family: str = DEFAULT_FAMILY,
        **named: float,
    ) -> None:
        spec = get_family(family)
        components = spec.component_names
        given: dict[str, float] = {}
        if positional:
            order = spec.table_components
            if len(positional) > len(order):
                raise OpConfigError(
                    f"{len(positional)} ratios given; family {family!r} takes up to "
                    f"{len(order)} positionally ({', '.join(order)})"
                )
            given.update(zip(order, positional, strict=False))
        if ratios is not None:
            pairs = ratios.items() if isinstance(ratios, Mapping) else ratios
            for name, value in pairs:
                if name in given and given[name] != value:
                    raise OpConfigError(f"the ratio of {name} is given twice")
                given[name] = value
        for name, value in named.items():
            if name in given:
                raise OpConfigError(f"the ratio of {name} is given twice")
            given[name] = value
        unknown = [name for name in given if name not in components]
        if unknown:
            raise OpConfigError(
                f"unknown component {unknown[0]!r} of family {family!r}; its components are "
                f"{', '.join(components)} (options: {', '.join(_OPTIONS)}, family)"
            )
        pairs = tuple((c, check_ratio(c, given.get(c, 0.0))) for c in components)
        if quant is not None:
            parse_quant_mode(quant)  # OpConfigError for an unknown mode
        values = {"ratios": pairs, "method": method, "scope": scope, "importance": importance}
        values |= {"recover_steps": recover_steps, "quant": quant, "round_to": round_to}
        values["family"] = family
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def ratio_map(self) -> dict[str, float]:
        """Component -> pruning ratio (every component of the family)."""
        return dict(self.ratios)

    def ratio(self, component: str) -> float:
        """The pruning ratio of ``component``; AttributeError when the family has none such."""
        for name, value in self.ratios:
            if name == component:
                return value
        raise AttributeError(f"family {self.family!r} has no component {component!r}")

    # the Ballé components by name (what the Ballé-only study called its fields)
    encoder = property(lambda self: self.ratio("encoder"), doc="The encoder's ratio.")
    decoder = property(lambda self: self.ratio("decoder"), doc="The decoder's ratio.")
    entropy = property(lambda self: self.ratio("entropy"), doc="The entropy model's ratio.")

    @property
    def pruned(self) -> bool:
        """Whether any component is pruned (a ratio above 0)."""
        return any(r > 0 for _, r in self.ratios)

    @property
    def prune_op(self) -> PruneConfig | None:
        """The pruning as an op config over every component of the family (None: no pruning)."""
        if not self.pruned:
            return None
        ratios = self.ratio_map
        if self.method == "l1":
            return L1Prune(ratios, scope=self.scope)
        if self.method == "structured":
            return StructuredPrune(
                ratios,
                importance=self.importance,
                recover_steps=self.recover_steps,
                round_to=self.round_to,
            )
        raise ImgcompError(f"unknown pruning method {self.method!r}; use l1 or structured")

    @property
    def quant_op(self) -> QuantConfig | None:
        """The quantization as an op config over every component of the family (None: none)."""
        return quant_config(self.quant, _components(self.family)) if self.quant else None

    @classmethod
    def from_ops(
        cls, prune: OpConfig | None, quant: OpConfig | None, family: str = DEFAULT_FAMILY
    ) -> StudyConfig:
        """The configuration of a pruning config and a quantization config (either None) of
        ``family``. The quantization must be of every component: the family's, or the grammar's
        default (a bare mode tag such as ``int8`` reads as that, whatever the family)."""
        if prune is not None and not isinstance(prune, PruneConfig):
            raise OpConfigError(f"{prune.tag!r} is not a pruning")
        if quant is not None and not isinstance(quant, QuantConfig):
            raise OpConfigError(f"{quant.tag!r} is not a quantization")
        q = None
        if quant is not None:
            every = (tuple(BALLE_COMPONENTS), _components(family))
            if quant.options() or quant.components not in every:
                raise OpConfigError(
                    f"no study configuration for {quant!r}: the study quantizes every component "
                    "with the default options"
                )
            q = quant.mode
        if prune is None:
            return cls(quant=q, family=family)
        r = prune.over(_components(family)).ratio_map
        options: dict[str, Any] = {}
        if isinstance(prune, L1Prune):
            options = {"method": "l1", "scope": prune.scope}
        elif isinstance(prune, StructuredPrune):
            options = {"method": "structured", "importance": prune.importance}
            options |= {"recover_steps": prune.recover_steps, "round_to": prune.round_to}
        return cls(ratios=r, quant=q, family=family, **options)

    @property
    def method_label(self) -> str:
        """Pruning method as written in case ids: l1, l1-global or structured ("-": no pruning)."""
        op = self.prune_op
        return "-" if op is None else op.tag.partition(":")[2]

    @property
    def prune_tag(self) -> str:
        """The pruning part of the label, e.g. ``enc0.3,dec0,ent0:l1`` (the RNN:
        ``enc0.3,bin0,dec0.3:l1``; "none": no pruning)."""
        op = self.prune_op
        return "none" if op is None else op.tag

    @property
    def label(self) -> str:
        """Id of the configuration, the tail of the benchmark's op case ids."""
        return f"prune={self.prune_tag}/quant={self.quant or 'none'}"

    def apply(self, codec: Codec, data: str | None = None) -> Codec:
        """The codec with this configuration applied (pruning, then quantization); a new codec.

        ``data`` (a training-set spec) is what structured pruning ranks channels on and recovers
        with, and what int8 calibrates on; None: the ops' default training images.
        """
        extra: dict[str, Any] = {} if data is None else {"data": data}
        prune, quant = self.prune_op, self.quant_op
        if prune is None and quant is None:
            return codec
        _check_family(self, codec)
        if prune is not None:
            codec = imgcomp.prune(codec, prune, **extra)
        if quant is not None:
            codec = imgcomp.quantize(codec, quant, **extra)
        return codec


def _check_family(config: StudyConfig, codec: Codec) -> None:
    family = getattr(codec, "family", None)
    if family is not None and family != config.family:
        raise ImgcompError(
            f"{config.label} is a configuration of family {config.family!r}, the codec "
            f"{getattr(codec, 'name', codec)!r} is of {family!r}: take the grid of its family "
            f"(get_grid(name, family={family!r}))"
        )


#: Recovery fine-tuning steps of the structured configuration.
#: Shipped mbt2018-mean q3, kodim01-06: SSIM 0.756 unpruned, 0.703 after 60 steps, 0.740 after
#: 300 (about a minute on 2 CPU cores).
STRUCTURED_RECOVER_STEPS = 300
#: Kept widths of the structured configuration are rounded down to multiples of this. At 0.3
#: the shipped model's 64 / 96 channels keep 44 / 64 rather than 45 / 67: same Kodak SSIM after
#: recovery (0.7583 vs 0.7589), decode 0.65-0.67x of the unpruned model rather than 0.69-0.73x on
#: this project's AVX-512 CPU, where oneDNN computes channels in blocks of 16, so 67 latent
#: channels cost as much as 80 and 64 fill whole blocks.
STRUCTURED_ROUND_TO = 4


def study_grid(family: str = DEFAULT_FAMILY) -> list[StudyConfig]:
    """The study's grid of ``family``: every combination of ratios in {0, 0.3} over its table
    components, L1 per layer (Ballé: 2^3 = 8 rows; the RNN: 2^2 = 4, the study's Table 1)."""
    names = get_family(family).table_components
    return [
        StudyConfig(ratios=dict(zip(names, values, strict=True)), family=family)
        for values in product(GRID_RATIOS, repeat=len(names))
    ]


def structured_config(family: str = DEFAULT_FAMILY) -> StudyConfig:
    """Structured pruning at 0.3 on every table component of ``family`` (its declared
    ``structured_components`` where it has them: HiFiC's generator), with
    :data:`STRUCTURED_RECOVER_STEPS` of recovery and widths rounded to
    :data:`STRUCTURED_ROUND_TO`; channels ranked by activations where the family's structured
    pruning has that (Ballé's), by L1 norm where the family declares its channel groups (the
    RNN: ``importance='activation'`` is Ballé-only)."""
    spec = get_family(family)
    return StudyConfig(
        ratios=dict.fromkeys(spec.structured_components or spec.table_components, 0.3),
        method="structured",
        importance="l1" if spec.channel_groups is not None else "activation",
        recover_steps=STRUCTURED_RECOVER_STEPS,
        round_to=STRUCTURED_ROUND_TO,
        family=family,
    )


def extended_grid(family: str = DEFAULT_FAMILY) -> list[StudyConfig]:
    """The study's grid of ``family`` plus structured pruning, bf16, int8 and structured + int8.

    The int8 rows are there for every family; where a family has no int8 path yet (the RNN while
    its int8 is written), building them raises an ImgcompError, which :func:`run_study` reports
    and skips with ``skip=`` (the CLI does), or raises without it."""
    structured = structured_config(family)
    return [
        *study_grid(family),
        structured,
        StudyConfig(quant="bf16", family=family),
        StudyConfig(quant="int8", family=family),
        replace(structured, quant="int8"),
    ]


#: The study's grid (Ballé): encoder / decoder / probability-model ratios in {0, 0.3}, L1 per
#: layer.
STUDY_GRID: list[StudyConfig] = study_grid(DEFAULT_FAMILY)
#: Structured pruning at 0.3 on every component (also the benchmark matrix's STRUCTURED).
STRUCTURED_CONFIG = structured_config(DEFAULT_FAMILY)
#: The study's grid plus structured pruning, bf16, int8 and structured + int8 (Ballé).
EXTENDED_GRID: list[StudyConfig] = extended_grid(DEFAULT_FAMILY)
#: The grids by name (Ballé's; :func:`get_grid` builds any family's).
GRIDS: dict[str, list[StudyConfig]] = {"study": STUDY_GRID, "extended": EXTENDED_GRID}
_GRID_BUILDERS: dict[str, Callable[[str], list[StudyConfig]]] = {
    "study": study_grid,
    "extended": extended_grid,
}


def get_grid(name: str, family: str | None = None) -> list[StudyConfig]:
    """The named grid (study or extended) of ``family`` (None: Ballé), or a clear error."""
    if name not in _GRID_BUILDERS:
        raise ImgcompError(f"unknown grid {name!r}; use one of {', '.join(GRIDS)}")
    if family is None or family == DEFAULT_FAMILY:
        return list(GRIDS[name])
    return _GRID_BUILDERS[name](family)


def _families_to_try(family: str | None) -> list[str]:
    if family is not None:
        return [family]
    return [DEFAULT_FAMILY, *(f for f in list_families() if f != DEFAULT_FAMILY)]


def _read_tags(prune: str, quant: OpConfig | None, family: str | None) -> StudyConfig:
    """The configuration of a pruning tag (and a quantization config) of ``family``; None: the
    family whose component abbreviations the tag spells (Ballé for ``none``)."""
    first: OpConfigError | None = None
    for name in _families_to_try(family):
        try:
            p = parse_tag(prune, _components(name))
            return StudyConfig.from_ops(p, quant, family=name)
        except OpConfigError as exc:
            first = first or exc
    assert first is not None
    raise first


_BASE_SUFFIX = re.compile(r"-[a-z]+[0-9][0-9.]*$")


def case_family(base_id: str) -> str | None:
    """The model family of a benchmark base case id (``mbt2018-mean-q3`` -> balle,
    ``toderici2017-i3`` -> rnn): of the codec it names, with or without its setting's suffix;
    None for a classic codec or an id naming no registered codec."""
    for name in (base_id, _BASE_SUFFIX.sub("", base_id)):
        try:
            found = codec_family(name)
        except UnknownCodecError:
            continue
        return found
    return None


def parse_case_id(case_id: str, family: str | None = None) -> tuple[str, StudyConfig]:
    """(base, config) of a benchmark case id such as ``mbt2018-mean-q3/prune=.../quant=int8``.

    The config's family is ``family``, else that of the base id's codec (:func:`case_family`),
    else the family whose components the pruning tag names (``enc0.3,bin0,dec0.3:l1``: the RNN),
    else Ballé. A plain id (no ``/prune=``) is an unmodified base: its config is the family's
    ``StudyConfig()``. Only what the id states is recovered (ratios, method, scope,
    quantization), not e.g. the structured importance, recovery steps or width rounding.
    ValueError (an OpConfigError) when the id cannot be read.
    """
    base, sep, tail = case_id.partition("/prune=")
    family = family or case_family(base)
    if not sep:
        return case_id, StudyConfig(family=family or DEFAULT_FAMILY)
    ptag, sep, qtag = tail.partition("/quant=")
    if not sep or not qtag or "/" in qtag:
        raise OpConfigError(f"not an op case id: {case_id!r}")
    try:
        return base, _read_tags(ptag, parse_tag(qtag), family)
    except OpConfigError as exc:
        raise OpConfigError(f"cannot read the case id {case_id!r}: {exc}") from None


def config_from_tags(
    prune: str | None = None, quant: str | None = None, family: str | None = None
) -> StudyConfig:
    """The configuration a pruning tag and a quantization mode name, as the benchmark runs it.

    ``prune`` is written as in case ids (``enc0.3,dec0.3,ent0.3:l1``, ``...:l1-global``,
    ``...:structured``; the RNN's ``enc0.3,bin0,dec0.3:l1``; None or ``none``: no pruning),
    ``quant`` is bf16, int8, w2..w8 or None. ``family``: the family the tag is of (None: the
    one whose components it spells, Ballé for no pruning). ``structured`` means the benchmark's
    structured pruning: :func:`structured_config`'s importance, recovery steps and width
    rounding (Ballé: :data:`STRUCTURED_CONFIG`'s; ``dataclasses.replace`` to change them).
    """
    q = None if quant is None else quant_config(quant)
    try:
        config = _read_tags(prune or "none", q, family)
    except OpConfigError as exc:
        example = "enc0.3,dec0.3,ent0.3:l1"
        if family is not None and family != DEFAULT_FAMILY:
            example = ",".join(f"{abbreviation(c)}0.3" for c in _components(family)) + ":l1"
        raise OpConfigError(
            f"cannot read the pruning tag {prune!r}: write encE,decD,entN:METHOD with ratios in "
            "[0, 1) (an abbreviation per component of the family) and METHOD l1, l1-global or "
            f"structured, e.g. {example} ({exc})"
        ) from None
    if config.method == "structured" and config.pruned:
        s = structured_config(config.family)
        config = replace(
            config, importance=s.importance, recover_steps=s.recover_steps, round_to=s.round_to
        )
    return config


@dataclass
class StudyRow:
    """Measurements of one configuration: times are sums over the images, quality means.

    ``ratios`` holds a (component, ratio) pair for every component of ``family`` (the Ballé
    ones also read as ``encoder`` / ``decoder`` / ``entropy``). The model-size fields come from
    ``imgcomp.profile(codec).total`` (None when unknown, e.g. for rows rebuilt from benchmark
    summaries). ``encode_s`` / ``decode_s`` are sums over the images of each call's median over
    the timed rounds; ``encode_rounds`` / ``decode_rounds`` hold each round's sum over the
    images (None when the row has no per-round times). ``peak_encode_mib`` / ``peak_decode_mib``:
    the memory one encode / decode needed above its process's (:mod:`imgcomp.memory`, the
    benchmark's measurement on its first image), None where not measured.
    """

    label: str
    ratios: tuple[tuple[str, float], ...]
    method: str
    quant: str | None
    images: int
    total_inference_s: float
    encode_s: float
    decode_s: float
    ssim: float
    psnr: float
    bpp: float
    avg_bytes: float
    parameters: int | None = None
    nonzero_parameters: int | None = None
    serialized_bytes: int | None = None
    macs: int | None = None
    encode_rounds: list[float] | None = None
    decode_rounds: list[float] | None = None
    peak_encode_mib: float | None = None
    peak_decode_mib: float | None = None
    family: str = field(default=DEFAULT_FAMILY, kw_only=True)

    def ratio(self, component: str) -> float:
        """The pruning ratio of ``component``; AttributeError when the family has none such."""
        for name, value in self.ratios:
            if name == component:
                return value
        raise AttributeError(f"family {self.family!r} has no component {component!r}")

    @property
    def pruned(self) -> bool:
        """Whether any component is pruned."""
        return any(r > 0 for _, r in self.ratios)

    encoder = property(lambda self: self.ratio("encoder"), doc="The encoder's ratio.")
    decoder = property(lambda self: self.ratio("decoder"), doc="The decoder's ratio.")
    entropy = property(lambda self: self.ratio("entropy"), doc="The entropy model's ratio.")


def _row(config: StudyConfig, images: int, encode_s: float, decode_s: float, **rest) -> StudyRow:
    return StudyRow(
        label=config.label,
        ratios=config.ratios,
        method=config.method_label,
        quant=config.quant,
        images=images,
        total_inference_s=encode_s + decode_s,
        encode_s=encode_s,
        decode_s=decode_s,
        family=config.family,
        **rest,
    )


def _variants(
    codec: Codec,
    configs: Sequence[StudyConfig],
    data: str | None,
    starting: Callable[[StudyConfig], None] | None = None,
    skip: Callable[[StudyConfig, ImgcompError], None] | None = None,
) -> list[tuple[StudyConfig, Codec]]:
    """Each configuration with its codec; configurations that share a pruning share its
    (possibly fine-tuned) pruned codec, since pruning comes first and is deterministic. With
    ``skip``, a configuration whose ops raise an ImgcompError is reported to it and left out."""
    pruned: dict[StudyConfig, Codec | ImgcompError] = {}
    out = []
    for config in configs:
        if starting is not None:
            starting(config)
        key = replace(config, quant=None)
        try:
            if key not in pruned:
                try:
                    pruned[key] = key.apply(codec, data=data)
                except ImgcompError as exc:
                    pruned[key] = exc
            base = pruned[key]
            if isinstance(base, ImgcompError):
                raise base
            if config.quant:
                base = StudyConfig(quant=config.quant, family=config.family).apply(base, data=data)
        except ImgcompError as exc:
            if skip is None:
                raise
            skip(config, exc)
            continue
        out.append((config, base))
    return out


class _Recorder:
    """A codec's stand-in for the quality pass: keeps the last stream it encoded."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.name = codec.name
        self.stream = b""

    def __getattr__(self, name: str) -> Any:  # reconstruct(), for the round-trip check
        return getattr(self.codec, name)

    def encode(self, img: np.ndarray) -> bytes:
        self.stream = self.codec.encode(img)
        return self.stream

    def decode(self, data: bytes) -> np.ndarray:
        return self.codec.decode(data)


def _timing_calls(
    variants: Sequence[Codec],
    images: Sequence[tuple[str, np.ndarray]],
    streams: dict[tuple[int, int], list[bytes]],
) -> dict[str, list[Callable[[], object]]]:
    """Per variant, one encode call per image (its stream appended for the decode calls and the
    reproducibility check) and one decode call per image, in that order."""
    calls: dict[str, list[Callable[[], object]]] = {}
    for v, codec in enumerate(variants):
        enc, dec = [], []
        for i, (_, img) in enumerate(images):
            out = streams[(v, i)]
            enc.append(lambda codec=codec, img=img, out=out: out.append(codec.encode(img)))
            dec.append(lambda codec=codec, out=out: codec.decode(out[-1]))
        calls[f"{v}/encode"], calls[f"{v}/decode"] = enc, dec
    return calls


def run_study(
    codec: Codec,
    configs: Sequence[StudyConfig],
    images: Sequence[tuple[str, np.ndarray]],
    *,
    repeats: int = 3,
    warmup: int = 1,
    verify_all: bool = False,
    data: str | None = None,
    progress: Callable[[StudyConfig, int, int], None] | None = None,
    timing_progress: Callable[[int, int], None] | None = None,
    skip: Callable[[StudyConfig, ImgcompError], None] | None = None,
    memory: bool = True,
) -> list[StudyRow]:
    """Measure each configuration of ``codec`` over ``images`` through real bitstreams.

    Every configuration's codec is built first (``data``: the training-set spec of structured
    pruning and int8 calibration, see :meth:`StudyConfig.apply`). A quality pass then encodes
    each image to bytes, decodes those bytes and measures them (round trip verified on the first
    image of every configuration, on every image with ``verify_all``); ``progress(config, done,
    total)`` follows it (``done`` 0: the configuration's codec is being built). Then the timing,
    as the benchmark's (:func:`imgcomp.timing.time_side_by_side`): ``warmup`` untimed and
    ``repeats`` timed rounds, each running every configuration's encode, then decode, of every
    image in turn (round r starting at configuration r, cyclically), so load on the machine
    spreads over all rows; per call the median over the rounds is kept, and each round's total
    per row too (the spread of the speed-ups). ``timing_progress(done, total)`` follows the
    rounds. Repeated encodes must give the quality pass's bytes (RoundTripError otherwise).

    With ``memory``, each configuration's peak encode and decode memory is measured last, on the
    first image (:func:`imgcomp.memory.codec_peaks`; a failed measurement warns, the row shows
    ``n/a``).

    Configurations must be of the codec's family (:func:`get_grid` with ``family=codec.family``).
    ``skip(config, error)``: a configuration whose ops raise an ImgcompError (e.g. int8 of a
    family without an int8 path) is reported to it and gets no row; None: the error is raised.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ImgcompError(f"repeats must be at least 1, got {repeats}")
    if isinstance(warmup, bool):
        warmup = int(warmup)
    if not isinstance(warmup, int) or warmup < 0:
        raise ImgcompError(f"warmup must be a number of rounds >= 0, got {warmup}")
    if not images:
        raise ImgcompError("the study needs at least one image")
    if any(c.pruned or c.quant for c in configs):
        from imgcomp.ops.base import require_learned

        require_learned(codec)
        for config in configs:
            if config.pruned or config.quant:
                _check_family(config, codec)
    built = _variants(
        codec,
        configs,
        data,
        None if progress is None else lambda c: progress(c, 0, len(images)),
        skip,
    )
    configs = [config for config, _ in built]
    variants = [variant for _, variant in built]
    if not variants:
        return []
    quality: list[list[ImageResult]] = []
    streams: dict[tuple[int, int], list[bytes]] = {}  # the quality pass's, then every round's
    for v, (config, variant) in enumerate(zip(configs, variants, strict=True)):
        results = []
        recorder = _Recorder(variant)
        for i, (name, img) in enumerate(images):
            results.append(evaluate_image(recorder, name, img, verify=verify_all or i == 0))
            streams[(v, i)] = [recorder.stream]
            if progress is not None:
                progress(config, i + 1, len(images))
        quality.append(results)
    calls = _timing_calls(variants, images, streams)
    runs: dict[str, list[list[float]]] = {key: [[] for _ in fns] for key, fns in calls.items()}
    total, n = warmup + repeats, len(variants)
    for r in range(total):
        # one interleaved round, starting at the next configuration each time: what a position
        # in the round costs (the first after a round's end, say) is not always one row's
        order = [(r + k) % n for k in range(n)]
        round_calls = {
            f"{v}/{op}": calls[f"{v}/{op}"] for v in order for op in ("encode", "decode")
        }
        one = time_side_by_side(round_calls, rounds=1, warmup=0)
        if r >= warmup:
            for key, per_call in one.runs.items():
                for i, seconds in enumerate(per_call):
                    runs[key][i].extend(seconds)
        if timing_progress is not None:
            timing_progress(r + 1, total)
    timing = SideBySide(runs)
    rows = []
    for v, (config, variant) in enumerate(zip(configs, variants, strict=True)):
        for i, (name, _) in enumerate(images):
            again = streams[(v, i)]
            if any(x != again[0] for x in again):
                raise RoundTripError(f"{config.label}, {name}: repeated encodes gave other bytes")
        size = imgcomp.profile(variant).total if isinstance(variant, LearnedCodec) else None
        # the timing rounds ran the codec already: no warm-up
        peaks = peak_fields(config.label, variant, images[0][1]) if memory else {}
        enc, dec = runs[f"{v}/encode"], runs[f"{v}/decode"]
        summary = summarize(quality[v])
        rows.append(
            _row(
                config,
                len(images),
                encode_s=timing.total(f"{v}/encode"),
                decode_s=timing.total(f"{v}/decode"),
                ssim=summary["ssim"],
                psnr=summary["psnr"],
                bpp=summary["bpp"],
                avg_bytes=summary["bytes"],
                encode_rounds=[sum(t[r] for t in enc) for r in range(repeats)],
                decode_rounds=[sum(t[r] for t in dec) for r in range(repeats)],
                **peaks,
                **_sizes(size),
            )
        )
    return rows


class StudyProgress:
    """Progress of :func:`run_study` on stderr, as :mod:`imgcomp.progress` decides: one bar
    over the quality pass (configurations x images; its title names the row whose ops are being
    applied), then one over the timing rounds. Pass :meth:`quality`, :meth:`timing` and
    :meth:`skip` as ``run_study``'s callbacks; a context manager (closes the bars)."""

    def __init__(self, configs: int, images: int, quiet: bool = False) -> None:
        self.images, self.quiet = images, quiet
        self._quality = progress.bar(
            total=configs * images, desc="quality pass", unit="img", quiet=quiet
        )
        self._timing = None

    def quality(self, config: StudyConfig, done: int, total: int) -> None:
        """``run_study``'s ``progress``: ``done`` 0 while a row's codec is built."""
        if done == 0:
            applying = config.pruned or bool(config.quant)
            self._quality.set_description_str(
                f"{config.label}: applying the ops" if applying else config.label
            )
        else:
            self._quality.set_description_str(config.label, refresh=False)
            self._quality.update(1)

    def timing(self, done: int, total: int) -> None:
        """``run_study``'s ``timing_progress``: one timing round done of ``total``."""
        if self._timing is None:
            self._quality.close()
            self._timing = progress.bar(total=total, desc="timing", unit="round", quiet=self.quiet)
        self._timing.update(done - self._timing.n)

    def skip(self, config: StudyConfig, error: Exception) -> None:
        """A row left out (its ops do not apply): one line on stderr (none when quiet), and
        the quality bar counts its images no more."""
        if self._quality.total:
            self._quality.total -= self.images
            self._quality.refresh()
        if not self.quiet:
            self._quality.write(f"{config.label}: skipped ({error})", file=sys.stderr)

    def close(self) -> None:
        """Close the bars."""
        self._quality.close()
        if self._timing is not None:
            self._timing.close()

    def __enter__(self) -> StudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sizes(size: ComponentProfile | None) -> dict[str, int]:
    if size is None:
        return {}
    return {
        "parameters": size.parameters,
        "nonzero_parameters": size.nonzero_parameters,
        "serialized_bytes": size.serialized_bytes,
        "macs": size.macs,
    }


def row_from_summary(
    config: StudyConfig, summary: Mapping[str, Any], size: ComponentProfile | None = None
) -> StudyRow:
    """A row from a benchmark summary (``summarize`` means plus ``images``, and the peak
    memory where measured): times become sums; ``size``: the model's total profile
    (parameters, non-zeros, serialized bytes, MACs)."""
    n = int(summary["images"])
    return _row(
        config,
        n,
        encode_s=summary["encode_s"] * n,
        decode_s=summary["decode_s"] * n,
        ssim=summary["ssim"],
        psnr=summary["psnr"],
        bpp=summary["bpp"],
        avg_bytes=summary["bytes"],
        peak_encode_mib=summary.get("peak_encode_mib"),
        peak_decode_mib=summary.get("peak_decode_mib"),
        **_sizes(size),
    )


def rows_to_json(rows: Sequence[StudyRow]) -> list[dict[str, Any]]:
    """The rows as JSON-able dicts (all fields, times in seconds): ``label``, then each
    component's ratio by name (Ballé: ``encoder``, ``decoder``, ``entropy``; the RNN:
    ``encoder``, ``binarizer``, ``decoder``), then the rest (the family is the codec's)."""
    out = []
    for r in rows:
        d = asdict(r)
        del d["family"]
        ratios = d.pop("ratios")
        out.append({"label": d.pop("label"), **dict(ratios), **d})
    return out


def _hms(seconds: float) -> str:
    """hh:mm:ss.ss, the study's time format with hundredths (short runs stay readable)."""
    cs = round(seconds * 100)
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6_000)
    return f"{h:02d}:{m:02d}:{rest / 100:05.2f}"


def _millions(n: int) -> str:
    return f"{n / 1e6:.3f}M"


def _ratio_columns(
    rows: Sequence[StudyRow],
) -> list[tuple[str, str, Callable[[StudyRow], str]]]:
    """(title, short title, cell) of each table component's pruning ratio (and of any other
    component some row prunes), in the family's order, titled with its display name (Ballé:
    "Probability model pruning ratio", short "ent")."""
    families = {r.family for r in rows}
    if len(families) > 1:
        raise ValueError(
            f"rows of several families ({', '.join(sorted(families))}): one table each"
        )
    spec = get_family(families.pop())
    shown = set(spec.table_components)
    shown |= {name for r in rows for name, value in r.ratios if value > 0}
    return [
        (
            f"{c.display[:1].upper()}{c.display[1:]} pruning ratio",
            abbreviation(c.name),
            _ratio_cell(c.name),
        )
        for c in spec.components.values()
        if c.name in shown
    ]


def _ratio_cell(component: str) -> Callable[[StudyRow], str]:
    return lambda r: f"{r.ratio(component):g}"


#: What :func:`format_study_table` shows: every column, or the original study's only.
TABLE_COLUMNS = ("all", "study")


def format_study_table(rows: Sequence[StudyRow], style: str = "text", columns: str = "all") -> str:
    """The rows as the study's table (text, markdown or tsv). The ratio columns are the rows'
    family's table components (and any other component a row prunes), titled by each
    component's display name. Decode speedups are against the first row, shown only when that
    row is the unmodified model (no pruning, no quantization), with the lowest and highest
    per-round ratio in brackets when the rows have several timed rounds; the peak decode memory
    when some row has it (``n/a`` for the others). markdown and tsv use
    the study's column titles; text uses short ones (under 120 columns). ``columns="study"``:
    the original study's columns only (ratios, total inference time, SSIM, average size; the
    RNN's Table 1: Encoder / Decoder pruning ratio, Total inference time, SSIM, Avg. compressed
    image size)."""
    if style not in ("text", "markdown", "tsv"):
        raise ValueError(f"style must be text, markdown or tsv, not {style!r}")
    if columns not in TABLE_COLUMNS:
        raise ValueError(f"columns must be one of {', '.join(TABLE_COLUMNS)}, not {columns!r}")
    if not rows:
        raise ValueError("no rows to format")
    base = rows[0]
    study = columns == "study"
    time_column = ("Total inference time (hh:mm:ss)", "enc+dec time")
    # (study's title, short title for text, cell)
    shown: list[tuple[str, str, Callable[[StudyRow], str]]] = [
        *_ratio_columns(rows),
        ("Method", "method", lambda r: r.method),
        ("Quantization", "quant", lambda r: r.quant or "-"),
        (*time_column, lambda r: _hms(r.total_inference_s)),
        ("SSIM", "SSIM", lambda r: f"{r.ssim:.4f}"),
        ("Avg. compressed image size (B)", "avg bytes", lambda r: f"{r.avg_bytes:.3f}"),
        ("bpp", "bpp", lambda r: f"{r.bpp:.4f}"),
    ]
    if study:
        shown = [c for c in shown if c[0] not in ("Method", "Quantization", "bpp")]
    elif not (base.pruned or base.quant):
        shown.append(("Decode speedup", "decode speedup", lambda r: _speedup(base, r)))
    if not study and any(r.peak_decode_mib is not None for r in rows):
        memory = ("Peak decode memory (MiB)", "dec MiB")
        shown.append((*memory, lambda r: format_mib(r.peak_decode_mib)))
    if not study and all(r.nonzero_parameters is not None for r in rows):
        shown.append(("Non-zero params", "non-zeros", lambda r: _millions(r.nonzero_parameters)))
    heads = [short if style == "text" else title for title, short, _ in shown]
    cells = [[fmt(r) for *_, fmt in shown] for r in rows]
    if style == "tsv":
        return "\n".join("\t".join(line) for line in [heads, *cells])
    left = {"Method", "Quantization", "method", "quant"}
    if style == "markdown":
        rule = [":---" if h in left else "---:" for h in heads]
        return "\n".join("| " + " | ".join(line) + " |" for line in [heads, rule, *cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if h in left else v.rjust(w)
            for v, w, h in zip(values, widths, heads, strict=True)
        ).rstrip()

    out = [line(heads), "  ".join("-" * w for w in widths)]
    return "\n".join(out + [line(c) for c in cells])


def _ratio(base: float, value: float) -> float | None:
    if value <= 0 or base <= 0 or not math.isfinite(base / value):
        return None
    return base / value


def _speedup(base: StudyRow, row: StudyRow) -> str:
    """``base.decode_s / row.decode_s``, then the per-round range, e.g. ``1.49x (1.45-1.52)``."""
    value = _ratio(base.decode_s, row.decode_s)
    if value is None:
        return "-"
    text = f"{value:.2f}x"
    b, r = base.decode_rounds, row.decode_rounds
    if row is not base and b and r and len(b) == len(r) > 1:
        per_round = [q for x, y in zip(b, r, strict=True) if (q := _ratio(x, y)) is not None]
        if len(per_round) == len(r):
            text += f" ({min(per_round):.2f}-{max(per_round):.2f})"
    return text
