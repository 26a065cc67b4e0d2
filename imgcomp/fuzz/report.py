"""What a campaign found: the outcome vocabulary, per-mutant and per-target results, the report,
and the helpers that summarize results and save reproducers (no forking, no decoding here)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imgcomp.fuzz.target import Target

__all__ = ["FAILURES", "OUTCOMES", "CampaignReport", "MutantResult", "TargetReport"]

#: How a decode can end: ``image`` (uint8 HxWx3 of the header's size), ``typed`` (an
#: :class:`~imgcomp.errors.ImgcompError`), ``foreign`` (any other exception, or a wrong image),
#: ``over_time``, ``over_memory`` (MemoryError, an allocator failure, or a SIGKILL the campaign
#: did not send) and ``crash`` (the worker died by another signal or without a result).
OUTCOMES = ("image", "typed", "foreign", "over_time", "over_memory", "crash")
#: The outcomes that are bugs: each one's mutant is saved as a reproducer.
FAILURES = ("foreign", "over_time", "over_memory", "crash")


@dataclass
class MutantResult:
    """How the decode of one mutant ended (``index`` -1: the unmutated stream)."""

    target: str
    index: int
    outcome: str
    description: str
    elapsed_s: float
    peak_rss_bytes: int
    error: str = ""  # typed: the class name; otherwise "Type: message" or the signal
    where: str = ""  # innermost imgcomp frame of the exception (file:line)
    stderr: str = ""  # the worker's stderr tail, for crashes
    reproducer: str | None = None


@dataclass
class TargetReport:
    """Counts per outcome, worst time and peak RSS of one target's mutants."""

    label: str
    decode: str
    mutants: int
    counts: dict[str, int]
    worst_s: float
    peak_rss_bytes: int
    elapsed_s: float
    baseline: MutantResult
    typed_errors: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Mutants decoded per second of wall time (baseline included)."""
        return (self.mutants + 1) / self.elapsed_s if self.elapsed_s else 0.0


@dataclass
class CampaignReport:
    """What a campaign found: per-target summaries, every result, the reproducers it saved."""

    seed: int
    time_limit_s: float
    memory_limit_bytes: int
    parent_rss_bytes: int
    targets: list[TargetReport]
    results: list[MutantResult]
    reproducers: list[str]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Target label -> outcome -> number of mutants."""
        return {t.label: dict(t.counts) for t in self.targets}

    def failures(self, target: str | None = None) -> list[MutantResult]:
        """Results with a bug outcome (:data:`FAILURES`), baselines included."""
        bad = [r for r in self.results if r.outcome in FAILURES]
        bad += [t.baseline for t in self.targets if t.baseline.outcome in FAILURES]
        return [r for r in bad if target is None or r.target == target]

    @property
    def ok(self) -> bool:
        """No target had a foreign, over-time, over-memory or crashed decode."""
        return not self.failures()

    def to_json(self, all_results: bool = False) -> str:
        """The report as JSON: summaries and failures (every result if ``all_results``)."""
        doc = {
            "seed": self.seed,
            "time_limit_s": self.time_limit_s,
            "memory_limit_bytes": self.memory_limit_bytes,
            "parent_rss_bytes": self.parent_rss_bytes,
            "targets": [asdict(t) | {"rate": round(t.rate, 2)} for t in self.targets],
            "failures": [asdict(r) for r in self.failures()],
            "reproducers": self.reproducers,
        }
        if all_results:
            doc["results"] = [asdict(r) for r in self.results]
        return json.dumps(doc, indent=2)

    def table(self) -> str:
        """A plain-text table: one row per target, outcome counts, worst time, peak RSS."""
        head = ["target", "mutants", *(o.replace("_", " ") for o in OUTCOMES)]
        head += ["worst s", "peak RSS MiB"]
        rows = [
            [
                t.label,
                str(t.mutants),
                *(str(t.counts.get(o, 0)) for o in OUTCOMES),
                f"{t.worst_s:.2f}",
                f"{t.peak_rss_bytes / 2**20:.0f}",
            ]
            for t in self.targets
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
            return "  ".join([first, *rest])

        out = [line(head), "  ".join("-" * w for w in widths), *map(line, rows)]
        for t in self.targets:
            if t.baseline.outcome != "image":
                out.append(
                    f"note: {t.label}: the unmutated stream decodes to {t.baseline.outcome} "
                    f"({t.baseline.error})"
                )
        return "\n".join(out)


def _summarize(
    target: Target, baseline: MutantResult, mutants: list[MutantResult], elapsed: float
) -> TargetReport:
    counts = dict.fromkeys(OUTCOMES, 0)
    typed: dict[str, int] = {}
    for r in mutants:
        counts[r.outcome] += 1
        if r.outcome == "typed":
            typed[r.error] = typed.get(r.error, 0) + 1
    every = [baseline, *mutants]
    return TargetReport(
        label=target.label,
        decode=target.decode,
        mutants=len(mutants),
        counts=counts,
        worst_s=max(r.elapsed_s for r in every),
        peak_rss_bytes=max(r.peak_rss_bytes for r in every),
        elapsed_s=elapsed,
        baseline=baseline,
        typed_errors=dict(sorted(typed.items())),
    )


def _save(out: Path, target: Target, result: MutantResult, data: bytes, seed: int) -> str:
    """Write a reproducer (the mutant bytes) and its line in ``reproducers.jsonl``."""
    folder = out / re.sub(r"[^A-Za-z0-9._+-]+", "_", target.label)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "original" if result.index < 0 else f"{result.index:05d}"
    path = folder / f"{stem}-{result.outcome}.bin"
    path.write_bytes(data)
    result.reproducer = str(path)
    line = asdict(result) | {"decode": target.decode, "seed": seed}
    with open(out / "reproducers.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    return str(path)
