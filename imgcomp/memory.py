"""Peak memory of one call (an encode, a decode), measured by the kernel in a forked worker.

torch's CPU buffers come from malloc and mmap, which Python's ``tracemalloc`` does not see; the
kernel's count of resident pages does. :func:`measure_peak` forks a worker from this process
(the codec already built, its weights resident and shared with the parent), which gives its free
heap back to the system (``malloc_trim``: memory this process freed before is then counted when
the call touches it again) and maps every buffer of 1 MiB or more afresh, freed at once (glibc's
``M_MMAP_THRESHOLD``: where a large buffer lands in a fragmented heap then no longer depends on
what the process ran before, which moved a Kodak decode's peak by +-10 MiB), resets its RSS
high-water mark (``/proc/self/clear_refs``, Linux >= 4.0), runs the call once on one torch thread
(a forked child cannot use the parent's OpenMP pool) and reads the mark (``VmHWM``). The peak is
then what the call's live buffers needed at most, plus its small allocations' pages. Elsewhere
(no ``/proc``, a kernel that refuses the reset) the measurement is unsupported: None.

The process helpers the fuzzer's workers share live here too (one copy): :func:`fork_worker`,
:func:`reset_peak_rss`, :func:`peak_rss`, :func:`rss`, :func:`address_space`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pickle
import selectors
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from imgcomp.errors import ImgcompError

__all__ = [
    "MIB",
    "CodecPeaks",
    "MemoryMeasureError",
    "PeakMemory",
    "address_space",
    "codec_peaks",
    "fork_worker",
    "format_mib",
    "measure_peak",
    "peak_fields",
    "peak_rss",
    "reset_peak_rss",
    "rss",
    "supported",
]

MIB = 2**20
#: Exit status of a worker whose ``run`` returned or raised instead of ending the process.
_FALLTHROUGH = 70
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_FROM = 1 << 20


class MemoryMeasureError(ImgcompError):
    """A memory measurement's worker failed: the call raised, the worker died or ran too long."""


@dataclass(frozen=True)
class PeakMemory:
    """RSS of the worker that ran one call: ``baseline_bytes`` just before the call (the
    process's own memory: weights, interpreter, what the parent held), ``peak_bytes`` the
    absolute high-water mark during it; ``increment_bytes``, their difference, is what the call
    itself needed (what the benchmark reports). ``result``: the call's return value when asked
    for (``keep_result``)."""

    baseline_bytes: int
    peak_bytes: int
    result: Any = field(default=None, compare=False, repr=False)

    @property
    def increment_bytes(self) -> int:
        """Peak above the baseline: the memory the call needed on top of the process's."""
        return max(0, self.peak_bytes - self.baseline_bytes)

    @property
    def increment_mib(self) -> float:
        """:attr:`increment_bytes` in MiB."""
        return self.increment_bytes / MIB

    @property
    def peak_mib(self) -> float:
        """:attr:`peak_bytes` (the absolute high-water mark) in MiB."""
        return self.peak_bytes / MIB


@dataclass(frozen=True)
class CodecPeaks:
    """Peak memory of a codec's encode of one image and of the decode of that stream."""

    encode: PeakMemory
    decode: PeakMemory

    def as_dict(self) -> dict[str, float]:
        """The increments in MiB, as the benchmark records them (``extra_info``, summaries)."""
        return {
            "peak_encode_mib": round(self.encode.increment_mib, 1),
            "peak_decode_mib": round(self.decode.increment_mib, 1),
        }


def format_mib(value: float | None) -> str:
    """A peak memory table cell: whole MiB, ``n/a`` where not measured (or not measurable)."""
    return "n/a" if value is None else f"{value:.0f}"


# -- process helpers (also the fuzzer's) -------------------------------------------------------


def fork_worker(
    run: Callable[[], None], child_closes: Iterable[int], parent_closes: Iterable[int]
) -> int:
    """Fork a worker in its own process group that closes ``child_closes`` and calls ``run``
    (which must end the process; exit status 70 if it returns or raises); the parent closes
    ``parent_closes`` (the worker's ends of the pipes) and gets the pid."""
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller's code
        try:
            for fd in child_closes:
                os.close(fd)
            run()
        finally:
            os._exit(_FALLTHROUGH)
    for fd in parent_closes:
        os.close(fd)
    with contextlib.suppress(OSError):  # the worker does it too: whichever runs first wins
        os.setpgid(pid, pid)
    return pid


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark to its RSS now (Linux >= 4.0); False where the
    kernel has no such reset (or refuses it)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """This process's RSS high-water mark (VmHWM) in bytes; 0 without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def address_space() -> int:
    """This process's virtual size in bytes (0 where /proc is missing)."""
    return _statm(0)


