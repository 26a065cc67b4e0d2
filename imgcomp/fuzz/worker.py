"""Decoding one mutant in a forked worker under a time and a memory limit, and classifying how
it ended; the parent side (spawn, watch, reap, kill) and the worker side (limits, decode)."""

# One worker is forked per mutant from the parent, which built every codec beforehand, so a fork
# costs about 10 ms and a killed or crashed decode takes nothing else down. Workers get stdin
# from a pipe nothing is written to (a decoder that reads ``/dev/stdin`` hangs, and shows as
# ``over_time``), stdout discarded, stderr kept for crash reports, one torch thread, no core
# dumps, and ``RLIMIT_AS`` = their size at the fork + ``memory_limit_bytes``. Forking is only
# safe from a process without running threads of its own: run campaigns with
# ``OMP_NUM_THREADS=1`` (or after ``torch.set_num_threads(1)``).

from __future__ import annotations

import contextlib
import errno
import faulthandler
import gc
import json
import os
import re
import resource
import selectors
import signal
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgcomp.bitstream import read_header
from imgcomp.errors import ImgcompError
from imgcomp.fuzz.report import MutantResult
from imgcomp.fuzz.target import Target
from imgcomp.memory import address_space, fork_worker
from imgcomp.registry import list_codecs

__all__ = ["classify_exception", "decode_in_worker"]

