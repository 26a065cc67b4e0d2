"""The study table: per pruning / quantization configuration, time, SSIM and real stream size.

Reproduces the layout of the original study (encoder, decoder and probability-model pruning
ratios; total inference time; SSIM; average compressed image size in bytes) with every number
measured on real bitstreams: each image is encoded to bytes and those bytes are decoded.

    codec = imgcomp.create_codec("mbt2018-mean", quality=3)
    images = [(item.name, item.load()) for item in load_dataset("kodak")]
    rows = run_study(codec, STUDY_GRID, images)
    print(format_study_table(rows))
"""

from __future__ import annotations

import math
import re
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
from imgcomp.ops.profile import ComponentProfile

__all__ = [
    "EXTENDED_GRID",
    "GRIDS",
    "STRUCTURED_CONFIG",
    "STRUCTURED_RECOVER_STEPS",
    "STRUCTURED_ROUND_TO",
    "STUDY_GRID",
    "StudyConfig",
    "StudyRow",
    "format_study_table",
    "get_grid",
    "parse_case_id",
    "row_from_summary",
    "rows_to_json",
    "run_study",
]


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
    def method_label(self) -> str:
        """Pruning method as written in case ids: l1, l1-global or structured ("-": no pruning)."""
        if not self.pruned:
            return "-"
        if self.method == "l1" and self.scope != "layer":
            return f"l1-{self.scope}"
        return self.method

    @property
    def prune_tag(self) -> str:
        """The pruning part of the label, e.g. ``enc0.3,dec0,ent0:l1`` ("none": no pruning)."""
        if not self.pruned:
            return "none"
        return f"enc{self.encoder:g},dec{self.decoder:g},ent{self.entropy:g}:{self.method_label}"

    @property
    def label(self) -> str:
        """Id of the configuration, the tail of the benchmark's op case ids."""
        return f"prune={self.prune_tag}/quant={self.quant or 'none'}"

    def apply(self, codec: Codec) -> Codec:
        """The codec with this configuration applied (pruning, then quantization); a new codec."""
        if self.pruned:
            options: dict[str, Any] = {"method": self.method, "scope": self.scope}
            if self.method == "structured":
                options.update(
                    importance=self.importance,
                    recover_steps=self.recover_steps,
                    round_to=self.round_to,
                )
            codec = imgcomp.prune(
                codec, encoder=self.encoder, decoder=self.decoder, entropy=self.entropy, **options
            )
        if self.quant:
            codec = imgcomp.quantize(codec, self.quant)
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


_PRUNE_TAG = re.compile(
    r"enc(?P<e>[0-9.eE+-]+),dec(?P<d>[0-9.eE+-]+),ent(?P<n>[0-9.eE+-]+):(?P<m>[A-Za-z0-9-]+)$"
)


def parse_case_id(case_id: str) -> tuple[str, StudyConfig]:
    """(family, config) of a benchmark case id such as ``mbt2018-mean-q3/prune=.../quant=int8``.

    A plain id (no ``/prune=``) is an unmodified base: its config is ``StudyConfig()``. Only
    what the id states is recovered (ratios, method, scope, quantization), not e.g. the
    structured importance, recovery steps or width rounding.
    """
    family, sep, tail = case_id.partition("/prune=")
    if not sep:
        return case_id, StudyConfig()
    ptag, sep, qtag = tail.partition("/quant=")
    if not sep or not qtag or "/" in qtag:
        raise ValueError(f"not an op case id: {case_id!r}")
    quant = None if qtag == "none" else qtag
    if ptag == "none":
        return family, StudyConfig(quant=quant)
    m = _PRUNE_TAG.match(ptag)
    if not m:
        raise ValueError(f"cannot read the pruning tag of {case_id!r}")
    method, scope = m["m"], "layer"
    if method.startswith("l1-"):
        method, scope = "l1", method[3:]
    try:
        ratios = float(m["e"]), float(m["d"]), float(m["n"])
    except ValueError:
        raise ValueError(f"cannot read the pruning ratios of {case_id!r}") from None
    return family, StudyConfig(*ratios, method=method, scope=scope, quant=quant)