def rss() -> int:
    """This process's resident size in bytes (0 where /proc is missing)."""
    return _statm(1)


def _statm(index: int) -> int:
    """Field ``index`` of /proc/self/statm (0: size, 1: resident) in bytes; 0 without /proc."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[index]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@cache
def supported() -> bool:
    """Whether :func:`measure_peak` can measure here: Linux with fork, a readable VmHWM and a
    kernel that lets a process reset it."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and peak_rss() > 0
        and reset_peak_rss()
    )


# -- the measurement ---------------------------------------------------------------------------


def measure_peak(
    call: Callable[[], Any], *, keep_result: bool = False, timeout_s: float = 600.0
) -> PeakMemory | None:
    """Run ``call`` once in a forked worker and return its peak memory (see the module doc);
    None where unsupported (:func:`supported`). ``keep_result``: send the call's return value
    back (pickled) in :attr:`PeakMemory.result`. MemoryMeasureError when the call raises, the
    worker dies or it runs past ``timeout_s`` (then it is killed)."""
    if not supported():
        return None
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork in a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = fork_worker(
            lambda: _worker(call, write_fd, keep_result),
            child_closes=(read_fd,),
            parent_closes=(write_fd,),
        )
    try:
        raw, finished = _read_until(read_fd, time.monotonic() + timeout_s)
    finally:
        os.close(read_fd)
        if not finished:
            _kill(pid)
        _, status = os.waitpid(pid, 0)
    if not finished:
        raise MemoryMeasureError(f"the measured call ran past {timeout_s:g} s; worker killed")
    try:
        message = pickle.loads(raw) if raw else None
    except Exception as exc:  # a torn or unpicklable answer
        raise MemoryMeasureError(f"the memory worker's answer is unreadable: {exc}") from None
    if message is None:
        raise MemoryMeasureError(f"the memory worker ended without an answer ({_how(status)})")
    if "error" in message:
        raise MemoryMeasureError(f"the measured call raised {message['error']}")
    return PeakMemory(message["baseline"], message["peak"], message.get("result"))


def codec_peaks(
    codec: Any, img: Any, *, warmup: bool = True, timeout_s: float = 600.0
) -> CodecPeaks | None:
    """Peak memory of ``codec.encode(img)`` and of ``codec.decode`` of that stream, each in its
    own worker; None where unsupported. ``warmup``: encode and decode once here first, so that
    one-time set-up (plans, kernels, tables) is not counted (off where the caller ran the codec
    already). MemoryMeasureError as :func:`measure_peak`."""
    if not supported():
        return None
    if warmup:
        codec.decode(codec.encode(img))
    encode = measure_peak(lambda: codec.encode(img), keep_result=True, timeout_s=timeout_s)
    if encode is None:
        return None
    stream = encode.result
    decode = measure_peak(lambda: codec.decode(stream), timeout_s=timeout_s)
    if decode is None:
        return None
    return CodecPeaks(PeakMemory(encode.baseline_bytes, encode.peak_bytes), decode)


def peak_fields(
    label: str, codec: Any, img: Any, *, timeout_s: float = 600.0
) -> dict[str, float | None]:
    """``peak_encode_mib`` / ``peak_decode_mib`` of a codec that has run already (no warm-up),
    as tables and benchmarks record them: None where unsupported, and where the worker failed,
    with a warning naming ``label`` instead of an error."""
    try:
        peaks = codec_peaks(codec, img, warmup=False, timeout_s=timeout_s)
    except MemoryMeasureError as exc:
        warnings.warn(f"{label}: peak memory not measured: {exc}", stacklevel=2)
        peaks = None
    if peaks is None:
        return {"peak_encode_mib": None, "peak_decode_mib": None}
    return peaks.as_dict()


def _worker(call: Callable[[], Any], write_fd: int, keep_result: bool) -> None:
    """The worker: one torch thread, free heap returned, the mark reset, the call, the answer."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    _trim_heap()
    reset_peak_rss()
    baseline = peak_rss()  # right after the reset: the RSS now
    try:
        result = call()
        peak = peak_rss()
        message: dict[str, Any] = {"baseline": baseline, "peak": peak}
        if keep_result:
            message["result"] = result
        payload = pickle.dumps(message)
    except BaseException as exc:  # everything: the parent gets a typed error, never a hang
        payload = pickle.dumps({"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    view = memoryview(payload)
    while view:
        view = view[os.write(write_fd, view) :]
    os._exit(0)


def _trim_heap() -> None:
    """Give glibc's free heap pages back to the system and map every buffer from
    :data:`_MMAP_FROM` up afresh (a no-op without glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything written to ``fd`` until the writer closes it (True) or ``deadline`` (False)."""
    chunks = []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    return b"".join(chunks), False


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
