"""The suite's quality results as a JSON file (``--quality-json``), for ``imgcomp report``.

The file (``"format": "imgcomp-quality"``) holds the machine (CPU model, torch threads and
version), the commit, the UTC date, the run's options (matrix, dataset, images, ...) and per
case id: codec, base case, setting, ops, the means over images (bpp, bytes, psnr, ssim, ms_ssim,
encode_s, decode_s), the per-image values, the baseline comparison (baseline SSIM / bpp and
the gate's verdict) and the peak memory (``memory``: ``peak_encode_mib``, ``peak_decode_mib``
above the worker's RSS, null where not measurable, on ``memory_image``; :mod:`bench.memory`).
Written by the controller at the end of the run; the terminal tables stay as they were.

Beside it, for the report's visual comparison, each case's crop of the run's first image: the
decoded pixels as PNG, ``crops/<the file's stem>/<case>.png``, and the original's crop once per
image (:class:`Crops` keeps them during the run, :func:`write` saves them); the image's
``per_image`` entry names them under ``crop`` (paths relative to the JSON file's folder, and
the box: top, left, height, width), so the crop sits with that image's bpp, PSNR and SSIM.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import platform
import re
import subprocess
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.memory import KEYS as MEMORY_KEYS
from imgcomp.fsutil import atomic_write_bytes, atomic_write_text
from imgcomp.report.cases import split_base, split_case_id, split_ops

#: What the ``format`` key of the file says (``imgcomp report`` recognises the file by it).
FORMAT = "imgcomp-quality"
FORMAT_VERSION = 1
#: Where the file goes without ``--quality-json PATH``, under the invocation directory (beside
#: pytest-benchmark's saves, which the report reads too).
DEFAULT_DIR = Path(".benchmarks") / "imgcomp-quality"
#: Run options recorded in the file (the suite's own, from the root conftest).
OPTIONS = ("matrix", "dataset", "images", "train_data", "device", "case", "verify_images")
#: The crops' side in pixels, the grid their position is chosen on, and their folder beside the
#: JSON file (``crops/<stem>/``).
CROP, CROP_STEP, CROPS_DIR = 128, 16, "crops"


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
        **_memory(summary),
    }


def _memory(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The case's peak memory as the file holds it (``memory``: peak encode / decode MiB, None
    where not measurable, and the image measured); nothing for a summary without it."""
    if not any(key in summary for key in MEMORY_KEYS):
        return {}
    return {"memory": {key: summary.get(key) for key in MEMORY_KEYS}}


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


def write(
    path: Path, data: Mapping[str, Any], crops: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """Write ``data`` to ``path`` (folders made, atomically); with ``crops`` (case id -> a
    :meth:`Crops.record`), their PNGs too, each named in its image's ``per_image`` entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if crops:
        data = attach_crops(path, data, crops)
    return atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def crop_box(img: np.ndarray, size: int = CROP, step: int = CROP_STEP) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an image's crop: the ``size`` square (the whole side where
    the image is smaller) of most detail (sum of absolute pixel differences), on a ``step`` grid,
    the first of equals. The same image gets the same box in every run and case."""
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    gray = img.astype(np.float32).mean(axis=2)
    detail = np.zeros((h, w), np.float32)
    detail[:, 1:] += np.abs(np.diff(gray, axis=1))
    detail[1:, :] += np.abs(np.diff(gray, axis=0))
    total = np.zeros((h + 1, w + 1), np.float64)
    total[1:, 1:] = detail.cumsum(axis=0).cumsum(axis=1)
    tops = np.arange(0, h - ch + 1, step)
    lefts = np.arange(0, w - cw + 1, step)
    y, x = tops[:, None], lefts[None, :]
    sums = total[y + ch, x + cw] - total[y, x + cw] - total[y + ch, x] + total[y, x]
    i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(tops[i]), int(lefts[j]), ch, cw


def _png_b64(pixels: np.ndarray) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def crop_record(case_id: str, name: str, original: np.ndarray, decoded: np.ndarray) -> dict:
    """One case's crop of image ``name``: its box and both crops as base64 PNG (plain JSON
    types, so the record travels from an xdist worker in a test's user properties)."""
    top, left, h, w = box = crop_box(original)
    return {
        "case": case_id,
        "image": name,
        "box": list(box),
        "original_png": _png_b64(original[top : top + h, left : left + w]),
        "decoded_png": _png_b64(decoded[top : top + h, left : left + w]),
    }


class Crops:
    """The crop of each case's first decoded image, kept during the run:
    ``evaluate(..., on_decoded=crops.keeper(case_id))``, then :meth:`record` for the test's
    user properties."""

    def __init__(self) -> None:
        self._kept: dict[str, dict] = {}

    def keeper(self, case_id: str) -> Callable[[str, np.ndarray, np.ndarray], None]:
        """An ``on_decoded`` callback that keeps the first image it sees for ``case_id``."""

        def keep(name: str, original: np.ndarray, decoded: np.ndarray) -> None:
            if case_id not in self._kept:
                self._kept[case_id] = crop_record(case_id, name, original, decoded)

        return keep

    def record(self, case_id: str) -> dict | None:
        """The kept crop of ``case_id`` (None when it decoded no image here)."""
        return self._kept.get(case_id)


def _slug(text: str) -> str:
    """A file name of a case id or image name: safe characters, plus the crc32 of the text (two
    ids that differ only in punctuation still get two files)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "x"
    return f"{safe}-{zlib.crc32(text.encode()):08x}"


def attach_crops(
    path: Path, data: Mapping[str, Any], crops: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A copy of ``data`` whose per-image entries name the crops, each written under
    ``path``'s folder (``crops/<stem>/``; an original crop once per image and box)."""
    out = copy.deepcopy(dict(data))
    folder = Path(CROPS_DIR) / path.stem
    for case_id, crop in sorted(crops.items()):
        per_image = out["cases"].get(case_id, {}).get("per_image", ())
        entry = next((r for r in per_image if r.get("image") == crop["image"]), None)
        if entry is None:  # a crop of a case or image the file does not hold
            continue
        top, left, h, w = crop["box"]
        original = folder / f"original_{_slug(crop['image'])}_{top}_{left}_{h}x{w}.png"
        decoded = folder / f"{_slug(case_id)}.png"
        (path.parent / folder).mkdir(parents=True, exist_ok=True)
        if not (path.parent / original).is_file():
            atomic_write_bytes(path.parent / original, base64.b64decode(crop["original_png"]))
        atomic_write_bytes(path.parent / decoded, base64.b64decode(crop["decoded_png"]))
        entry["crop"] = {
            "box": [top, left, h, w],
            "original": original.as_posix(),
            "decoded": decoded.as_posix(),
        }
    return out