@dataclass
class StudyRow:
    """Measurements of one configuration: times are sums over the images, quality means.

    The model-size fields come from ``imgcomp.profile(codec).total`` (None when unknown, e.g.
    for rows rebuilt from benchmark summaries).
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


def _measure(codec: Codec, name: str, img: np.ndarray, repeats: int, verify: bool) -> ImageResult:
    """One image through real bytes ``repeats`` times; the fastest encode and decode are kept."""
    first = evaluate_image(codec, name, img, verify=verify)
    enc, dec = first.encode_s, first.decode_s
    for _ in range(repeats - 1):
        again = evaluate_image(codec, name, img)
        _check_same(first, again)
        enc, dec = min(enc, again.encode_s), min(dec, again.decode_s)
    return ImageResult(**{**first.as_dict(), "encode_s": enc, "decode_s": dec})


def _check_same(a: ImageResult, b: ImageResult) -> None:
    if a.bytes != b.bytes or a.ssim != b.ssim:
        raise RoundTripError(f"{a.image}: repeated runs of the same codec gave different results")


def run_study(
    codec: Codec,
    configs: Sequence[StudyConfig],
    images: Sequence[tuple[str, np.ndarray]],
    *,
    repeats: int = 1,
    warmup: bool = True,
    verify_all: bool = False,
    progress: Callable[[StudyConfig, int, int], None] | None = None,
) -> list[StudyRow]:
    """Measure each configuration of ``codec`` over ``images`` through real bitstreams.

    Each configuration's codec is built once; each image is encoded to bytes and those bytes
    decoded, timed with ``time.perf_counter`` (the fastest of ``repeats`` runs per image). With
    ``warmup``, the first image first makes one untimed, verified round trip per configuration,
    so one-off costs (first calls, lazy tables) do not land on the first row; the round trip is
    verified on the first image of every configuration in any case (every image with
    ``verify_all``). ``progress(config, done, total)`` is called after each image.
    """
    if repeats < 1:
        raise ImgcompError(f"repeats must be at least 1, got {repeats}")
    if not images:
        raise ImgcompError("the study needs at least one image")
    if any(c.pruned or c.quant for c in configs):
        from imgcomp.ops.base import require_learned

        require_learned(codec)
    rows = []
    for config in configs:
        variant = config.apply(codec)
        warm = evaluate_image(variant, *images[0], verify=True) if warmup else None
        results = []
        for i, (name, img) in enumerate(images):
            results.append(
                _measure(variant, name, img, repeats, verify_all or (i == 0 and not warm))
            )
            if progress is not None:
                progress(config, i + 1, len(images))
        if warm is not None:
            _check_same(warm, results[0])
        size = imgcomp.profile(variant).total if isinstance(variant, LearnedCodec) else None
        summary = {**summarize(results), "images": len(results)}
        rows.append(row_from_summary(config, summary, size))
    return rows


def row_from_summary(
    config: StudyConfig, summary: Mapping[str, Any], size: ComponentProfile | None = None
) -> StudyRow:
    """A row from a benchmark summary (``summarize`` means plus ``images``): times become sums;
    ``size``: the model's total profile (parameters, non-zeros, serialized bytes, MACs)."""
    n = int(summary["images"])
    sizes = {}
    if size is not None:
        sizes = {
            "parameters": size.parameters,
            "nonzero_parameters": size.nonzero_parameters,
            "serialized_bytes": size.serialized_bytes,
            "macs": size.macs,
        }
    return _row(
        config,
        n,
        encode_s=summary["encode_s"] * n,
        decode_s=summary["decode_s"] * n,
        ssim=summary["ssim"],
        psnr=summary["psnr"],
        bpp=summary["bpp"],
        avg_bytes=summary["bytes"],
        **sizes,
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


def format_study_table(rows: Sequence[StudyRow], style: str = "text") -> str:
    """The rows as the study's table (text, markdown or tsv). Decode speedups are against the
    first row, shown only when that row is the unmodified model (no pruning, no quantization)."""
    if style not in ("text", "markdown", "tsv"):
        raise ValueError(f"style must be text, markdown or tsv, not {style!r}")
    if not rows:
        raise ValueError("no rows to format")
    base_decode = rows[0].decode_s
    columns: list[tuple[str, Callable[[StudyRow], str]]] = [
        ("Encoder pruning ratio", lambda r: f"{r.encoder:g}"),
        ("Decoder pruning ratio", lambda r: f"{r.decoder:g}"),
        ("Probability model pruning ratio", lambda r: f"{r.entropy:g}"),
        ("Method", lambda r: r.method),
        ("Quantization", lambda r: r.quant or "-"),
        ("Total inference time (hh:mm:ss)", lambda r: _hms(r.total_inference_s)),
        ("SSIM", lambda r: f"{r.ssim:.4f}"),
        ("Avg. compressed image size (B)", lambda r: f"{r.avg_bytes:.3f}"),
        ("bpp", lambda r: f"{r.bpp:.4f}"),
    ]
    first = rows[0]
    if not (first.encoder or first.decoder or first.entropy or first.quant):
        columns.append(("Decode speedup", lambda r: _speedup(base_decode, r.decode_s)))
    if all(r.nonzero_parameters is not None for r in rows):
        columns.append(("Non-zero params", lambda r: _millions(r.nonzero_parameters)))
    heads = [h for h, _ in columns]
    cells = [[fmt(r) for _, fmt in columns] for r in rows]
    if style == "tsv":
        return "\n".join("\t".join(line) for line in [heads, *cells])
    left = {"Method", "Quantization"}
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


def _speedup(base: float, value: float) -> str:
    if value <= 0 or base <= 0 or not math.isfinite(base / value):
        return "-"
    return f"{base / value:.2f}x"
