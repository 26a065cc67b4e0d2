"""The model cards' RD table: shipped learned models against JPEG, WebP and AVIF at equal bpp.

Run (from the repository root)::

    IMGCOMP_KODAK_DIR=../shared/data/kodak python scripts/rd_table.py \\
        [--dataset kodak] [--images N] [--codec mbt2018-mean] [--weights q3=PATH ...]

Each learned point is the mean over the images of real streams; each anchor's PSNR / SSIM /
MS-SSIM is its curve over quality settings (``imgcomp.anchors``) interpolated at that bpp.
``--weights q3=PATH`` measures a candidate export in place of the shipped quality 3.
"""

from __future__ import annotations

import argparse

from imgcomp.anchors import anchor_curve, compare, format_comparison
from imgcomp.data import load_dataset
from imgcomp.evaluate import evaluate, summarize
from imgcomp.registry import create_codec
from imgcomp.zoo import LEARNED, load_codec, shipped_qualities


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="kodak")
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--codec", default="mbt2018-mean")
    p.add_argument("--anchors", default="jpeg,webp,avif")
    p.add_argument("--weights", action="append", default=[], metavar="qK=PATH")
    args = p.parse_args()
    dataset = load_dataset(args.dataset)
    if args.images:
        dataset = dataset.subset(args.images)
    images = [(item.name, item.load()) for item in dataset]
    candidates = dict(w.split("=", 1) for w in args.weights)
    points = {}
    # the weight files carry the zoo's names (mean-scale-hyperprior-q3), the cli takes either
    zoo_name = {arch: name for name, arch in LEARNED.items()}.get(args.codec, args.codec)
    qualities = shipped_qualities(zoo_name)
    if not qualities:
        raise SystemExit(f"no shipped weights for {args.codec!r}; shipped: {sorted(LEARNED)}")
    for q in qualities:
        path = candidates.get(f"q{q}")
        codec = (
            load_codec(args.codec, checkpoint=path) if path else create_codec(args.codec, quality=q)
        )
        label = f"{args.codec} q{q}" + (" (candidate)" if path else "")
        points[label] = summarize(evaluate(codec, images, progress=True))
    anchors = [a for a in args.anchors.split(",") if a]
    curves = {a: anchor_curve(a, images) for a in anchors}
    print(f"{args.dataset}, {len(images)} images")
    print(format_comparison(compare(points, curves), anchors))


if __name__ == "__main__":
    main()
