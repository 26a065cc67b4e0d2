"""Command-line options shared by the benchmark suite (bench/) and the unit tests (tests/).

GPU pinning happens here, in ``pytest_configure``, before any test module initialises CUDA:
with ``--device cuda`` each pytest-xdist worker gets its own GPU by worker index.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("imgcomp", "imgcomp benchmark suite")
    group.addoption(
        "--dataset",
        default=os.environ.get("IMGCOMP_DATASET", "kodak"),
        help="images to run on: kodak (default; fetched and sha256-checked on first use), "
        "sample (offline, bundled with scikit-image) or folder:PATH",
    )
    group.addoption(
        "--images", type=int, default=None, metavar="N", help="use only the first N images"
    )
    group.addoption(
        "--update-baselines",
        action="store_true",
        help="write missing baselines and refresh changed ones (prints every change)",
    )
    group.addoption(
        "--accept-lower-baselines",
        action="store_true",
        help="with --update-baselines: also write values worse than the stored baseline",
    )
    group.addoption(
        "--baselines",
        default=None,
        metavar="DIR",
        help="baseline directory (default: fixtures/baselines in the repository)",
    )
    group.addoption(
        "--matrix",
        default="default",
        choices=("default", "study", "full"),
        help="cases: default (a first run: classic codecs, the study's model and its key ops, "
        "about 4 minutes on 2 cores), study (every shipped codec, the study's whole pruning "
        "grid, every quantization, the precision study) or full (every learned codec x every "
        "op; about 80 minutes)",
    )
    group.addoption(
        "--case",
        action="append",
        default=[],
        metavar="ID",
        help="run only this case id, as the tables print it (shell-style wildcards allowed: "
        "'mbt2018-mean-q3/prune=*'); repeatable",
    )
    group.addoption(
        "--train-data",
        default="bundled",
        metavar="SPEC",
        help="training images for int8 calibration and structured-pruning recovery: bundled "
        "(default, offline; the committed baselines use it), clic2020-valid (downloaded once), "
        "folder:PATH or PATH; never Kodak",
    )
    group.addoption(
        "--verify-images",
        default="4",
        metavar="N|all",
        help="the quality pass checks the round trip (identical bytes on re-encoding, identical "
        "pixels on decoding twice, decoded = the model's own reconstruction) on the first N "
        "images (default 4) or on all of them",
    )
    group.addoption(
        "--timing-images",
        default="4",
        metavar="N|all",
        help="latency and speed-up tests time the first N selected images (default 4: Kodak's "
        "images are all 768x512, so more add time, not information) or all of them",
    )
    group.addoption(
        "--device",
        default="cpu",
        help="cpu, cuda or cuda:N; with cuda and pytest-xdist each worker is pinned to one GPU",
    )
    group.addoption(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime"),
        help="where learned codecs' transforms run: torch (default) or onnxruntime (its CPU "
        "EP, float32; int8 cases quantized by onnxruntime, bf16 cases skipped; needs "
        "pip install 'imgcomp[onnx]'); the quality gates compare with the torch baselines",
    )
    group.addoption(
        "--shard",
        default=None,
        metavar="K/N",
        help="run only part K of N (1 <= K <= N) of the selected tests: a deterministic, "
        "balanced split in which every test runs in exactly one part and tests sharing a case "
        "or a module's side-by-side timing stay together; `imgcomp report` merges the parts",
    )
    group.addoption(
        "--quality-json",
        default=None,
        metavar="PATH",
        help="write the quality results (per case: codec, ops, means and per-image values, the "
        "baseline comparison; machine, commit, options) to PATH as JSON for `imgcomp report`; "
        "default .benchmarks/imgcomp-quality/<UTC time>_<commit>.json when the run measured "
        "quality; '' turns it off",
    )


def pytest_configure(config: pytest.Config) -> None:
    device = config.getoption("--device", default="cpu")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and device == "cuda":
        _pin_worker_gpu(int(worker.removeprefix("gw")))
    if worker:
        _share_cpu_threads(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def _share_cpu_threads(workers: int) -> None:
    """Give each xdist worker its share of the cores: oversubscribed OpenMP pools crawl."""
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def _pin_worker_gpu(index: int) -> None:
    """Restrict this worker to one GPU (of CUDA_VISIBLE_DEVICES, or all) before CUDA starts."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [d for d in visible.split(",") if d.strip()]
    else:
        count = int(os.environ.get("IMGCOMP_NUM_GPUS", "0")) or _count_gpus()
        ids = [str(i) for i in range(max(count, 1))]
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[index % len(ids)]


def _count_gpus() -> int:
    """Number of NVIDIA GPUs, asked of nvidia-smi so that CUDA is not initialised here."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return 1
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 1
    return max(1, sum(line.startswith("GPU ") for line in out.splitlines()))
