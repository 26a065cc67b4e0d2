"""The ``imgcomp`` command: encode, decode, evaluate and list codecs.

imgcomp encode IN.png OUT.imgc --codec jpeg --quality 10
imgcomp decode OUT.imgc BACK.png            # the codec comes from the stream header
imgcomp eval --codec webp --bpp 0.3 --dataset kodak --json results.json
imgcomp study --codec mbt2018-mean --quality 3 --dataset kodak   # the pruning study's table
imgcomp list
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from imgcomp.errors import ImgcompError


def _param(text: str) -> tuple[str, object]:
    """Parse ``key=value``; the value is read as JSON when it parses (numbers, true/false)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _add_codec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", required=True, help="registered codec name (see `imgcomp list`)")
    p.add_argument("--quality", type=int, help="quality setting (codec-specific scale)")
    p.add_argument("--bpp", type=float, help="target bits per pixel (classic codecs)")
    p.add_argument(
        "-p",
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other codec parameter, repeatable",
    )
    p.add_argument("--device", default="cpu", help="device for learned codecs (cpu, cuda)")


def _codec_from_args(args: argparse.Namespace):
    from imgcomp.registry import create_codec

    params = dict(args.param)
    if args.quality is not None:
        params["quality"] = args.quality
    if args.bpp is not None:
        params["bpp"] = args.bpp
    if args.device != "cpu":
        params["device"] = args.device
    return create_codec(args.codec, **params)


