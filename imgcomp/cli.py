"""The ``imgcomp`` command: encode, decode, evaluate and list codecs.

imgcomp encode IN.png OUT.imgc --codec jpeg --quality 10
imgcomp decode OUT.imgc BACK.png            # the codec comes from the stream header
imgcomp encode IN.png OUT.imgc --codec mbt2018-mean --quality 3 --quant int8 --save-model q.st
imgcomp decode --model q.st OUT.imgc BACK.png   # streams of compressed codecs need the codec
imgcomp eval --codec webp --bpp 0.3 --dataset kodak --json results.json
imgcomp study --codec mbt2018-mean --quality 3 --dataset kodak   # the pruning study's table
imgcomp study --codec toderici2017 --iterations 3 --dataset kodak  # the RNN's Table 1
imgcomp list
imgcomp fuzz --mutants 10000 --out fuzz-run     # hostile streams against every decoder
imgcomp report .benchmarks study.json --out report   # HTML: RD curves, ops, latency, crops
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


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _add_codec_args(p: argparse.ArgumentParser, model: bool = False, weights: bool = False) -> None:
    if model:
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--codec", help="registered codec name (see `imgcomp list`)")
        which.add_argument(
            "--model", metavar="PATH", help="a saved codec (`--save-model`) instead of --codec"
        )
    else:
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
    if weights:  # codec parameters of learned codecs, spelled out (also -p KEY=VALUE)
        p.add_argument(
            "--iterations", type=int, help="iterations of progressive codecs (toderici2017: 1..16)"
        )
        p.add_argument(
            "--checkpoint",
            metavar="PATH",
            help="weights to build the learned codec on (`imgcomp export`'s safetensors)",
        )
        p.add_argument(
            "--pretrained",
            type=_bool,
            metavar="true|false",
            help="false: seeded random weights instead of the shipped ones (timing only)",
        )


def _add_op_args(p: argparse.ArgumentParser) -> None:
    # no torch import here: building the parser stays fast (`imgcomp list`, `--version`)
    ops = p.add_argument_group("compression ops (learned codecs; pruning first)")
    ops.add_argument(
        "--prune",
        metavar="TAG",
        help="prune as the benchmark's case ids say, e.g. enc0.3,dec0.3,ent0.3:l1 "
        "(methods l1, l1-global, structured)",
    )
    ops.add_argument("--quant", metavar="MODE", help="quantize: bf16, int8 or w2..w8")
    ops.add_argument(
        "--recover-steps",
        type=int,
        metavar="N",
        help="structured: recovery fine-tuning steps (default: the benchmark's, 300)",
    )
    ops.add_argument(
        "--round-to",
        type=int,
        metavar="N",
        help="structured: kept widths rounded down to multiples of N (default: the "
        "benchmark's, 4; 1: exact widths)",
    )
    _add_train_data_arg(ops)


def _add_train_data_arg(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--train-data",
        metavar="SPEC",
        help="training images of structured pruning and int8 calibration (a folder or set name; "
        "default: the ops' own)",
    )


def _apply_ops(codec, args: argparse.Namespace):
    """The codec with the --prune / --quant options applied (the same codec without them)."""
    from dataclasses import replace

    from imgcomp.study import config_from_tags

    config = config_from_tags(args.prune, args.quant, family=getattr(codec, "family", None))
    overrides = {
        key: value
        for key, value in (("recover_steps", args.recover_steps), ("round_to", args.round_to))
        if value is not None
    }
    if overrides:
        if not (config.pruned and config.method == "structured"):
            raise ImgcompError("--recover-steps and --round-to apply to structured pruning")
        if overrides.get("round_to") == 1:
            overrides["round_to"] = None
        config = replace(config, **overrides)
    if not (config.pruned or config.quant):
        return codec
    return config.apply(codec, data=args.train_data)


def _codec_from_args(args: argparse.Namespace):
    from imgcomp.registry import create_codec

    if getattr(args, "model", None):
        given = [
            flag
            for flag, value in (("--quality", args.quality), ("--bpp", args.bpp))
            if value is not None
        ] + (["--param"] if args.param else [])
        if given:
            raise ImgcompError(f"--model gives the whole codec; drop {', '.join(given)}")
        import imgcomp

        return imgcomp.load_codec(args.model, device=args.device)
    params = dict(args.param)
    for key in ("iterations", "checkpoint", "pretrained"):  # the study's (see _add_codec_args)
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    if args.quality is not None:
        params["quality"] = args.quality
    if args.bpp is not None:
        params["bpp"] = args.bpp
    if args.device != "cpu":
        params["device"] = args.device
    return create_codec(args.codec, **params)


def _cmd_encode(args: argparse.Namespace) -> int:
    from imgcomp.codecs.learned import LearnedCodec
    from imgcomp.images import load_image

    img = load_image(args.input)  # before any slow op: a missing input fails at once
    codec = _apply_ops(_codec_from_args(args), args)
    if args.save_model and not isinstance(codec, LearnedCodec):
        raise ImgcompError(f"--save-model saves learned codecs; {codec.name!r} is not one")
    data = codec.encode(img)
    Path(args.output).write_bytes(data)
    h, w = img.shape[:2]
    print(f"{args.input} -> {args.output}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp")
    if args.save_model:
        import imgcomp

        imgcomp.save_codec(codec, args.save_model)
        print(f"saved the codec to {args.save_model}: imgcomp decode --model {args.save_model} ...")
    elif getattr(codec, "ops", ()):
        print(
            f"note: {args.output} decodes only with this compressed codec (ops: "
            f"{'; '.join(codec.ops)}); keep the codec with --save-model PATH",
            file=sys.stderr,
        )
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from imgcomp.images import save_png

    try:
        data = Path(args.input).read_bytes()
    except OSError as exc:
        raise ImgcompError(f"cannot read {args.input}: {exc.strerror or exc}") from exc
    if args.model:
        import imgcomp

        img = imgcomp.load_codec(args.model).decode(data, max_pixels=args.max_pixels)
    else:
        img = _decode_plain(data, args.max_pixels)
    save_png(img, args.output)
    print(f"{args.input} -> {args.output}: {img.shape[1]}x{img.shape[0]}")
    return 0


def _decode_plain(data: bytes, max_pixels: int | None = None):
    """Decode with the codec the header names, or say how when a compressed codec wrote it."""
    from imgcomp.bitstream import read_header
    from imgcomp.codecs.learned import LearnedCodec
    from imgcomp.errors import CodecMismatchError
    from imgcomp.registry import codec_for_stream

    header = read_header(data)
    codec = codec_for_stream(data, max_pixels)
    if isinstance(codec, LearnedCodec) and header.fingerprint != codec.fingerprint:
        raise CodecMismatchError(
            f"this stream was not written by the plain {header.codec} model its header names "
            f"({', '.join(f'{k}={v}' for k, v in sorted(header.params.items())) or 'defaults'}). "
            "A stream of a pruned or quantized codec decodes only with that codec: pass "
            "--model PATH, the codec saved by `imgcomp encode ... --save-model PATH`"
        )
    return codec.decode(data, max_pixels=max_pixels)


def _cmd_eval(args: argparse.Namespace) -> int:
    from imgcomp.data import load_dataset
    from imgcomp.evaluate import evaluate, format_table, summarize
    from imgcomp.progress import enabled

    dataset = load_dataset(args.dataset, progress=enabled(args.quiet))
    if args.images is not None:
        dataset = dataset.subset(args.images)
    codec = _apply_ops(_codec_from_args(args), args)
    results = evaluate(
        codec, ((item.name, item.load()) for item in dataset), progress=not args.quiet
    )
    print(format_table(results, title=f"{codec!r} on {args.dataset}"))
    if args.json:
        payload = {
            "codec": getattr(codec, "name", args.codec),
            "params": getattr(codec, "params", {}),
            "ops": list(getattr(codec, "ops", ())),
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
    from imgcomp.progress import enabled as progress_enabled
    from imgcomp.study import (
        StudyProgress,
        format_study_table,
        get_grid,
        rows_to_json,
        run_study,
    )

    if args.repeats < 1:
        raise ImgcompError(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            raise ImgcompError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    from imgcomp.timing import steady_allocator

    steady_allocator()  # timings independent of what ran before (pruning, recovery training)
    threads = torch.get_num_threads()
    codec = _codec_from_args(args)
    dataset = load_dataset(args.dataset, progress=progress_enabled(args.quiet))
    if args.images is not None:
        dataset = dataset.subset(args.images)
    images = [(item.name, item.load()) for item in dataset]
    if args.rate_curve is not None:
        from imgcomp.rate_curve import format_rate_curve, rate_curve

        rows = rate_curve(codec, images, range(1, args.rate_curve + 1))
        print(
            f"{codec!r} on {args.dataset}: {len(images)} images, one "
            f"{args.rate_curve}-iteration encode per image, truncated"
        )
        print(format_rate_curve(rows, "markdown" if args.format == "markdown" else "text"))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
        return 0
    configs = get_grid(args.grid, family=getattr(codec, "family", None))
    skipped: list[tuple[str, str]] = []  # configurations whose ops the codec lacks (no row)

    with StudyProgress(len(configs), len(images), quiet=args.quiet) as bars:

        def skip(config, error: Exception) -> None:
            skipped.append((config.label, str(error)))
            bars.skip(config, error)

        rows = run_study(
            codec,
            configs,
            images,
            repeats=args.repeats,
            data=args.train_data,
            progress=bars.quality,
            timing_progress=bars.timing,
            skip=skip,
            memory=not args.no_memory,
        )
    if not rows:
        raise ImgcompError(
            "no configuration could be built: " + "; ".join(f"{k}: {e}" for k, e in skipped)
        )
    spread = " (lowest-highest round)" if args.repeats > 1 else ""
    title = (
        f"{codec!r} on {args.dataset}: {len(images)} images, grid {args.grid}, "
        f"{threads} threads, median of {args.repeats} interleaved rounds{spread}"
    )
    if args.format == "markdown":
        title = f"**{title}**\n"
    elif args.format == "tsv":
        title = f"# {title}"
    print(title)
    print(format_study_table(rows, style=args.format, columns=args.columns))
    for label, error in skipped:
        print(f"{'# ' if args.format == 'tsv' else ''}not measured: {label}: {error}")
    if args.json:
        payload = {
            "codec": getattr(codec, "name", args.codec),
            "params": getattr(codec, "params", {}),
            "dataset": args.dataset,
            "grid": args.grid,
            "repeats": args.repeats,
            "timing": "median of interleaved rounds (imgcomp.timing.time_side_by_side)",
            "threads": threads,
            "images": [name for name, _ in images],
            "rows": rows_to_json(rows),
        }
        if skipped:
            payload["skipped"] = [{"label": k, "error": e} for k, e in skipped]
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """An HTML report of saved benchmark runs, quality results and eval / study JSON files."""
    import warnings

    from imgcomp.progress import enabled
    from imgcomp.report import ReportWarning, build_report
    from imgcomp.report.load import kinds_count

    inputs = [Path(p) for p in args.inputs] or [Path(".benchmarks")]
    if not args.inputs and not inputs[0].is_dir():
        raise ImgcompError(
            "no .benchmarks folder here: run the suite first (pytest bench --benchmark-autosave "
            "saves timings there, and its quality results go there by default) or name the "
            "inputs: imgcomp report FILE_OR_FOLDER... --out DIR"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)  # said below, once each
        report = build_report(
            inputs,
            Path(args.out),
            benchmark_action=Path(args.benchmark_action) if args.benchmark_action else None,
            progress=enabled(args.quiet),
        )
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds_count(report.files).items())
    print(f"read {len(report.files)} files ({counts}) from {', '.join(map(str, inputs))}")
    for message in report.warnings:
        print(f"warning: {message}", file=sys.stderr)
    crops = sum(len(g.tiles) for g in report.galleries.values())
    print(f"{len(report.figures)} figures, {len(report.tables)} tables, {crops} crops")
    print(f"wrote {report.index}")
    if report.history is not None:
        print(f"wrote {report.history[0]} and {report.history[1]} (github-action-benchmark)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from imgcomp.registry import list_codecs

    for name in list_codecs(aliases=args.aliases):
        print(name)
    return 0


def _key_values(items: list[str] | None, what: str) -> dict[str, object]:
    """``KEY=VALUE`` options as a dict, each value read as JSON when it parses (numbers, lists)."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ImgcompError(f"{what} options are KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _train_args(args: argparse.Namespace) -> tuple[dict[str, object], dict[str, object]]:
    """The model and objective arguments of ``imgcomp train``: ``--model`` / ``--objective-arg``
    pairs, plus the Ballé shorthands ``--arch --N --M --lmbda``."""
    model = _key_values(args.model, "--model")
    objective_args = _key_values(args.objective_arg, "--objective-arg")
    shorthands = {"arch": args.arch, "N": args.N, "M": args.M}
    given = {k: v for k, v in shorthands.items() if v is not None}
    if given and args.family != "balle":
        raise ImgcompError(f"--arch / --N / --M are Ballé options, not for --family {args.family}")
    model.update(given)
    if args.lmbda is not None:
        objective_args["lmbda"] = args.lmbda
    return model, objective_args


