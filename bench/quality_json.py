"""The suite's quality results as a JSON file (``--quality-json``), for ``imgcomp report``.

The file (``"format": "imgcomp-quality"``) holds the machine (CPU model, torch threads and
version), the commit, the UTC date, the run's options (matrix, dataset, images, ...) and per
case id: codec, base case, setting, ops, the means over images (bpp, bytes, psnr, ssim, ms_ssim,
encode_s, decode_s), the per-image values and the baseline comparison (baseline SSIM / bpp and
the gate's verdict). Written by the controller at the end of the run; the terminal tables stay
as they were.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imgcomp.fsutil import atomic_write_text
from imgcomp.report.cases import split_base, split_case_id, split_ops

#: What the ``format`` key of the file says (``imgcomp report`` recognises the file by it).
FORMAT = "imgcomp-quality"
FORMAT_VERSION = 1
#: Where the file goes without ``--quality-json PATH``, under the invocation directory (beside
#: pytest-benchmark's saves, which the report reads too).
DEFAULT_DIR = Path(".benchmarks") / "imgcomp-quality"
#: Run options recorded in the file (the suite's own, from the root conftest).
OPTIONS = ("matrix", "dataset", "images", "train_data", "device", "case", "verify_images")


def commit_info(cwd: Path) -> dict[str, Any]:
    """The checkout's commit (``id``, ``short``, ``dirty``); ids None outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return run.stdout.strip()

    full = git("rev-parse", "HEAD")
    if not full:
        return {"id": None, "short": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"id": full, "short": full[:7], "dirty": bool(status) if status is not None else None}


def machine_info() -> dict[str, Any]:
    """CPU model, torch's threads and version, Python and the OS (what the timings depend on)."""
    import torch

    from imgcomp.hardware import cpu_capabilities

    return {
        "cpu": cpu_capabilities().model,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "node": platform.node(),
    }


def default_path(root: Path, when: datetime, commit: Mapping[str, Any]) -> Path:
    """``root/.benchmarks/imgcomp-quality/<UTC timestamp>_<short commit or nocommit>.json``."""
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return root / DEFAULT_DIR / f"{stamp}_{commit.get('short') or 'nocommit'}.json"


def case_fields(case_id: str) -> dict[str, Any]:
    """Base case, codec, setting and ops of a case id (``mbt2018-mean-q3/prune=.../quant=int8``:
    base ``mbt2018-mean-q3``, codec ``mbt2018-mean``, setting ``q3``, ops ``prune=.../...``)."""
    base, ops = split_case_id(case_id)
    codec, setting = split_base(base)
    prune, quant = split_ops(ops) if ops else (None, None)
    return {
        "base": base,
        "codec": codec,
        "setting": setting,
        "ops": ops,
        "prune": prune,
        "quant": quant,
    }


def case_entry(summary: Mapping[str, Any], per_image: Sequence[Mapping[str, Any]] = ()) -> dict:
    """One case of the file from the suite's summary of it (and its per-image results)."""
    means = ("bpp", "bytes", "psnr", "ssim", "ms_ssim", "encode_s", "decode_s")
    return {
        **case_fields(summary["case"]),
        "images": summary["images"],
        "mean": {key: summary[key] for key in means if key in summary},
        "per_image": [dict(r) for r in per_image],
        "baseline": {
            "ssim": summary.get("baseline_ssim"),
            "bpp": summary.get("baseline_bpp"),
            "gate": summary.get("gate"),
        },
    }


def payload(
    summaries: Mapping[str, Mapping[str, Any]],
    per_image: Mapping[str, Sequence[Mapping[str, Any]]],
    options: Mapping[str, Any],
    *,
    when: datetime,
    commit: Mapping[str, Any],
    machine: Mapping[str, Any],
    baseline_changes: Sequence[str] = (),
    speedups: Mapping[str, Any] | None = None,
    precision: Sequence[Any] = (),
) -> dict[str, Any]:
    """The whole file: run facts, then every case by id (sorted, as the quality table)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "datetime": when.astimezone(timezone.utc).isoformat(),
        "commit_info": dict(commit),
        "machine_info": dict(machine),
        "options": dict(options),
        "cases": {
            cid: case_entry(summaries[cid], per_image.get(cid, ())) for cid in sorted(summaries)
        },
        "baseline_changes": list(baseline_changes),
        "speedups": dict(speedups or {}),
        "precision": list(precision),
    }


def write(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` to ``path`` (folders made, atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(data, indent=1) + "\n")