_MEMORY_MESSAGE = re.compile(
    r"can't allocate memory|not enough memory|out of memory|bad_alloc|cannot allocate", re.I
)
_STDERR_KEEP = 2000
_FUZZ_DIR = str(Path(__file__).parent)
_LIBRARY_DIRS = tuple(
    {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_MESSAGE_KEEP = 300


def decode_in_worker(
    target: Target,
    data: bytes,
    time_limit_s: float = 5.0,
    memory_limit_bytes: int = 3 << 30,
) -> MutantResult:
    """Decode one stream (e.g. a saved reproducer) as a campaign would, in a forked worker."""
    list_codecs()  # the built-in codecs loaded in the parent, as in a campaign
    items = [(0, bytes(data), "replay")]
    runs = _decode_all(target.label, target.decoder(), items, time_limit_s, memory_limit_bytes, 1)
    return next(runs)[0]


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """``(outcome, error)`` of a decode that raised ``exc``: typed, over_memory or foreign."""
    if isinstance(exc, ImgcompError):
        return "typed", type(exc).__name__
    text = f"{_type_name(exc)}: {str(exc)[:_MESSAGE_KEEP]}"
    memory = isinstance(exc, MemoryError) or (
        isinstance(exc, OSError) and exc.errno == errno.ENOMEM
    )
    if memory or (isinstance(exc, RuntimeError) and _MEMORY_MESSAGE.search(str(exc))):
        return "over_memory", text
    return "foreign", text


_Item = tuple[int, bytes, str]  # index, mutant bytes, description


# -- the parent side ---------------------------------------------------------------------------


@dataclass
class _Worker:
    pid: int
    item: _Item
    start: float
    deadline: float
    result_fd: int
    stderr_fd: int
    stdin_w: int
    open: set[int]
    result: bytearray = field(default_factory=bytearray)
    stderr: _HeadTail = field(default_factory=lambda: _HeadTail(_STDERR_KEEP))


class _HeadTail:
    """The first and the last ``keep`` bytes of a stream (a crash report's cause is at its
    head, the last warnings before it at its tail)."""

    def __init__(self, keep: int) -> None:
        self.keep, self.head, self.tail, self.dropped = keep, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = self.keep - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[room:] if room > 0 else chunk
        if len(self.tail) > self.keep:
            self.dropped += len(self.tail) - self.keep
            del self.tail[: -self.keep]

    def text(self) -> str:
        cut = f"\n[... {self.dropped} bytes ...]\n" if self.dropped else ""
        return (bytes(self.head) + cut.encode() + bytes(self.tail)).decode(errors="replace")


def _decode_all(
    label: str,
    decode: Callable[[bytes], Any],
    items: Iterable[_Item],
    time_limit_s: float,
    memory_limit_bytes: int,
    jobs: int,
) -> Iterator[tuple[MutantResult, bytes]]:
    """Decode every item in its own worker, ``jobs`` at a time; yields (result, mutant bytes)
    in completion order."""
    pending = iter(items)
    running: list[_Worker] = []
    sel = selectors.DefaultSelector()
    try:
        while True:
            while len(running) < jobs and (item := next(pending, None)) is not None:
                worker = _spawn(decode, item, time_limit_s, memory_limit_bytes)
                running.append(worker)
                for fd in worker.open:
                    sel.register(fd, selectors.EVENT_READ, worker)
            if not running:
                return
            timeout = max(0.0, min(w.deadline for w in running) - time.perf_counter())
            for key, _ in sel.select(timeout):
                worker = key.data
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    worker.open.discard(key.fd)
                elif key.fd == worker.result_fd:
                    worker.result += chunk
                else:
                    worker.stderr.add(chunk)
            now = time.perf_counter()
            for worker in list(running):
                if worker.open and now < worker.deadline:
                    continue
                running.remove(worker)
                for fd in worker.open:
                    sel.unregister(fd)
                yield _reap(label, worker, time_limit_s, kill=bool(worker.open)), worker.item[1]
    finally:
        for worker in running:
            for fd in worker.open:
                sel.unregister(fd)
            _reap(label, worker, time_limit_s, kill=True)
        sel.close()


def _spawn(
    decode: Callable[[bytes], Any], item: _Item, time_limit_s: float, memory_limit_bytes: int
) -> _Worker:
    res_r, res_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    pid = fork_worker(
        lambda: _work(decode, item[1], res_w, err_w, in_r, memory_limit_bytes),
        child_closes=(res_r, err_r, in_w),
        parent_closes=(res_w, err_w, in_r),
    )
    start = time.perf_counter()
    return _Worker(pid, item, start, start + time_limit_s, res_r, err_r, in_w, {res_r, err_r})


def _reap(label: str, worker: _Worker, time_limit_s: float, kill: bool) -> MutantResult:
    """Wait for (or kill) a worker, close its pipes and turn what it left into a result."""
    if kill:
        _kill(worker.pid)
    while True:
        pid, status, usage = os.wait4(worker.pid, 0 if kill else os.WNOHANG)
        if pid:
            break
        if time.perf_counter() >= worker.deadline:  # pipes closed, process still there
            _kill(worker.pid)
            kill = True
        else:
            time.sleep(0.001)
    for fd in [*worker.open, worker.stdin_w]:
        os.close(fd)
    worker.open.clear()
    result = _ended(label, worker.item, status, usage, kill, time_limit_s, worker.start)
    message = _message(worker.result)
    if message is not None:
        result.outcome, result.error = message["outcome"], message["error"]
        result.where, result.elapsed_s = message["where"], message["elapsed_s"]
    if result.outcome in ("crash", "foreign"):
        result.stderr = worker.stderr.text()
    return result


def _message(raw: bytes | bytearray) -> dict | None:
    """The worker's JSON result, or None when it wrote none (or a torn one)."""
    try:
        return json.loads(raw.decode()) if raw else None
    except ValueError:
        return None


def _ended(
    label: str,
    item: _Item,
    status: int,
    usage: Any,
    killed: bool,
    time_limit_s: float,
    start: float,
) -> MutantResult:
    """The result of a worker that ended without a result: over time when we killed it, over
    memory for a SIGKILL we did not send, else a crash named by its signal or exit status."""
    index, _, description = item
    wall = time.perf_counter() - start
    result = MutantResult(label, index, "crash", description, wall, usage.ru_maxrss * 1024)
    if killed:
        result.outcome, result.error = "over_time", f"killed after {time_limit_s:g} s"
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:  # not ours: the kernel's OOM killer
            result.outcome, result.error = "over_memory", "killed by SIGKILL (out of memory)"
        elif sig == signal.SIGXCPU:
            result.outcome, result.error = "over_time", "SIGXCPU"
        else:
            result.error = f"killed by {signal.Signals(sig).name}"
    else:
        result.error = f"exited with status {os.waitstatus_to_exitcode(status)}, no result"
    return result


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


# -- the worker side ---------------------------------------------------------------------------
def _work(
    decode: Callable[[bytes], Any],
    data: bytes,
    res_w: int,
    err_w: int,
    in_r: int,
    memory_limit_bytes: int,
) -> None:
    """Set the worker up, decode ``data``, write the outcome as JSON to ``res_w`` and exit."""
    _setup_child(err_w, in_r, memory_limit_bytes)
    _write_all(res_w, json.dumps(_decode_message(decode, data)).encode())
    os._exit(0)


def _setup_child(err_w: int, in_r: int, memory_limit_bytes: int) -> None:
    """A forked worker's limits and descriptors: its own process group, stdin a silent pipe,
    stdout discarded, stderr to ``err_w``, no core dumps, one thread, ``RLIMIT_AS`` = its size
    now + ``memory_limit_bytes``."""
    gc.disable()  # a collection would touch (and copy) every page of the parent's objects
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    os.dup2(in_r, 0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(err_w, 2)
    # the real descriptors, as in a command-line process (a test runner replaces the objects)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    faulthandler.enable(file=2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space() + memory_limit_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _decode_message(decode: Callable[[bytes], Any], data: bytes) -> dict[str, Any]:
    """Decode ``data`` and say how it ended (outcome, error, where, elapsed_s)."""
    start = time.perf_counter()
    try:
        outcome, error = _check_image(decode(data), data)
        where = ""
    except BaseException as exc:  # everything, SystemExit and KeyboardInterrupt included
        outcome, error = classify_exception(exc)
        where = _where(exc)
    elapsed = time.perf_counter() - start
    return {"outcome": outcome, "error": error, "where": where, "elapsed_s": elapsed}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _check_image(img: object, data: bytes) -> tuple[str, str]:
    """``image`` for uint8 HxWx3 of the header's size, else ``foreign`` saying what it is."""
    try:
        header = read_header(data)
    except ImgcompError as exc:
        return "foreign", f"WrongImage: decoded a stream the container refuses ({exc})"
    want = (header.height, header.width, 3)
    if isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.shape == want:
        return "image", ""
    got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
    return "foreign", f"WrongImage: decoded to {got}, header says uint8 {want}"


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of project code (not the fuzzer, not an installed
    library nor the standard library), then ``> file:line`` of the innermost frame if other."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _FUZZ_DIR not in f.filename]
    if not frames:
        return ""
    ours = [
        f
        for f in frames
        if "/imgcomp/" in f.filename.replace("\\", "/") or not f.filename.startswith(_LIBRARY_DIRS)
    ]
    spots = [_spot((ours or frames)[-1]), _spot(frames[-1])]
    return spots[0] if spots[0] == spots[1] else " > ".join(spots)


def _spot(frame: traceback.FrameSummary) -> str:
    name = frame.filename.replace("\\", "/")
    for root in ("/imgcomp/", "/site-packages/"):
        if root in name:
            name = root.strip("/") + "/" + name.rsplit(root, 1)[1]
            break
    else:
        name = Path(name).name
    return f"{name.removeprefix('site-packages/')}:{frame.lineno}"


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