def _cmd_train(args: argparse.Namespace) -> int:
    from imgcomp.train import TrainConfig, read_checkpoint, train
    from imgcomp.trainsets import DEFAULT_SPEC, default_training_spec

    try:
        model, objective_args = _train_args(args)
        config = TrainConfig(
            family=args.family,
            model=model,
            objective=args.objective,
            objective_args=objective_args,
            lr_milestones=args.lr_milestones,
            lr_gamma=args.lr_gamma,
            lr_schedule=args.lr_schedule,
            warmup_steps=args.warmup_steps,
            clip_max_norm=args.clip_max_norm,
            steps=args.steps,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            lr=args.lr,
            aux_lr=args.aux_lr,
            seed=args.seed,
            warm_start=args.warm_start,
            data=args.data or default_training_spec(),
            out=args.out,
            device=args.device,
            amp=args.amp,
            channels_last=not args.no_channels_last,
            compile=args.compile,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
            num_threads=args.num_threads,
            max_seconds=args.max_seconds,
            stop_at=args.stop_at,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise ImgcompError(f"invalid training option: {exc}") from None
    if config.data == DEFAULT_SPEC:
        print(
            f"imgcomp train: training on the {DEFAULT_SPEC} set (5 photos, offline): enough for a "
            "smoke test, not for a codec; pass --data clic2020-train (downloaded once) or a folder",
            file=sys.stderr,
        )
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
    from imgcomp import __version__

    parser = argparse.ArgumentParser(prog="imgcomp", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"imgcomp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="compress an image file into an imgcomp stream")
    p.add_argument("input")
    p.add_argument("output")
    _add_codec_args(p, model=True)
    _add_op_args(p)
    p.add_argument(
        "--save-model", metavar="PATH", help="also save the codec (with its ops) to PATH"
    )
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("decode", help="decode a stream to PNG (codec read from the header)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument(
        "--model",
        metavar="PATH",
        help="the saved codec that wrote the stream (needed for pruned / quantized codecs)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse streams declaring more pixels (default: $IMGCOMP_MAX_PIXELS or 40,000,000)",
    )
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("eval", help="rate, quality and time of a codec on a dataset")
    _add_codec_args(p, model=True)
    _add_op_args(p)
    p.add_argument("--dataset", default="kodak", help="kodak, sample or folder:PATH")
    p.add_argument("--images", type=int, help="first N images only")
    p.add_argument("--json", help="also write per-image and mean results to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("study", help="the pruning study's table: time, SSIM, size per config")
    _add_codec_args(p, weights=True)
    p.add_argument("--dataset", default="kodak", help="kodak, sample or folder:PATH")
    p.add_argument("--images", type=int, help="first N images only")
    p.add_argument(
        "--grid",
        default="study",
        choices=("study", "extended"),
        help="study: L1 ratios {0,0.3} over the family's table components (Ballé: 8 rows, "
        "toderici2017: 4, hific: 8); extended: plus structured, bf16, int8",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed rounds, each over every row and image in turn; medians kept (default 3)",
    )
    p.add_argument("--format", default="text", choices=("text", "markdown", "tsv"))
    p.add_argument(
        "--columns",
        default="all",
        choices=("all", "study"),
        help="study: the original study's columns only (ratios, time, SSIM, size)",
    )
    p.add_argument("--json", help="also write the rows (with model sizes) to this file")
    p.add_argument(
        "--rate-curve",
        type=int,
        metavar="K",
        help="progressive codecs: the rate curve for 1..K iterations (one K-iteration encode "
        "per image, truncated) instead of the grid",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="skip each row's peak memory (measured on the first image, in a worker)",
    )
    _add_train_data_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser(
        "report", help="HTML report: RD curves, ops frontier, latency history, study tables"
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="JSON files or folders searched for *.json: pytest-benchmark saves, pytest bench "
        "--quality-json files, imgcomp eval / study --json files (default: .benchmarks)",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="writes DIR/index.html, DIR/figures, DIR/crops"
    )
    p.add_argument(
        "--benchmark-action",
        metavar="DIR",
        help="also write DIR/quality-bigger.json (SSIM, PSNR, MS-SSIM per case) and "
        "DIR/quality-smaller.json (bpp) of the newest quality results, in github-action-"
        "benchmark's customBiggerIsBetter / customSmallerIsBetter formats",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("list", help="list registered codecs")
    p.add_argument("--aliases", action="store_true", help="include alias names")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("train", help="train a learned codec (resumes RUN's checkpoint)")
    p.add_argument("--family", default="balle", help="model family (balle, rnn, ...)")
    p.add_argument(
        "--model",
        action="append",
        metavar="KEY=VALUE",
        help="a model argument of the family (rnn: width=0.25; balle: arch, N, M; hific: width, "
        "channels, blocks, hyper_channels, discriminator_width)",
    )
    p.add_argument("--objective", default=None, help="training objective (default: the family's)")
    p.add_argument(
        "--objective-arg",
        action="append",
        metavar="KEY=VALUE",
        help="an objective argument (rd: lmbda; residual-l1: iterations, ssim_weight; "
        "hific-gan: target_rate, k_P, beta, gan_start, ...)",
    )
    p.add_argument("--arch", default=None, help="balle: architecture or alias (mbt2018-mean)")
    p.add_argument("--N", type=int, default=None, help="balle: transform channels (128)")
    p.add_argument("--M", type=int, default=None, help="balle: latent channels (192)")
    p.add_argument("--lmbda", type=float, default=None, help="rd: loss = lmbda*255^2*MSE + bpp")
    p.add_argument("--steps", type=int, default=None, help="default: the family's recipe")
    p.add_argument(
        "--data",
        default=None,
        help="training images: a folder, clic2020-train / div2k-train (downloaded once, "
        "sha256-checked) or bundled (offline, 5 photos); default $IMGCOMP_TRAIN_DIR, else "
        "bundled; never Kodak",
    )
    p.add_argument("--out", required=True, help="run directory, e.g. runs/NAME")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=None, help="default: the family's recipe")
    p.add_argument("--patch-size", type=int, default=None, help="default: the family's recipe")
    p.add_argument("--lr", type=float, default=None, help="default: the family's recipe")
    p.add_argument(
        "--lr-milestones",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=None,
        metavar="F,F,...",
        help="fractions of the run where the lr is multiplied by --lr-gamma",
    )
    p.add_argument("--lr-gamma", type=float, default=None)
    p.add_argument(
        "--lr-schedule",
        choices=("step", "cosine"),
        default=None,
        help="step: --lr-milestones, then x0.1 for the last 10%% (default); cosine: from --lr "
        "down to --lr x0.1 at the last step, fitted to --steps",
    )
    p.add_argument("--warmup-steps", type=int, default=None, help="linear lr warm-up (default 0)")
    p.add_argument(
        "--clip-max-norm",
        type=float,
        default=None,
        help="gradient clipping norm (0: off; default: the family's recipe)",
    )
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--warm-start",
        default=None,
        metavar="WEIGHTS",
        help="start a new run from these weights (an export or a checkpoint; fresh optimisers)",
    )
    p.add_argument(
        "--amp", action="store_true", help="bf16 autocast for the transforms (CUDA, AMX CPUs)"
    )
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW layout on CUDA")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the family's transforms (Ballé, HiFiC; 1.2-1.4x faster on 2 CPU cores)",
    )
    p.add_argument("--checkpoint-every", type=int, default=1000, metavar="STEPS")
    p.add_argument("--log-every", type=int, default=100, metavar="STEPS")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-seconds", type=float, default=None, help="stop (with a checkpoint) after")
    p.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="stop (with a checkpoint) at this step; rerunning the command resumes there",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="write a training checkpoint's weights as safetensors")
    p.add_argument(
        "checkpoint", help="run directory, checkpoint.pt or an exported .safetensors / .imgw"
    )
    p.add_argument("output", help="OUT.safetensors, or OUT.imgw for packed (imgcomp.packed)")
    p.add_argument("--half", action="store_true", help="store the transforms in float16")
    p.add_argument(
        "--fit-quantiles",
        type=int,
        default=20000,
        metavar="STEPS",
        help="refine the density quantiles (aux loss only) for STEPS Adam steps first; 0: off",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "fuzz", help="mutate valid streams of every codec and decode each in a limited worker"
    )
    p.add_argument("--mutants", type=int, default=200, help="mutants per target (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="CI's short target list")
    p.add_argument("--out", default=None, metavar="DIR", help="keep reproducers and report.json")
    p.add_argument("--time-limit", type=float, default=5.0, metavar="S", help="per mutant")
    p.add_argument("--memory-mib", type=int, default=3072, help="memory a decode may add")
    p.add_argument("--jobs", type=int, default=1, help="workers at once")
    p.add_argument(
        "--recycle",
        type=int,
        default=250,
        metavar="N",
        help="mutants one worker decodes before a fresh fork (failures are re-run in a fresh "
        "worker); 1: a fresh worker per mutant",
    )
    p.set_defaults(func=_cmd_fuzz)
    return parser


def _cmd_fuzz(args: argparse.Namespace) -> int:
    """A fuzz campaign (:mod:`imgcomp.fuzz`); exit 1 when any mutant ended in a foreign error,
    over a limit or in a crash."""
    import torch

    from imgcomp.fuzz import default_targets, fuzz_image, run_campaign

    torch.set_num_threads(1)  # the workers fork from this process: one thread is fork-safe
    report = run_campaign(
        default_targets(fuzz_image(), quick=args.quick),
        args.mutants,
        seed=args.seed,
        out_dir=args.out,
        time_limit_s=args.time_limit,
        memory_limit_bytes=args.memory_mib << 20,
        progress=True,
        jobs=args.jobs,
        recycle=args.recycle,
    )
    print(report.table())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imgcomp`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImgcompError as exc:
        print(f"imgcomp: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output folder that does not exist, a full disk, a FIFO ...
        print(f"imgcomp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
