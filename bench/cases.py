"""The benchmark matrix: every case the suite measures, with a readable id.

A case id names everything that changes a result (codec, its setting, later the pruning and
quantization applied), e.g. ``jpeg-q75`` or
``mbt2018-mean-q3/prune=enc0.3,dec0,ent0:l1/quant=int8``.
Baselines, pytest ids, benchmark names and report rows all use it.

Three matrices (``--matrix``): ``default`` (a first run: the classic codecs at the study's rate,
the study's model and its key ops), ``study`` (every classic and shipped learned case, the
study's whole pruning grid and every quantization on the study's model, and the other families'
study grids: the Toderici RNN's Table 1, HiFiC's Table 2 crossed with every quantization) and
``full`` (every learned case crossed with every op).
"""

from __future__ import annotations

from bench.case import (
    BASELINE_TRAIN_DATA,
    DEFAULT_BASE,
    MATRICES,
    Case,
    hific_cases,
    learned_cases,
    rnn_cases,
)
from imgcomp.registry import create_codec

# Re-exported: bench files and tests import the case type and the learned cases from here.
__all__ = [
    "BASELINE_TRAIN_DATA",
    "DEFAULT_BASE",
    "MATRICES",
    "Case",
    "all_cases",
    "classic_cases",
    "learned_cases",
    "matrix_learned_cases",
]


def _classic(name: str, quick: bool = False, default: bool = False, **params) -> Case:
    ((key, value),) = params.items()
    tag = f"q{value}" if key == "quality" else f"bpp{value:g}"
    return Case(
        id=f"{name}-{tag}",
        family=name,
        factory=lambda device, train_data: create_codec(name, **params),
        quick=quick,
        default=default,
    )


def classic_cases() -> list[Case]:
    """Pillow codecs at fixed quality and at the study's target rates (0.30 and 0.375 bpp); the
    default matrix keeps each codec once, AVIF at a fixed quality (its rate search is slow)."""
    return [
        _classic("jpeg", quality=75, quick=True, default=True),
        _classic("jpeg", quality=10),
        _classic("jpeg", bpp=0.30, quick=True, default=True),
        _classic("webp", quality=75),
        _classic("webp", bpp=0.30, default=True),
        _classic("jpeg2000", bpp=0.30, default=True),
        _classic("avif", quality=60, default=True),
        _classic("avif", bpp=0.30),
        _classic("jpeg", bpp=0.375),
    ]


def matrix_learned_cases(matrix: str = "default") -> list[Case]:
    """The plain learned cases of ``matrix`` (default: only the study's model; study and full
    add the Toderici RNN at the study's 3 iterations and the shipped HiFiC, both quick; HiFiC's
    cases skip while its weights are not shipped, :func:`bench.case.require_shipped`)."""
    learned = learned_cases()
    if matrix == "default":
        return [c for c in learned if c.default]
    return learned + rnn_cases(quick=True) + hific_cases(quick=True)


def all_cases(matrix: str = "default") -> list[Case]:
    """Every case of the matrix, in report order (``matrix``: default, study or full)."""
    from bench.matrix import op_cases  # one way only (matrix imports bench.case); imports torch

    if matrix not in MATRICES:
        raise ValueError(f"--matrix must be one of {', '.join(MATRICES)}, not {matrix!r}")
    classic = [c for c in classic_cases() if c.default or matrix != "default"]
    learned = matrix_learned_cases(matrix)
    cases = classic + learned + op_cases(learned, matrix)
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate case ids: {sorted(duplicates)}")
    return cases
