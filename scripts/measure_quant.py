"""Measure the quantization modes: latency, SSIM and bpp on Kodak, SSIM vs weight bits.

Run (from the repository root)::

    IMGCOMP_KODAK_DIR=../shared/data/kodak python scripts/measure_quant.py \\
        [--images 4] [--threads 2] [--repeats 5] [--json out.json] [--no-large]

Variants run interleaved (each repeat times every variant on every image in turn), so load from
other processes spreads over all of them; per image the median over repeats is kept, and tables
show the mean of those medians over images and the smallest single time seen. ``f32-cl`` is not
a mode: float32 with channels_last activations, a reference for what memory format alone buys.
``int8-gdnf`` keeps GDN float, ``int8-native`` uses FX's quantized ConvTranspose2d, ``int8-ed``
leaves h_a / h_s (the entropy component) float; ``int8`` is the default (every component).
Encode / decode are the codec's full paths (transforms and entropy coding); ``g_s`` is the
synthesis transform alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

import imgcomp
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.data import load_dataset
from imgcomp.fsutil import atomic_write_text
from imgcomp.metrics import bpp as bits_per_pixel
from imgcomp.metrics import ssim
from imgcomp.ops.base import copy_model, derive
from imgcomp.ops.quant.api import quantize_codec
from imgcomp.ops.quant.calibration import calibration_images
from imgcomp.precision import weight_bits_table
from imgcomp.timing import time_side_by_side


class _ChannelsLast(nn.Module):
    """float32 transform run on channels_last activations (reference only)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x.contiguous(memory_format=torch.channels_last))
        return out.contiguous()


def _f32_channels_last(codec: LearnedCodec) -> LearnedCodec:
    model = copy_model(codec)
    model.g_a, model.g_s = _ChannelsLast(model.g_a), _ChannelsLast(model.g_s)
    return derive(codec, model, "reference:f32-channels-last")


@dataclass
class _Row:
    encode: list[list[float]] = field(default_factory=list)  # [image][repeat]
    decode: list[list[float]] = field(default_factory=list)
    synth: list[list[float]] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    bpp: list[float] = field(default_factory=list)
    exact: bool = True
    quantize_s: float = 0.0

    def summary(self) -> dict[str, float | bool]:
        def agg(runs: list[list[float]]) -> tuple[float, float]:
            med = [statistics.median(r) for r in runs]
            return 1e3 * float(np.mean(med)), 1e3 * min(min(r) for r in runs)

        enc, enc_min = agg(self.encode)
        dec, dec_min = agg(self.decode)
        syn, syn_min = agg(self.synth)
        out: dict[str, float | bool] = {
            "encode_ms": enc,
            "encode_min_ms": enc_min,
            "decode_ms": dec,
            "decode_min_ms": dec_min,
            "g_s_ms": syn,
            "g_s_min_ms": syn_min,
            "exact": self.exact,
            "quantize_s": self.quantize_s,
        }
        if self.ssim:
            out["ssim"] = float(np.mean(self.ssim))
            out["bpp"] = float(np.mean(self.bpp))
        return out


def _build(
    base: LearnedCodec, modes: list[str], calib: list[np.ndarray]
) -> tuple[dict[str, tuple[LearnedCodec, float]], dict[str, float]]:
    """The codecs to compare (with the seconds quantization took) and their size ratios."""
    out: dict[str, tuple[LearnedCodec, float]] = {"float": (base, 0.0)}
    sizes = {"float": 1.0}
    for name in modes:
        t = time.perf_counter()
        if name == "f32-cl":
            codec, ratio = _f32_channels_last(base), 1.0
        else:
            mode, options = name, {}
            if name == "int8-gdnf":
                mode, options = "int8", {"gdn": "float"}
            elif name == "int8-native":
                mode, options = "int8", {"deconv": "native"}
            elif name == "int8-ed":
                mode, options = "int8", {"components": ("encoder", "decoder")}
            codec, report = quantize_codec(base, mode, calib if mode == "int8" else None, **options)
            ratio = report.size_ratio
        out[name] = (codec, time.perf_counter() - t)
        sizes[name] = ratio
    return out, sizes


