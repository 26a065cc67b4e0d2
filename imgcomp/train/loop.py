"""``train(config)``: training of a family's model under its objective, resumable and reproducible.

Randomness is derived from ``(seed, step)`` at every step (crops from their own generator, the
quantisation noise from reseeding torch's generators), so no RNG state needs saving and a resumed
run is bit-identical, on the CPU, to one that never stopped. The caller's RNG state is restored.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from imgcomp.devices import resolve_device
from imgcomp.errors import CheckpointError, ImgcompError
from imgcomp.fsutil import atomic_write_text
from imgcomp.packed import is_weights_file
from imgcomp.progress import bar as progress_bar
from imgcomp.progress import enabled as progress_enabled
from imgcomp.train import objectives
from imgcomp.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    read_checkpoint,
    write_checkpoint,
)
from imgcomp.train.config import TrainConfig, resume_mismatches, train_families
from imgcomp.train.data import PatchSampler, step_seed
from imgcomp.train.export import read_weight_tensors
from imgcomp.trainsets import load_training_set

__all__ = ["LOG_NAME", "resolve_device", "train", "warm_start"]

LOG_NAME = "log.jsonl"


def train(config: TrainConfig) -> Path:
    """Train (or resume) the run in ``config.out``; return the path of its final checkpoint.

    Writes ``<out>/checkpoint.pt`` every ``checkpoint_every`` steps and when stopping, and one JSON
    line per ``log_every`` steps to ``<out>/log.jsonl``. Stops early, with a checkpoint, once
    ``max_seconds`` have passed or on SIGINT / SIGTERM.
    """
    t_start = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    device = resolve_device(config.device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)

    trainset = load_training_set(config.data, progress=progress_enabled(not config.progress))
    files = list(trainset.files)
    fingerprint = trainset.fingerprint()
    state = read_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if state is not None:
        _check_resume(state, config, fingerprint, len(files))
        if state["step"] >= config.steps or (
            config.stop_at is not None and state["step"] >= config.stop_at
        ):
            return ckpt_path
    start_step = state["step"] if state is not None else 0
    base_elapsed = float(state["elapsed"]) if state is not None else 0.0

    sampler = PatchSampler.from_files(files, config.patch_size, device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rng_devices = []
    if cuda:
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=rng_devices), _stop_on_signals() as signals:
        torch.manual_seed(config.seed)
        model = config.build_model()
        model.to(device)
        if cuda and config.channels_last:
            model.to(memory_format=torch.channels_last)
        if state is None and config.warm_start is not None:
            warm_start(model, config.warm_start)
        if config.compile:
            present = dict(model.named_modules())
            for name in train_families()[config.family].compile_modules:
                if name in present:  # e.g. no Discriminator in a HiFiC built without one
                    present[name].compile()  # in place: the state_dict keys stay
        objective = config.make_objective()
        opts = objectives.make_optimizers(model, config.lr, config.aux_lr, fused=cuda or None)
        if state is not None:
            try:
                model.load_state_dict(state["model"])
                opts.main.load_state_dict(state["optimizer"])
                if opts.aux is not None:
                    opts.aux.load_state_dict(state["aux_optimizer"])
                elif state["aux_optimizer"]:
                    raise ValueError("the checkpoint has an aux optimizer, the model no aux params")
                adversary = state.get("adversary_optimizer", {})
                if opts.adversary is not None and adversary:
                    opts.adversary.load_state_dict(adversary)
                elif adversary:
                    raise ValueError("the checkpoint has an adversary optimizer, the model none")
            except (RuntimeError, ValueError, KeyError) as exc:
                raise CheckpointError(f"{ckpt_path}: state does not fit the model: {exc}") from None
            _truncate_log(out / LOG_NAME, start_step)
        model.train()

        def save(step: int, finished: bool) -> None:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "step": step,
                "finished": finished,
                "elapsed": base_elapsed + time.monotonic() - t_start,
                "config": config.to_dict(),
                "data_fingerprint": fingerprint,
                "num_images": len(files),
                "torch_version": str(torch.__version__),
                "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                "optimizer": opts.main.state_dict(),
                "aux_optimizer": opts.aux.state_dict() if opts.aux is not None else {},
                "adversary_optimizer": (
                    opts.adversary.state_dict() if opts.adversary is not None else {}
                ),
            }
            write_checkpoint(ckpt_path, payload)

        logger = _Logger(out / LOG_NAME, config, objective)
        bar = progress_bar(
            total=config.steps,
            initial=start_step,
            unit="step",
            quiet=not config.progress,
            desc=out.name,
        )
        step = start_step
        try:
            while step < config.steps:
                logger.add(_train_step(model, opts, objective, sampler, config, step))
                step += 1
                bar.update(1)
                over_time = (
                    config.max_seconds is not None
                    and time.monotonic() - t_start > config.max_seconds
                )
                at_stop = config.stop_at is not None and step >= config.stop_at
                stop = over_time or signals.stopped or at_stop
                done = step >= config.steps
                if step % config.log_every == 0 or stop or done:
                    record = logger.write(step, base_elapsed + time.monotonic() - t_start)
                    if record is not None:
                        shown = ("loss", *objective.progress_keys)
                        bar.set_postfix({k: f"{record[k]:.4g}" for k in shown if k in record})
                if step % config.checkpoint_every == 0 or stop or done:
                    save(step, finished=done)
                if stop and not done:
                    reason = "max_seconds" if over_time else "stop_at" if at_stop else "signal"
                    bar.write(f"{out.name}: stopped at step {step}/{config.steps} ({reason})")
                    break
        finally:
            bar.close()
    return ckpt_path


def warm_start(model: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Load ``path``'s weights (an exported ``.safetensors`` / ``.imgw``, or a training
    checkpoint) into ``model``: every tensor must fit; only the model's adversary (a
    discriminator, which exports drop) may be missing, and keeps its fresh initialisation."""
    where = os.fspath(path)
    if is_weights_file(where):
        weights = read_weight_tensors(where)
    else:
        weights = read_checkpoint(where)["model"]
    adversary = {id(p) for p in objectives.adversary_parameters(model)}
    prefixes = tuple(
        name.rsplit(".", 1)[0] + "." for name, p in model.named_parameters() if id(p) in adversary
    )
    # load_state_dict runs the modules' own load hooks (a buffer sized by the file, such as the
    # RNN's code model); the rest must match key for key and shape for shape
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"warm-start weights {where!r} do not fit the model: {exc}") from exc
    missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"warm-start weights {where!r} do not fit the model: missing {missing[:4]}, "
            f"unexpected {result.unexpected_keys[:4]}"
        )


