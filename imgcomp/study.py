"""The study table: per pruning / quantization configuration, time, SSIM and real stream size.

Reproduces the layout of the original study (encoder, decoder and probability-model pruning
ratios; total inference time; SSIM; average compressed image size in bytes) with every number
measured on real bitstreams: each image is encoded to bytes and those bytes are decoded.
Encode and decode are timed as the benchmark's speed-ups are (:mod:`imgcomp.timing`): in rounds
that each run every configuration's encodes and decodes in turn, medians kept.

    codec = imgcomp.create_codec("mbt2018-mean", quality=3)
    images = [(item.name, item.load()) for item in load_dataset("kodak")]
    rows = run_study(codec, STUDY_GRID, images)
    print(format_study_table(rows))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import product
from typing import Any

import numpy as np

import imgcomp
from imgcomp.codecs.base import Codec
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError
from imgcomp.evaluate import ImageResult, RoundTripError, evaluate_image, summarize
from imgcomp.ops.config import (
    L1Prune,
    OpConfig,
    OpConfigError,
    PruneConfig,
    QuantConfig,
    StructuredPrune,
    abbreviation,
    parse_tag,
    quant_config,
)
from imgcomp.ops.profile import ComponentProfile
from imgcomp.registry import get_family
from imgcomp.timing import SideBySide, time_side_by_side

__all__ = [
    "EXTENDED_GRID",
    "GRIDS",
    "STRUCTURED_CONFIG",
    "STRUCTURED_RECOVER_STEPS",
    "STRUCTURED_ROUND_TO",
    "STUDY_GRID",
    "StudyConfig",
    "StudyRow",
    "config_from_tags",
    "format_study_table",
    "get_grid",
    "parse_case_id",
    "row_from_summary",
    "rows_to_json",
    "run_study",
]

#: The model family whose components the study's rows and table columns are (its ratios are the
#: rows' ``encoder`` / ``decoder`` / ``entropy``).
STUDY_FAMILY = "balle"


@dataclass(frozen=True)
class StudyConfig:
    """One configuration of the study: per-component pruning ratios, method, then quantization."""

    encoder: float = 0.0
    decoder: float = 0.0
    entropy: float = 0.0
    method: str = "l1"
    scope: str = "layer"
    importance: str = "l1"
    recover_steps: int = 0
    quant: str | None = None
    round_to: int | None = None

    @property
    def pruned(self) -> bool:
        """Whether any component is pruned (a ratio above 0)."""
        return any(r > 0 for r in (self.encoder, self.decoder, self.entropy))

    @property
    def prune_op(self) -> PruneConfig | None:
        """The pruning as an op config (None: no pruning)."""
        if not self.pruned:
            return None
        ratios = {"encoder": self.encoder, "decoder": self.decoder, "entropy": self.entropy}
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
        """The quantization as an op config (None: none)."""
        return quant_config(self.quant) if self.quant else None

    @classmethod
    def from_ops(cls, prune: OpConfig | None, quant: OpConfig | None) -> StudyConfig:
        """The configuration of a pruning config and a quantization config (either None)."""
        if prune is not None and not isinstance(prune, PruneConfig):
            raise OpConfigError(f"{prune.tag!r} is not a pruning")
        if quant is not None and not isinstance(quant, QuantConfig):
            raise OpConfigError(f"{quant.tag!r} is not a quantization")
        q = None if quant is None else quant.tag
        if prune is None:
            return cls(quant=q)
        r = prune.over(get_family(STUDY_FAMILY).component_names).ratio_map
        options: dict[str, Any] = {}
        if isinstance(prune, L1Prune):
            options = {"method": "l1", "scope": prune.scope}
        elif isinstance(prune, StructuredPrune):
            options = {"method": "structured", "importance": prune.importance}
            options |= {"recover_steps": prune.recover_steps, "round_to": prune.round_to}
        return cls(r["encoder"], r["decoder"], r["entropy"], quant=q, **options)

    @property
    def method_label(self) -> str:
        """Pruning method as written in case ids: l1, l1-global or structured ("-": no pruning)."""
        op = self.prune_op
        return "-" if op is None else op.tag.partition(":")[2]

    @property
    def prune_tag(self) -> str:
        """The pruning part of the label, e.g. ``enc0.3,dec0,ent0:l1`` ("none": no pruning)."""
        op = self.prune_op
        return "none" if op is None else op.tag

    @property
    def label(self) -> str:
        """Id of the configuration, the tail of the benchmark's op case ids."""
        op = self.quant_op
        return f"prune={self.prune_tag}/quant={'none' if op is None else op.tag}"

    def apply(self, codec: Codec, data: str | None = None) -> Codec:
        """The codec with this configuration applied (pruning, then quantization); a new codec.

        ``data`` (a training-set spec) is what structured pruning ranks channels on and recovers
        with, and what int8 calibrates on; None: the ops' default training images.
        """
        extra: dict[str, Any] = {} if data is None else {"data": data}
        prune, quant = self.prune_op, self.quant_op
        if prune is not None:
            codec = imgcomp.prune(codec, prune, **extra)
        if quant is not None:
            codec = imgcomp.quantize(codec, quant, **extra)
        return codec