def _cmd_encode(args: argparse.Namespace) -> int:
    from imgcomp.images import load_image

    codec = _codec_from_args(args)
    img = load_image(args.input)
    data = codec.encode(img)
    Path(args.output).write_bytes(data)
    h, w = img.shape[:2]
    print(f"{args.input} -> {args.output}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp")
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from imgcomp.images import save_png
    from imgcomp.registry import decode_stream

    try:
        data = Path(args.input).read_bytes()
    except OSError as exc:
        raise ImgcompError(f"cannot read {args.input}: {exc.strerror or exc}") from exc
    img = decode_stream(data)
    save_png(img, args.output)
    print(f"{args.input} -> {args.output}: {img.shape[1]}x{img.shape[0]}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from imgcomp.data import load_dataset
    from imgcomp.evaluate import evaluate, format_table, summarize

    codec = _codec_from_args(args)
    dataset = load_dataset(args.dataset)
    if args.images is not None:
        dataset = dataset.subset(args.images)
    results = evaluate(
        codec, ((item.name, item.load()) for item in dataset), progress=not args.quiet
    )
    print(format_table(results, title=f"{codec!r} on {args.dataset}"))
    if args.json:
        payload = {
            "codec": getattr(codec, "name", args.codec),
            "params": getattr(codec, "params", {}),
            "dataset": args.dataset,
            "mean": summarize(results),
            "images": [r.as_dict() for r in results],
        }
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    import torch

    from imgcomp.data import load_dataset
    from imgcomp.study import format_study_table, get_grid, rows_to_json, run_study

    if args.threads is not None:
        if args.threads < 1:
            raise ImgcompError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    from imgcomp.timing import steady_allocator

    steady_allocator()  # timings independent of what ran before (pruning, recovery training)
    threads = torch.get_num_threads()
    configs = get_grid(args.grid)
    codec = _codec_from_args(args)
    dataset = load_dataset(args.dataset)
    if args.images is not None:
        dataset = dataset.subset(args.images)
    images = [(item.name, item.load()) for item in dataset]

    tty = sys.stderr.isatty()

    def progress(config, done: int, total: int) -> None:
        if tty:
            end = "\n" if done == total else ""
            print(f"\r{config.label}: {done}/{total} images", end=end, file=sys.stderr, flush=True)
        elif done == total:
            print(f"{config.label}: {total} images", file=sys.stderr)

    rows = run_study(
        codec, configs, images, repeats=args.repeats, progress=None if args.quiet else progress
    )
    title = (
        f"{codec!r} on {args.dataset}: {len(images)} images, grid {args.grid}, "
        f"{threads} threads, best of {args.repeats}"
    )
    if args.format == "markdown":
        title = f"**{title}**\n"
    elif args.format == "tsv":
        title = f"# {title}"
    print(title)
    print(format_study_table(rows, style=args.format))
    if args.json:
        payload = {
            "codec": getattr(codec, "name", args.codec),
            "params": getattr(codec, "params", {}),
            "dataset": args.dataset,
            "grid": args.grid,
            "repeats": args.repeats,
            "threads": threads,
            "images": [name for name, _ in images],
            "rows": rows_to_json(rows),
        }
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from imgcomp.registry import list_codecs

    for name in list_codecs(aliases=args.aliases):
        print(name)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from imgcomp.train import TrainConfig, default_data_dir, read_checkpoint, train

    try:
        config = TrainConfig(
            arch=args.arch,
            N=args.N,
            M=args.M,
            lmbda=args.lmbda,
            steps=args.steps,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            lr=args.lr,
            aux_lr=args.aux_lr,
            seed=args.seed,
            data=args.data or str(default_data_dir()),
            out=args.out,
            device=args.device,
            amp=args.amp,
            channels_last=not args.no_channels_last,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
            num_threads=args.num_threads,
            max_seconds=args.max_seconds,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise ImgcompError(f"invalid training option: {exc}") from None
    path = train(config)
    state = read_checkpoint(path)
    status = "finished" if state["finished"] else "stopped early (resume with the same command)"
    print(f"{path}: step {state['step']}/{config.steps}, {status}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from imgcomp.train import export_weights

    path = export_weights(
        args.checkpoint, args.output, half=args.half, fit_quantile_steps=args.fit_quantiles
    )
    print(f"{args.checkpoint} -> {path} ({path.stat().st_size} bytes)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcomp", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="compress an image file into an imgcomp stream")
    p.add_argument("input")
    p.add_argument("output")
    _add_codec_args(p)
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("decode", help="decode a stream to PNG (codec read from the header)")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("eval", help="rate, quality and time of a codec on a dataset")
    _add_codec_args(p)
    p.add_argument("--dataset", default="kodak", help="kodak, sample or folder:PATH")
    p.add_argument("--images", type=int, help="first N images only")
    p.add_argument("--json", help="also write per-image and mean results to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("study", help="the pruning study's table: time, SSIM, size per config")
    _add_codec_args(p)
    p.add_argument("--dataset", default="kodak", help="kodak, sample or folder:PATH")
    p.add_argument("--images", type=int, help="first N images only")
    p.add_argument(
        "--grid",
        default="study",
        choices=("study", "extended"),
        help="study: {0,0.3}^3 L1 ratios; extended: plus structured, bf16, int8",
    )
    p.add_argument("--repeats", type=int, default=1, help="time each image N times, keep the best")
    p.add_argument("--format", default="text", choices=("text", "markdown", "tsv"))
    p.add_argument("--json", help="also write the rows (with model sizes) to this file")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser("list", help="list registered codecs")
    p.add_argument("--aliases", action="store_true", help="include alias names")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("train", help="train a learned codec (resumes RUN's checkpoint)")
    p.add_argument("--arch", default="mbt2018-mean", help="architecture or alias (mean-scale...)")
    p.add_argument("--N", type=int, default=128, help="transform channels")
    p.add_argument("--M", type=int, default=192, help="latent channels")
    p.add_argument("--lmbda", type=float, required=True, help="loss = lmbda*255^2*MSE + bpp")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--data", default=None, help="image folder (default: ../shared/data/train)")
    p.add_argument("--out", required=True, help="run directory, e.g. runs/NAME")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the transforms (CUDA)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW layout on CUDA")
    p.add_argument("--checkpoint-every", type=int, default=1000, metavar="STEPS")
    p.add_argument("--log-every", type=int, default=100, metavar="STEPS")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-seconds", type=float, default=None, help="stop (with a checkpoint) after")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="write a training checkpoint's weights as safetensors")
    p.add_argument("checkpoint", help="run directory, checkpoint.pt or an exported .safetensors")
    p.add_argument("output", help="OUT.safetensors")
    p.add_argument("--half", action="store_true", help="store the transforms in float16")
    p.add_argument(
        "--fit-quantiles",
        type=int,
        default=20000,
        metavar="STEPS",
        help="refine the density quantiles (aux loss only) for STEPS Adam steps first; 0: off",
    )
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imgcomp`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImgcompError as exc:
        print(f"imgcomp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