def run_latency(
    codecs: dict[str, tuple[LearnedCodec, float]],
    images: list[np.ndarray],
    repeats: int,
    quality: bool,
) -> dict[str, dict[str, float | bool]]:
    """Interleaved timing of every codec on every image; SSIM / bpp when ``quality``."""
    rows = {name: _Row(quantize_s=t) for name, (_, t) in codecs.items()}
    streams: dict[str, list[bytes]] = {}
    for name, (codec, _) in codecs.items():  # warm-up, streams, quality, exactness
        streams[name] = [codec.encode(img) for img in images]
        for img, data in zip(images, streams[name], strict=True):
            rec = codec.decode(data)
            rows[name].exact &= bool(np.array_equal(rec, codec.reconstruct(img)))
            if quality:
                rows[name].ssim.append(ssim(img, rec))
                rows[name].bpp.append(bits_per_pixel(len(data), *img.shape[:2]))
    latents = {}
    for name, (codec, _) in codecs.items():
        with torch.inference_mode():
            latents[name] = [
                codec.model.quantize_latents(codec._to_input(img))["y_hat"] for img in images
            ]

    def synth(codec: LearnedCodec, y: Tensor) -> Tensor:
        with torch.inference_mode():
            return codec.model.g_s(y)

    # the loop above warmed every codec up; each phase is timed interleaved across variants
    encode = time_side_by_side(
        {n: [partial(c.encode, img) for img in images] for n, (c, _) in codecs.items()},
        repeats,
        warmup=0,
    )
    decode = time_side_by_side(
        {n: [partial(c.decode, d) for d in streams[n]] for n, (c, _) in codecs.items()},
        repeats,
        warmup=0,
    )
    synthesis = time_side_by_side(
        {n: [partial(synth, c, y) for y in latents[n]] for n, (c, _) in codecs.items()},
        repeats,
        warmup=0,
    )
    for name, r in rows.items():
        r.encode, r.decode, r.synth = (
            [list(runs) for runs in t.runs[name]] for t in (encode, decode, synthesis)
        )
    return {name: row.summary() for name, row in rows.items()}


def run_bits_table(base: LearnedCodec, images: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean SSIM, PSNR and bpp of float32 and of wK (K = 8..2) on every component's transforms."""
    return weight_bits_table(base, [(f"image{i}", img) for i, img in enumerate(images)])


def _cell(col: str, v: object) -> str:
    if not isinstance(v, float):
        return str(v)
    if col in ("ssim", "bpp"):
        return f"{v:.4f}"
    return f"{v:.2f}" if "ratio" in col else f"{v:.1f}"


def _markdown(rows: dict[str, dict], cols: list[str]) -> str:
    head = "| variant | " + " | ".join(cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"
    body = []
    for name, r in rows.items():
        cells = [_cell(c, r.get(c, "")) for c in cols]
        body.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


def _trained(args: argparse.Namespace, images: list[np.ndarray], calib: list[np.ndarray]) -> dict:
    """Every variant on the shipped model: latency, SSIM, bpp, size; then SSIM vs bits."""
    base = imgcomp.create_codec("mbt2018-mean", quality=args.quality)
    modes = ["f32-cl", "bf16", "int8", "int8-gdnf", "int8-native", "int8-ed", "w8", "w4"]
    codecs, sizes = _build(base, modes, calib)
    trained = run_latency(codecs, images, args.repeats, quality=True)
    for name, ratio in sizes.items():
        trained[name]["size_ratio"] = ratio
        trained[name]["decode_ratio"] = trained[name]["decode_ms"] / trained["float"]["decode_ms"]
    cols = ["encode_ms", "decode_ms", "decode_ratio", "g_s_ms", "decode_min_ms", "ssim", "bpp"]
    print(
        f"## mbt2018-mean quality {args.quality}, {len(images)} Kodak images, "
        f"{args.threads} threads, median of {args.repeats}\n"
    )
    print(_markdown(trained, [*cols, "size_ratio", "exact"]) + "\n")
    bits = run_bits_table(base, images)
    print("## SSIM vs weight bits (weights of g_a, g_s, h_a, h_s at K bits)\n")
    print(_markdown(bits, ["ssim", "psnr", "bpp"]) + "\n")
    return {"trained": trained, "ssim_vs_bits": bits}


def _large(args: argparse.Namespace, images: list[np.ndarray], calib: list[np.ndarray]) -> dict:
    """Latency only, on a random-weight N=128, M=192 mean-scale model."""
    big = imgcomp.create_codec("mbt2018-mean", pretrained=False, N=128, M=192, seed=0)
    codecs, _ = _build(big, ["f32-cl", "bf16", "int8", "w8", "w4"], calib)
    large = run_latency(codecs, images, max(1, args.repeats // 2), quality=False)
    for row in large.values():
        row["decode_ratio"] = row["decode_ms"] / large["float"]["decode_ms"]
    print(
        f"## random-weight mbt2018-mean N=128, M=192 (latency only), median of "
        f"{max(1, args.repeats // 2)}\n"
    )
    print(_markdown(large, ["encode_ms", "decode_ms", "decode_ratio", "g_s_ms", "exact"]))
    return large


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calibration", type=int, default=8, help="training crops for int8")
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--no-large", action="store_true", help="skip the N=128, M=192 model")
    ap.add_argument("--no-trained", action="store_true", help="skip the shipped model")
    ap.add_argument("--json", help="write all results here")
    args = ap.parse_args(argv)

    from imgcomp.timing import steady_allocator

    steady_allocator()
    torch.set_num_threads(args.threads)
    items = list(load_dataset("kodak", download=False).subset(args.images))
    images = [item.load() for item in items]
    calib = calibration_images(n=args.calibration, size=256, seed=0)
    results: dict[str, object] = {
        "threads": args.threads,
        "repeats": args.repeats,
        "images": [item.name for item in items],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }

    if not args.no_trained:
        results.update(_trained(args, images, calib))
    if not args.no_large:
        results["large"] = _large(args, images, calib)
    results["engine"] = torch.backends.quantized.engine
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