def _check_resume(state: dict[str, Any], config: TrainConfig, fingerprint: str, n: int) -> None:
    saved: TrainConfig = state["config"]
    problems = resume_mismatches(saved, config)
    if state["data_fingerprint"] != fingerprint:
        problems.append(
            f"data: the checkpoint was trained on {state['num_images']} other files "
            f"({saved.data}); {config.data} holds {n} with different names or sizes"
        )
    if config.steps < state["step"]:
        problems.append(f"steps: {config.steps} is below the checkpoint's step {state['step']}")
    if problems:
        raise CheckpointError(
            f"cannot resume {Path(config.out) / CHECKPOINT_NAME}: its run differs from the "
            f"requested one ({'; '.join(problems)}); use another --out for a new run"
        )


def _train_step(
    model: torch.nn.Module,
    opts: objectives.Optimizers,
    objective: objectives.Objective,
    sampler: PatchSampler,
    config: TrainConfig,
    step: int,
) -> dict[str, torch.Tensor]:
    """:func:`objectives.train_step` on the batch and noise of the 0-based ``step``, at its lr.

    Returns the step's statistics (detached, on the device: no synchronisation here).
    """
    lr = config.lr_at(step)
    for group in opts.main.param_groups:
        group["lr"] = lr
    x = sampler.batch(config.seed, step, config.batch_size)
    if x.is_cuda and config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(step_seed(config.seed, step, 1))  # the quantisation noise of this step
    staged = objectives.scheduled(objective, step, config.steps)
    return objectives.train_step(model, opts, x, staged, config.clip_max_norm, amp=config.amp)


class _Logger:
    """Averages the per-step statistics since the last line; appends one JSON line per call.

    A line holds the step, the loss, the objective's metrics and derived fields, ``aux`` (when
    the model has auxiliary parameters), the lr, the elapsed time and the throughput (steps and
    crops per second since the previous line).
    """

    def __init__(self, path: Path, config: TrainConfig, objective: objectives.Objective) -> None:
        self.path, self.config, self.objective = path, config, objective
        self.last_time = time.monotonic()
        self.stats: list[dict[str, torch.Tensor]] = []

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        self.stats.append(stats)

    def write(self, step: int, elapsed: float) -> dict[str, Any] | None:
        if not self.stats:
            return None
        n = len(self.stats)
        keys = list(dict.fromkeys(k for s in self.stats for k in s))  # a stage may add some
        zero = torch.zeros((), device=self.stats[0]["loss"].device)
        rows = torch.stack([torch.stack([s.get(k, zero) for k in keys]) for s in self.stats])
        counts = torch.tensor([[k in s for k in keys] for s in self.stats], dtype=torch.float64)
        sums = rows.double().sum(0).cpu()  # one sync; a NaN anywhere stays a NaN
        means = dict(zip(keys, (sums / counts.sum(0)).tolist(), strict=True))
        self.stats.clear()
        if not all(map(math.isfinite, means.values())):
            raise ImgcompError(
                f"training diverged before step {step} (loss {means['loss']}, aux "
                f"{means.get('aux')}); the last checkpoint is kept: lower lr or resume with "
                "another seed"
            )
        now = time.monotonic()
        steps_per_s = n / max(now - self.last_time, 1e-9)
        aux = {"aux": means.pop("aux")} if "aux" in means else {}
        record = {
            "step": step,
            **means,
            **self.objective.derived(means),
            **aux,
            "lr": self.config.lr_at(step - 1),
            "elapsed": round(elapsed, 3),
            "steps_per_s": round(steps_per_s, 4),
            "images_per_s": round(steps_per_s * self.config.batch_size, 3),
        }
        self.last_time = now
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return record


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except (ValueError, AttributeError):
            continue
    atomic_write_text(path, "".join(x + "\n" for x in keep))


class _SignalFlag:
    stopped = False


@contextmanager
def _stop_on_signals():
    """Within: SIGINT / SIGTERM set ``.stopped`` (main thread only) so the loop can checkpoint."""
    flag = _SignalFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.stopped:  # a second signal: give up at once
            raise KeyboardInterrupt
        flag.stopped = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
