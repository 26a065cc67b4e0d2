"""``train(config)``: rate-distortion training of a Ballé-style model, resumable and reproducible.

Randomness is derived from ``(seed, step)`` at every step (crops from their own generator, the
quantisation noise from reseeding torch's generators), so no RNG state needs saving and a resumed
run is bit-identical, on the CPU, to one that never stopped. The caller's RNG state is restored.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from imgcomp.errors import CheckpointError, ImgcompError
from imgcomp.fsutil import atomic_write_text
from imgcomp.nn.balle import BalleModel, build_model
from imgcomp.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    read_checkpoint,
    write_checkpoint,
)
from imgcomp.train.config import TrainConfig, resume_mismatches
from imgcomp.train.data import PatchSampler, step_seed
from imgcomp.train.objective import psnr_from_mse, rd_forward, rd_loss
from imgcomp.trainsets import load_training_set

__all__ = ["LOG_NAME", "resolve_device", "train"]

LOG_NAME = "log.jsonl"


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, refusing (ImgcompError) a CUDA device this machine lacks."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ImgcompError(f"invalid device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ImgcompError(f"device {name!r} requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ImgcompError(f"unsupported training device {name!r} (use cpu or cuda)")
    return device


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

    trainset = load_training_set(config.data, progress=config.progress)
    files = list(trainset.files)
    fingerprint = trainset.fingerprint()
    state = read_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if state is not None:
        _check_resume(state, config, fingerprint, len(files))
        if state["step"] >= config.steps:
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
        model = build_model(config.arch, config.N, config.M)
        model.to(device)
        if cuda and config.channels_last:
            model.to(memory_format=torch.channels_last)
        main_params, aux_params = model.main_parameters(), model.aux_parameters()
        opt = torch.optim.Adam(main_params, lr=config.lr, fused=cuda or None)
        aux_opt = torch.optim.Adam(aux_params, lr=config.aux_lr, fused=cuda or None)
        if state is not None:
            try:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                aux_opt.load_state_dict(state["aux_optimizer"])
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
                "optimizer": opt.state_dict(),
                "aux_optimizer": aux_opt.state_dict(),
            }
            write_checkpoint(ckpt_path, payload)

        logger = _Logger(out / LOG_NAME, config)
        bar = tqdm(
            total=config.steps,
            initial=start_step,
            unit="step",
            disable=not config.progress,
            dynamic_ncols=True,
            desc=out.name,
        )
        step = start_step
        try:
            while step < config.steps:
                logger.add(_train_step(model, opt, aux_opt, main_params, sampler, config, step))
                step += 1
                bar.update(1)
                over_time = (
                    config.max_seconds is not None
                    and time.monotonic() - t_start > config.max_seconds
                )
                stop = over_time or signals.stopped
                done = step >= config.steps
                if step % config.log_every == 0 or stop or done:
                    record = logger.write(step, base_elapsed + time.monotonic() - t_start)
                    if record is not None:
                        bar.set_postfix(
                            loss=f"{record['loss']:.4f}",
                            bpp=f"{record['bpp']:.3f}",
                            psnr=f"{record['psnr']:.2f}",
                        )
                if step % config.checkpoint_every == 0 or stop or done:
                    save(step, finished=done)
                if stop and not done:
                    reason = "max_seconds" if over_time else "signal"
                    bar.write(f"{out.name}: stopped at step {step}/{config.steps} ({reason})")
                    break
        finally:
            bar.close()
    return ckpt_path


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
    model: BalleModel,
    opt: torch.optim.Optimizer,
    aux_opt: torch.optim.Optimizer,
    main_params: list[torch.nn.Parameter],
    sampler: PatchSampler,
    config: TrainConfig,
    step: int,
) -> torch.Tensor:
    """One optimiser step of the main and the aux (quantile) parameters at 0-based ``step``.

    Returns ``[loss, mse, bpp, aux]`` (detached, on the device: no synchronisation here).
    """
    lr = config.lr_at(step)
    for group in opt.param_groups:
        group["lr"] = lr
    x = sampler.batch(config.seed, step, config.batch_size)
    if x.is_cuda and config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(step_seed(config.seed, step, 1))  # the quantisation noise of this step
    opt.zero_grad(set_to_none=True)
    out = rd_forward(model, x, amp=config.amp)
    loss, mse, bpp = rd_loss(x, out["x_hat"], out["likelihoods"], config.lmbda)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(main_params, config.clip_max_norm)
    opt.step()
    aux_opt.zero_grad(set_to_none=True)
    aux = model.aux_loss()
    aux.backward()
    aux_opt.step()
    return torch.stack([loss.detach(), mse.detach(), bpp.detach(), aux.detach()])


class _Logger:
    """Averages the per-step statistics since the last line; appends one JSON line per call."""

    def __init__(self, path: Path, config: TrainConfig) -> None:
        self.path, self.config = path, config
        self.last_time = time.monotonic()
        self.stats: list[torch.Tensor] = []

    def add(self, stats: torch.Tensor) -> None:
        self.stats.append(stats)

    def write(self, step: int, elapsed: float) -> dict[str, Any] | None:
        if not self.stats:
            return None
        n = len(self.stats)
        loss, mse, bpp, aux = torch.stack(self.stats).double().mean(0).tolist()  # one sync
        self.stats.clear()
        if not all(map(math.isfinite, (loss, mse, bpp, aux))):
            raise ImgcompError(
                f"training diverged before step {step} (loss {loss}, aux {aux}); the last "
                "checkpoint is kept: lower lr or resume with another seed"
            )
        now = time.monotonic()
        record = {
            "step": step,
            "loss": loss,
            "mse": mse,
            "bpp": bpp,
            "psnr": psnr_from_mse(mse),
            "aux": aux,
            "lr": self.config.lr_at(step - 1),
            "elapsed": round(elapsed, 3),
            "images_per_s": round(n * self.config.batch_size / max(now - self.last_time, 1e-9), 3),
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
