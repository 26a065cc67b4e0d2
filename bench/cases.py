"""The benchmark matrix: every case the suite measures, with a readable id.

A case id names everything that changes a result (codec, its setting, later the pruning and
quantization applied), e.g. ``jpeg-q75`` or
``mbt2018-mean-q3/prune=enc0.3,dec0,ent0:l1/quant=int8``.
Baselines, pytest ids, benchmark names and report rows all use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from imgcomp.baselines import Tolerance
from imgcomp.codecs.base import Codec
from imgcomp.registry import create_codec


@dataclass(frozen=True)
class Case:
    """One row of the matrix: how to build the codec, how strictly to gate it, how to select it."""

    id: str
    family: str
    factory: Callable[[str], Codec] = field(compare=False)
    tolerance: Tolerance = field(default_factory=Tolerance)
    quick: bool = False
    slow: bool = False

    def build(self, device: str = "cpu") -> Codec:
        return self.factory(device)


def _classic(name: str, quick: bool = False, **params) -> Case:
    ((key, value),) = params.items()
    tag = f"q{value}" if key == "quality" else f"bpp{value:g}"
    return Case(
        id=f"{name}-{tag}",
        family=name,
        factory=lambda device: create_codec(name, **params),
        quick=quick,
    )


def classic_cases() -> list[Case]:
    """Pillow codecs at fixed quality and at the study's target rates (0.30 and 0.375 bpp)."""
    return [
        _classic("jpeg", quality=75, quick=True),
        _classic("jpeg", quality=10),
        _classic("jpeg", bpp=0.30, quick=True),
        _classic("webp", quality=75),
        _classic("webp", bpp=0.30),
        _classic("jpeg2000", bpp=0.30),
        _classic("avif", quality=60),
        _classic("avif", bpp=0.30),
        _classic("jpeg", bpp=0.375),
    ]


def learned_cases() -> list[Case]:
    """Every shipped learned model at every shipped quality (the middle one, rounded down, is
    quick: quality 3, the op matrix's base)."""
    from imgcomp.zoo import LEARNED, shipped_qualities

    cases = []
    for name, alias in LEARNED.items():
        qualities = shipped_qualities(name)
        for q in qualities:
            cases.append(
                Case(
                    id=f"{alias}-q{q}",
                    family=alias,
                    factory=lambda device, name=name, q=q: create_codec(
                        name, quality=q, device=device
                    ),
                    quick=q == qualities[(len(qualities) - 1) // 2],
                )
            )
    return cases


def all_cases(matrix: str = "default") -> list[Case]:
    """Every case of the matrix, in report order (``matrix``: default or full op crossing)."""
    from bench.matrix import op_cases

    learned = learned_cases()
    cases = classic_cases() + learned + op_cases(learned, matrix)
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate case ids: {sorted(duplicates)}")
    return cases
