#!/usr/bin/env python
"""Peak decode memory of the shipped models against image size, and the largest image each
decodes within a memory budget: the README's table ("Memory"), re-measurable.

For each model: one image (the dataset's first, resized to each size, 3:2) encoded, warmed up,
then its decode measured in a forked worker (:func:`imgcomp.memory.codec_peaks`: the decode's
own memory above the worker's RSS). A least-squares line over the sizes gives MiB per megapixel
and a fixed part; the largest image within a budget is (budget - the process's RSS with the
model loaded - fixed part) / slope. Linux only (the kernel's high-water mark)::

    OMP_NUM_THREADS=1 python scripts/measure_memory.py            # all four, 0.4-4 MP
    python scripts/measure_memory.py --model mbt2018-mean --sizes 0.4 1 --format markdown
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

#: The shipped models as the README names them, and how to build each.
MODELS = {
    "mbt2018-mean": {"quality": 3},
    "bmshj2018-factorized": {"quality": 3},
    "toderici2017": {"iterations": 3},
    "hific": {},
}
SIZES_MP = (0.4, 1.0, 2.0, 4.0)
BUDGETS_GIB = (2, 4, 8)


def resized(img: np.ndarray, megapixels: float) -> np.ndarray:
    """``img`` resized (bicubic) to about ``megapixels`` at 3:2, sides multiples of 16."""
    from PIL import Image

    w = max(16, round((megapixels * 1e6 * 1.5) ** 0.5 / 16) * 16)
    h = max(16, round(w / 1.5 / 16) * 16)
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC))


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(MiB per MP, fixed MiB) of the least-squares line through (MP, MiB) points."""
    mp, mib = np.array(points).T
    if len(points) == 1:
        return float(mib[0] / mp[0]), 0.0
    slope, fixed = np.polyfit(mp, mib, 1)
    return float(slope), float(fixed)


def measure(name: str, dataset: str, sizes: tuple[float, ...]) -> dict:
    """One model's decode peaks per size, its line and the process's RSS with it loaded (run
    in a fresh interpreter per model: no other model's memory in that RSS)."""
    import imgcomp
    from imgcomp.data import load_dataset
    from imgcomp.memory import MIB, codec_peaks, rss
    from imgcomp.timing import steady_allocator

    steady_allocator()  # as the benchmark runs
    img = next(iter(load_dataset(dataset))).load()
    codec = imgcomp.create_codec(name, **MODELS[name])
    loaded = rss() / MIB  # before any coding: the warm-ups' freed buffers stay in the heap
    points = []
    for mp in sizes:
        x = resized(img, mp)
        start = time.perf_counter()
        peaks = codec_peaks(codec, x)
        if peaks is None:
            raise SystemExit("peak memory needs Linux (/proc/self/clear_refs and VmHWM)")
        real = x.shape[0] * x.shape[1] / 1e6
        points.append((real, peaks.decode.increment_mib))
        print(
            f"  {name} {x.shape[1]}x{x.shape[0]} ({real:.2f} MP): decode "
            f"{peaks.decode.increment_mib:.0f} MiB, encode {peaks.encode.increment_mib:.0f} "
            f"MiB ({time.perf_counter() - start:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    slope, fixed = fit(points)
    return {"model": name, "points": points, "slope": slope, "fixed": fixed, "rss": loaded}


def largest_mp(row: dict, budget_gib: float) -> float:
    """Megapixels the model decodes within ``budget_gib`` (the process included); 0 if none."""
    room = budget_gib * 1024 - row["rss"] - max(row["fixed"], 0.0)
    return max(0.0, room / row["slope"])


def table(rows: list[dict], style: str) -> str:
    """The README's table: model, MiB per MP, fixed MiB, the process's RSS, largest images."""
    head = ["model", "MiB per MP", "fixed MiB", "process MiB"]
    head += [f"largest in {b} GiB" for b in BUDGETS_GIB]
    cells = [
        [
            r["model"],
            f"{r['slope']:.0f}",
            f"{r['fixed']:.0f}",
            f"{r['rss']:.0f}",
            *(f"{largest_mp(r, b):.0f} MP" for b in BUDGETS_GIB),
        ]
        for r in rows
    ]
    if style == "markdown":
        rule = [":---", *["---:"] * (len(head) - 1)]
        return "\n".join("| " + " | ".join(line) + " |" for line in [head, rule, *cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    return "\n".join(
        "  ".join(
            v.rjust(w) if i else v.ljust(w)
            for i, (v, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [head, *cells]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=list(MODELS), help="repeatable")
    parser.add_argument("--sizes", type=float, nargs="+", default=list(SIZES_MP), metavar="MP")
    parser.add_argument("--dataset", default="kodak", help="where the image comes from")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    args = parser.parse_args(argv)

    rows = []
    for name in args.model or MODELS:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(pool.submit(measure, name, args.dataset, tuple(args.sizes)).result())
    print(table(rows, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
