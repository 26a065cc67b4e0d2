"""Quality history for github-action-benchmark: the newest quality run's means per case in the
action's custom formats, so SSIM, PSNR and bpp get a history and an alert like the timings.

``quality-bigger.json`` (``tool: customBiggerIsBetter``): SSIM, PSNR (dB) and MS-SSIM per case;
``quality-smaller.json`` (``tool: customSmallerIsBetter``): bpp per case. Each a JSON list of
``{"name": "<case id> <metric>", "unit": ..., "value": ..., "extra": ...}``: names stay the same
across runs (the case id and the metric), which is what the action keys its history by.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from imgcomp.errors import ImgcompError
from imgcomp.fsutil import atomic_write_text
from imgcomp.report.load import Inputs, QualityRun

__all__ = [
    "BIGGER",
    "BIGGER_METRICS",
    "SMALLER",
    "SMALLER_METRICS",
    "entries",
    "newest_run",
    "write_history",
]

BIGGER, SMALLER = "quality-bigger.json", "quality-smaller.json"
#: (metric key in the quality results, unit) of each file.
BIGGER_METRICS = (("ssim", "SSIM"), ("psnr", "dB"), ("ms_ssim", "MS-SSIM"))
SMALLER_METRICS = (("bpp", "bpp"),)


def entries(run: QualityRun, metrics: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """The action's entries of ``run``'s cases (by id) for ``metrics``; a value that is not a
    finite number (a lossless image's infinite PSNR) is left out: JSON cannot hold it."""
    dataset = run.dataset or "?"
    out = []
    for case_id in sorted(run.cases):
        case = run.cases[case_id]
        extra = f"{case.images} images of {dataset}; run {run.label}"
        for key, unit in metrics:
            value = case.mean.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                name = f"{case_id} {key}"
                out.append({"name": name, "unit": unit, "value": float(value), "extra": extra})
    return out


def newest_run(inputs: Inputs) -> QualityRun:
    """The quality run the history records: the newest (shards already merged by the loader);
    ImgcompError when the inputs hold none."""
    if not inputs.quality:
        raise ImgcompError(
            "--benchmark-action needs the suite's quality results (pytest bench writes them to "
            ".benchmarks/imgcomp-quality/); none among the inputs"
        )
    return max(inputs.quality, key=lambda r: r.datetime)


def write_history(run: QualityRun, folder: Path) -> tuple[Path, Path]:
    """Write ``folder/quality-bigger.json`` and ``folder/quality-smaller.json`` of ``run``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, metrics in ((BIGGER, BIGGER_METRICS), (SMALLER, SMALLER_METRICS)):
        text = json.dumps(entries(run, metrics), indent=1, allow_nan=False) + "\n"
        paths.append(atomic_write_text(folder / name, text))
    return paths[0], paths[1]
