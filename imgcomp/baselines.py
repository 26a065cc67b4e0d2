"""Committed quality baselines and the regression gate built on them.

One JSON file per (dataset, case) holds per-image SSIM and bpp plus the case's tolerance, so a
run on a subset of images gates against exactly those images. The gate compares means over the
run's images: ``ssim >= baseline_ssim - ssim_abs`` and ``bpp <= baseline_bpp * (1 + bpp_rel)``.
Updating never lowers a baseline silently: a worse value is written only when asked explicitly.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgcomp.errors import ImgcompError
from imgcomp.evaluate import ImageResult
from imgcomp.fsutil import atomic_write_text

STORED_FIELDS = ("ssim", "bpp", "psnr", "ms_ssim", "bytes")
_EPS = 1e-9
#: SSIM moves this little when the same stream is decoded with another thread count (a learned
#: decoder may round a few pixels differently); an update treats smaller moves as no change.
SSIM_JITTER = 1e-5


class BaselineError(ImgcompError):
    """A baseline is missing, incomplete, unreadable, or an update would lower it."""


@dataclass(frozen=True)
class Tolerance:
    """How far a run may fall behind its baseline: absolute SSIM, relative bpp."""

    ssim_abs: float = 0.002
    bpp_rel: float = 0.01


@dataclass
class GateOutcome:
    """Result of comparing one run with its baseline (means over the run's images)."""

    case: str
    images: list[str]
    ssim: float
    bpp: float
    baseline_ssim: float
    baseline_bpp: float
    tolerance: Tolerance
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def case_filename(case_id: str) -> str:
    """File name for a case id (``/`` and other unsafe characters become ``__`` / ``_``)."""
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", case_id.replace("/", "__")) + ".json"


class BaselineStore:
    """Baselines of one dataset, stored as ``<root>/<dataset>/<case>.json``."""

    def __init__(self, root: str | os.PathLike, dataset: str) -> None:
        self.dir = Path(root) / re.sub(r"[^A-Za-z0-9._-]", "_", dataset)
        self.dataset = dataset

    def path(self, case_id: str) -> Path:
        return self.dir / case_filename(case_id)

    def load(self, case_id: str) -> dict | None:
        """The stored baseline of a case, or None when there is none."""
        path = self.path(case_id)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BaselineError(f"baseline {path} is unreadable: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
            raise BaselineError(f"baseline {path} has no 'images' table")
        if not isinstance(data.get("tolerance"), dict):
            raise BaselineError(f"baseline {path} has no 'tolerance' entry")
        return data

    def check(self, case_id: str, results: Sequence[ImageResult]) -> GateOutcome:
        """Gate a run against its baseline; BaselineError when no baseline covers its images."""
        how = (
            f"create it with: pytest bench --dataset {self.dataset} -k '{case_id}' "
            "--update-baselines"
        )
        base = self.load(case_id)
        if base is None:
            raise BaselineError(f"no baseline for case {case_id!r} on {self.dataset}; {how}")
        missing = [r.image for r in results if r.image not in base["images"]]
        if missing:
            raise BaselineError(
                f"baseline {self.path(case_id)} has no entry for {', '.join(missing)}; {how}"
            )
        tol = Tolerance(**base["tolerance"])
        names = [r.image for r in results]
        outcome = GateOutcome(
            case=case_id,
            images=names,
            ssim=_mean(r.ssim for r in results),
            bpp=_mean(r.bpp for r in results),
            baseline_ssim=_mean(base["images"][n]["ssim"] for n in names),
            baseline_bpp=_mean(base["images"][n]["bpp"] for n in names),
            tolerance=tol,
        )
        if not outcome.ssim >= outcome.baseline_ssim - tol.ssim_abs:
            outcome.failures.append(
                f"SSIM {outcome.ssim:.5f} < baseline {outcome.baseline_ssim:.5f} - {tol.ssim_abs}"
            )
        if not outcome.bpp <= outcome.baseline_bpp * (1 + tol.bpp_rel):
            outcome.failures.append(
                f"bpp {outcome.bpp:.5f} > baseline {outcome.baseline_bpp:.5f} * (1 + {tol.bpp_rel})"
            )
        return outcome

    def update(
        self,
        case_id: str,
        results: Sequence[ImageResult],
        tolerance: Tolerance,
        allow_lower: bool = False,
    ) -> list[str]:
        """Write the run's values into the baseline; return a line per change.

        A value that gets worse (lower SSIM, higher bpp) is refused with BaselineError unless
        ``allow_lower``; images not in this run keep their stored values. Identical bytes with
        an SSIM within :data:`SSIM_JITTER` of the stored one count as unchanged.
        """
        base = self.load(case_id) or {
            "case": case_id,
            "dataset": self.dataset,
            "tolerance": vars(tolerance).copy(),
            "images": {},
        }
        changes, worse = [], []
        for r in results:
            new = {f: getattr(r, f) for f in STORED_FIELDS}
            old = base["images"].get(r.image)
            if old is None:
                changes.append(f"{case_id} {r.image}: new ssim={r.ssim:.5f} bpp={r.bpp:.5f}")
            elif (
                abs(old["ssim"] - new["ssim"]) > SSIM_JITTER or abs(old["bpp"] - new["bpp"]) > _EPS
            ):
                line = (
                    f"{case_id} {r.image}: ssim {old['ssim']:.5f} -> {r.ssim:.5f}, "
                    f"bpp {old['bpp']:.5f} -> {r.bpp:.5f}"
                )
                changes.append(line)
                if r.ssim < old["ssim"] - _EPS or r.bpp > old["bpp"] + _EPS:
                    worse.append(line)
            else:
                continue  # unchanged: keep the stored values (no churn from decode jitter)
            base["images"][r.image] = new
        if worse and not allow_lower:
            raise BaselineError(
                "refusing to lower the baseline (pass --accept-lower-baselines to accept):\n  "
                + "\n  ".join(worse)
            )
        if changes:
            base["images"] = dict(sorted(base["images"].items()))
            _atomic_write_json(self.path(case_id), base)
        return changes


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def _atomic_write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")
