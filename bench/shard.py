"""``pytest bench --shard K/N``: a deterministic, balanced part K of N of the selected tests.

Tests are dealt in *units*, each of which runs whole in one shard:

- the tests of one case (quality gate, rate check, encode and decode timings): the quality pass
  is cached per process and the timings reuse it;
- the cases of one pruned model (``<base>/prune=<tag>/quant=*`` with a pruning): they share the
  pruned codec, built once per process (structured pruning's recovery takes a minute);
- the tests of one module that takes no case (``bench/test_speedups.py``, ``test_rnn.py``,
  ...): its module-scoped side-by-side timing serves every op it gates.

Units go heaviest first (the :mod:`bench.plan` estimate at a nominal Kodak run, plus a second
per test) to the least loaded shard, ties to the lower shard, equal weights in key order. The
same selection deals the same way in every process (pytest-xdist workers included): every unit
lands in exactly one shard, the shards together are the unsharded selection, and with at least
N units no shard is empty. Fewer units than shards is an error (:func:`split`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from bench.plan import plan_from_names

__all__ = ["NOMINAL_IMAGES", "Shard", "deal", "parse_shard", "split", "unit_key", "unit_seconds"]

T = TypeVar("T")

#: Images and timed images a unit's weight is estimated at, whatever the run's --images: the
#: deal depends on the selection alone.
NOMINAL_IMAGES, NOMINAL_TIMING_IMAGES = 24, 4


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``K/N`` as a :class:`Shard`; ValueError unless both are integers with 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if match is None:
        raise ValueError(f"--shard takes K/N (part K of N, from 1: 1/4 .. 4/4), not {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise ValueError(f"--shard {text}: N must be at least 1")
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text}: K must be between 1 and N: 1/{count} .. {count}/{count}")
    return Shard(index, count)


def unit_key(nodeid: str, case_id: str | None) -> str:
    """The unit a test belongs to: its pruned model, its case, or (no case) its module."""
    if case_id is None:
        return "module " + nodeid.split("::", 1)[0]
    model, quant, _ = case_id.partition("/quant=")
    if quant and "/prune=" in model and not model.endswith("/prune=none"):
        return "model " + model
    return "case " + case_id


def unit_seconds(names: Sequence[str]) -> float:
    """Estimated seconds of a unit's tests (by their names, ``test_quality[<case>]``) at the
    nominal run, plus one per test: every unit weighs something."""
    plan = plan_from_names(names, NOMINAL_IMAGES, NOMINAL_TIMING_IMAGES)
    return (plan.seconds() if plan is not None else 0.0) + len(names)


def deal(weights: Mapping[str, float], count: int) -> dict[str, int]:
    """The shard (1-based) of each unit: heaviest first to the least loaded of ``count``
    shards, ties to the lower shard, equal weights in key order."""
    loads = [0.0] * count
    owner: dict[str, int] = {}
    for key in sorted(weights, key=lambda k: (-weights[k], k)):
        target = min(range(count), key=lambda i: (loads[i], i))
        loads[target] += weights[key]
        owner[key] = target + 1
    return owner


def split(
    items: Sequence[T], shard: Shard, describe: Callable[[T], tuple[str, str]]
) -> tuple[list[T], list[T]]:
    """(kept, dropped) items of ``shard``; ``describe(item)`` gives its unit key and test name.

    ValueError when the selection holds fewer units than shards (some shard would run
    nothing); an empty selection stays empty (pytest then says no tests ran, as unsharded).
    """
    keys = [describe(item) for item in items]
    units: dict[str, list[str]] = {}
    for key, name in keys:
        units.setdefault(key, []).append(name)
    if 0 < len(units) < shard.count:
        n = len(units)
        empty = f"shard {n + 1}" if n + 1 == shard.count else f"shards {n + 1}..{shard.count}"
        raise ValueError(
            f"--shard {shard}: the selection holds only {n} unit{'s' * (n > 1)} to deal (a "
            "unit: the tests of one case, of one pruned model or of one module timing side by "
            f"side), so {empty} would run nothing; split it into at most {n} shard{'s' * (n > 1)}"
        )
    owner = deal({key: unit_seconds(names) for key, names in units.items()}, shard.count)
    mine = [owner[key] == shard.index for key, _ in keys]
    kept = [item for item, keep in zip(items, mine, strict=True) if keep]
    dropped = [item for item, keep in zip(items, mine, strict=True) if not keep]
    return kept, dropped