#: The study's grid: encoder / decoder / probability-model ratios in {0, 0.3}, L1 per layer.
STUDY_GRID: list[StudyConfig] = [StudyConfig(e, d, n) for e, d, n in product((0.0, 0.3), repeat=3)]
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
#: Structured pruning at 0.3 on every component (also the benchmark matrix's STRUCTURED).
STRUCTURED_CONFIG = StudyConfig(
    0.3,
    0.3,
    0.3,
    method="structured",
    importance="activation",
    recover_steps=STRUCTURED_RECOVER_STEPS,
    round_to=STRUCTURED_ROUND_TO,
)
#: The study's grid plus structured pruning, bf16, int8 and structured + int8.
EXTENDED_GRID: list[StudyConfig] = [
    *STUDY_GRID,
    STRUCTURED_CONFIG,
    StudyConfig(quant="bf16"),
    StudyConfig(quant="int8"),
    replace(STRUCTURED_CONFIG, quant="int8"),
]
GRIDS: dict[str, list[StudyConfig]] = {"study": STUDY_GRID, "extended": EXTENDED_GRID}


def get_grid(name: str) -> list[StudyConfig]:
    """The named grid (study or extended), or a clear error."""
    try:
        return list(GRIDS[name])
    except KeyError:
        raise ImgcompError(f"unknown grid {name!r}; use one of {', '.join(GRIDS)}") from None


def parse_case_id(case_id: str) -> tuple[str, StudyConfig]:
    """(family, config) of a benchmark case id such as ``mbt2018-mean-q3/prune=.../quant=int8``.

    A plain id (no ``/prune=``) is an unmodified base: its config is ``StudyConfig()``. Only
    what the id states is recovered (ratios, method, scope, quantization), not e.g. the
    structured importance, recovery steps or width rounding. ValueError (an OpConfigError) when
    the id cannot be read.
    """
    family, sep, tail = case_id.partition("/prune=")
    if not sep:
        return case_id, StudyConfig()
    ptag, sep, qtag = tail.partition("/quant=")
    if not sep or not qtag or "/" in qtag:
        raise OpConfigError(f"not an op case id: {case_id!r}")
    try:
        return family, StudyConfig.from_ops(parse_tag(ptag), parse_tag(qtag))
    except OpConfigError as exc:
        raise OpConfigError(f"cannot read the case id {case_id!r}: {exc}") from None


def config_from_tags(prune: str | None = None, quant: str | None = None) -> StudyConfig:
    """The configuration a pruning tag and a quantization mode name, as the benchmark runs it.

    ``prune`` is written as in case ids (``enc0.3,dec0.3,ent0.3:l1``, ``...:l1-global``,
    ``...:structured``; None or ``none``: no pruning), ``quant`` is bf16, int8, w2..w8 or None.
    ``structured`` means the benchmark's structured pruning: :data:`STRUCTURED_CONFIG`'s
    importance, recovery steps and width rounding (``dataclasses.replace`` to change them).
    """
    q = None if quant is None else quant_config(quant)
    try:
        p = parse_tag(prune or "none")
        config = StudyConfig.from_ops(p, q)
    except OpConfigError as exc:
        raise OpConfigError(
            f"cannot read the pruning tag {prune!r}: write encE,decD,entN:METHOD with ratios in "
            "[0, 1) and METHOD l1, l1-global or structured, e.g. enc0.3,dec0.3,ent0.3:l1 "
            f"({exc})"
        ) from None
    if config.method == "structured" and config.pruned:
        s = STRUCTURED_CONFIG
        config = replace(
            config, importance=s.importance, recover_steps=s.recover_steps, round_to=s.round_to
        )
    return config


@dataclass
class StudyRow:
    """Measurements of one configuration: times are sums over the images, quality means.

    The model-size fields come from ``imgcomp.profile(codec).total`` (None when unknown, e.g.
    for rows rebuilt from benchmark summaries). ``encode_s`` / ``decode_s`` are sums over the
    images of each call's median over the timed rounds; ``encode_rounds`` / ``decode_rounds``
    hold each round's sum over the images (None when the row has no per-round times).
    """

    label: str
    encoder: float
    decoder: float
    entropy: float
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


def _row(config: StudyConfig, images: int, encode_s: float, decode_s: float, **rest) -> StudyRow:
    return StudyRow(
        label=config.label,
        encoder=config.encoder,
        decoder=config.decoder,
        entropy=config.entropy,
        method=config.method_label,
        quant=config.quant,
        images=images,
        total_inference_s=encode_s + decode_s,
        encode_s=encode_s,
        decode_s=decode_s,
        **rest,
    )


def _variants(
    codec: Codec,
    configs: Sequence[StudyConfig],
    data: str | None,
    starting: Callable[[StudyConfig], None] | None = None,
) -> list[Codec]:
    """Each configuration's codec; configurations that share a pruning share its (possibly
    fine-tuned) pruned codec, since pruning comes first and is deterministic."""
    pruned: dict[StudyConfig, Codec] = {}
    out = []
    for config in configs:
        if starting is not None:
            starting(config)
        key = replace(config, quant=None)
        if key not in pruned:
            pruned[key] = key.apply(codec, data=data)
        base = pruned[key]
        out.append(StudyConfig(quant=config.quant).apply(base, data=data) if config.quant else base)
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
    variants = _variants(
        codec, configs, data, None if progress is None else lambda c: progress(c, 0, len(images))
    )
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
                **_sizes(size),
            )
        )
    return rows


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
    """A row from a benchmark summary (``summarize`` means plus ``images``): times become sums;
    ``size``: the model's total profile (parameters, non-zeros, serialized bytes, MACs)."""
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
        **_sizes(size),
    )


def rows_to_json(rows: Sequence[StudyRow]) -> list[dict[str, Any]]:
    """The rows as JSON-able dicts (all fields, times in seconds)."""
    return [asdict(r) for r in rows]


def _hms(seconds: float) -> str:
    """hh:mm:ss.ss, the study's time format with hundredths (short runs stay readable)."""
    cs = round(seconds * 100)
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6_000)
    return f"{h:02d}:{m:02d}:{rest / 100:05.2f}"


def _millions(n: int) -> str:
    return f"{n / 1e6:.3f}M"


def _ratio_columns(family: str) -> list[tuple[str, str, Callable[[StudyRow], str]]]:
    """(title, short title, cell) of each component's pruning ratio, in the family's table order,
    titled with its display name (Ballé: "Probability model pruning ratio", short "ent")."""
    return [
        (
            f"{c.display[:1].upper()}{c.display[1:]} pruning ratio",
            abbreviation(c.name),
            _ratio_cell(c.name),
        )
        for c in get_family(family).components.values()
    ]


def _ratio_cell(component: str) -> Callable[[StudyRow], str]:
    return lambda r: f"{getattr(r, component):g}"


def format_study_table(rows: Sequence[StudyRow], style: str = "text") -> str:
    """The rows as the study's table (text, markdown or tsv). Decode speedups are against the
    first row, shown only when that row is the unmodified model (no pruning, no quantization),
    with the lowest and highest per-round ratio in brackets when the rows have several timed
    rounds. markdown and tsv use the study's column titles; text uses short ones (under 120
    columns)."""
    if style not in ("text", "markdown", "tsv"):
        raise ValueError(f"style must be text, markdown or tsv, not {style!r}")
    if not rows:
        raise ValueError("no rows to format")
    base = rows[0]
    # (study's title, short title for text, cell)
    columns: list[tuple[str, str, Callable[[StudyRow], str]]] = [
        *_ratio_columns(STUDY_FAMILY),
        ("Method", "method", lambda r: r.method),
        ("Quantization", "quant", lambda r: r.quant or "-"),
        ("Total inference time (hh:mm:ss)", "enc+dec time", lambda r: _hms(r.total_inference_s)),
        ("SSIM", "SSIM", lambda r: f"{r.ssim:.4f}"),
        ("Avg. compressed image size (B)", "avg bytes", lambda r: f"{r.avg_bytes:.3f}"),
        ("bpp", "bpp", lambda r: f"{r.bpp:.4f}"),
    ]
    if not (base.encoder or base.decoder or base.entropy or base.quant):
        columns.append(("Decode speedup", "decode speedup", lambda r: _speedup(base, r)))
    if all(r.nonzero_parameters is not None for r in rows):
        columns.append(("Non-zero params", "non-zeros", lambda r: _millions(r.nonzero_parameters)))
    heads = [short if style == "text" else title for title, short, _ in columns]
    cells = [[fmt(r) for *_, fmt in columns] for r in rows]
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
