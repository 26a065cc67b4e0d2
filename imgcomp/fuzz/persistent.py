"""Persistent workers: one forked worker decodes mutant after mutant, so a campaign pays the fork
once per ``recycle`` mutants instead of once per mutant.

A worker reads length-prefixed mutants from a pipe and answers each with a length-prefixed JSON
result carrying the decode's own peak RSS (``/proc/self/clear_refs`` resets the high-water mark
before each decode). It runs under the limits of a per-mutant worker (:mod:`imgcomp.fuzz.worker`):
a mutant over time is killed with its worker, and a worker that dies takes only its mutant
with it; either way the next mutant gets a fresh worker. A worker exits after ``recycle``
mutants, or once its address space has grown by ``memory_limit_bytes / 4`` (what a
leaking decoder would otherwise take from the next mutants' limit). Every mutant that ends in a
failure is decoded again in a fresh per-mutant worker, and that decode's outcome is the result:
a failure only the long-lived worker showed says so in its description.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from imgcomp.fuzz.report import FAILURES, MutantResult
from imgcomp.fuzz.worker import (
    _STDERR_KEEP,
    _decode_all,
    _decode_message,
    _ended,
    _HeadTail,
    _Item,
    _kill,
    _message,
    _setup_child,
    _write_all,
)
from imgcomp.memory import address_space, fork_worker, peak_rss, reset_peak_rss

__all__ = ["DEFAULT_RECYCLE", "decode_persistent"]

#: Mutants a persistent worker decodes before it exits and a fresh one is forked.
DEFAULT_RECYCLE = 250
_LENGTH = struct.Struct("<I")


@dataclass
class _Server:
    pid: int
    cmd_w: int
    res_r: int
    err_r: int
    stdin_w: int
    served: int = 0
    item: _Item | None = None
    start: float = 0.0
    deadline: float = float("inf")
    buffer: bytearray = field(default_factory=bytearray)
    stderr: _HeadTail = field(default_factory=lambda: _HeadTail(_STDERR_KEEP))


def decode_persistent(
    label: str,
    decode: Callable[[bytes], Any],
    items: Iterable[_Item],
    time_limit_s: float,
    memory_limit_bytes: int,
    jobs: int,
    recycle: int = DEFAULT_RECYCLE,
) -> Iterator[tuple[MutantResult, bytes]]:
    """Decode every item in ``jobs`` persistent workers; yields (result, mutant bytes) in
    completion order, each failure confirmed in a fresh per-mutant worker."""
    if recycle < 1:
        raise ValueError(f"recycle must be >= 1, got {recycle}")
    pending = iter(items)
    servers: list[_Server] = []
    sel = selectors.DefaultSelector()
    exhausted = False
    try:
        while True:
            if not exhausted:
                while len(servers) < jobs:
                    servers.append(_spawn(decode, memory_limit_bytes, servers, sel))
                for server in servers:
                    if server.item is None and not exhausted:
                        item = next(pending, None)
                        if item is None:
                            exhausted = True
                        else:
                            _send(server, item, time_limit_s)
            busy = [s for s in servers if s.item is not None]
            if not busy:
                return
            timeout = max(0.0, min(s.deadline for s in busy) - time.perf_counter())
            done: list[tuple[_Server, MutantResult | None, bool]] = []
            for key, _ in sel.select(timeout):
                server = key.data
                chunk = os.read(key.fd, 1 << 16)
                if key.fd == server.err_r:
                    if chunk:
                        server.stderr.add(chunk)
                    continue
                if not chunk:  # the worker is gone
                    done.append((server, None, False))
                    continue
                server.buffer += chunk
                message = _frame(server.buffer)
                if message is not None:
                    result = _result(label, server, message)
                    done.append((server, result, bool(message.get("recycle"))))
            now = time.perf_counter()
            finished = {id(s) for s, _, _ in done}
            done += [(s, None, False) for s in busy if s.deadline <= now and id(s) not in finished]
            for server, result, grown in done:
                item = server.item
                assert item is not None
                if result is None:  # died or over time: reap it, a fresh one takes the next
                    result = _close(label, server, time_limit_s, sel, servers)
                else:
                    server.item, server.deadline = None, float("inf")
                    server.stderr = _HeadTail(_STDERR_KEEP)
                    if grown or server.served >= recycle:
                        _close(label, server, time_limit_s, sel, servers)
                if result.outcome in FAILURES:
                    result = _confirm(label, decode, item, result, time_limit_s, memory_limit_bytes)
                yield result, item[1]
    finally:
        for server in list(servers):
            _close(label, server, time_limit_s, sel, servers)
        sel.close()


def _spawn(
    decode: Callable[[bytes], Any], memory_limit_bytes: int, others: list[_Server], sel: Any
) -> _Server:
    """Fork a worker (which closes the other workers' pipes it inherited) and watch its pipes."""
    inherited = [fd for s in others for fd in (s.cmd_w, s.res_r, s.err_r, s.stdin_w)]
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    pid = fork_worker(
        lambda: _serve(decode, cmd_r, res_w, err_w, in_r, memory_limit_bytes),
        child_closes=(cmd_w, res_r, err_r, in_w, *inherited),
        parent_closes=(cmd_r, res_w, err_w, in_r),
    )
    server = _Server(pid, cmd_w, res_r, err_r, in_w)
    sel.register(res_r, selectors.EVENT_READ, server)
    sel.register(err_r, selectors.EVENT_READ, server)
    return server


def _send(server: _Server, item: _Item, time_limit_s: float) -> None:
    server.item, server.served = item, server.served + 1
    server.start = time.perf_counter()
    server.deadline = server.start + time_limit_s
    with contextlib.suppress(BrokenPipeError):  # died between mutants: a crash, on EOF
        _write_all(server.cmd_w, _LENGTH.pack(len(item[1])) + item[1])


def _frame(buffer: bytearray) -> dict | None:
    """The JSON message of a complete frame at the head of ``buffer`` (consumed), else None."""
    if len(buffer) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack_from(buffer)
    if len(buffer) < _LENGTH.size + size:
        return None
    raw = bytes(buffer[_LENGTH.size : _LENGTH.size + size])
    del buffer[: _LENGTH.size + size]
    return _message(raw) or {}


def _result(label: str, server: _Server, message: dict) -> MutantResult | None:
    """A worker's answer as a result (None for a torn answer: treated as a crash)."""
    if "outcome" not in message:
        return None
    index, _, description = server.item  # type: ignore[misc]
    result = MutantResult(
        label, index, message["outcome"], description, message["elapsed_s"], message["peak_rss"]
    )
    result.error, result.where = message["error"], message["where"]
    if result.outcome == "foreign":
        result.stderr = server.stderr.text()
    return result


def _close(
    label: str, server: _Server, time_limit_s: float, sel: Any, servers: list[_Server]
) -> MutantResult:
    """Kill and reap a worker; if it was on a mutant, that mutant's result (it died by itself,
    or ran over time)."""
    busy = server.item is not None
    over_time = busy and server.deadline <= time.perf_counter()
    _kill(server.pid)
    _, status, usage = os.wait4(server.pid, 0)
    for fd in (server.res_r, server.err_r):
        sel.unregister(fd)
    with contextlib.suppress(OSError):  # what a dying worker wrote on its way out
        while busy and (chunk := os.read(server.err_r, 1 << 16)):
            server.stderr.add(chunk)
    for fd in (server.cmd_w, server.res_r, server.err_r, server.stdin_w):
        os.close(fd)
    servers.remove(server)
    if not busy:
        return MutantResult(label, -2, "image", "", 0.0, 0)  # nobody reads it
    assert server.item is not None
    if not over_time and not os.WIFSIGNALED(status) and os.WEXITSTATUS(status) == 0:
        status = 70 << 8  # exited cleanly mid-mutant without an answer: still a crash
    result = _ended(label, server.item, status, usage, over_time, time_limit_s, server.start)
    if result.outcome == "crash":
        result.stderr = server.stderr.text()
    return result


def _confirm(
    label: str,
    decode: Callable[[bytes], Any],
    item: _Item,
    seen: MutantResult,
    time_limit_s: float,
    memory_limit_bytes: int,
) -> MutantResult:
    """Decode a failing mutant again in a fresh per-mutant worker; its outcome is the result."""
    fresh, _ = next(_decode_all(label, decode, [item], time_limit_s, memory_limit_bytes, 1))
    if (fresh.outcome, fresh.error) != (seen.outcome, seen.error):
        fresh.description += (
            f" [a persistent worker saw {seen.outcome}: {seen.error[:200]}; a fresh one "
            f"{fresh.outcome}]"
        )
    return fresh


# -- the worker side ---------------------------------------------------------------------------
def _serve(
    decode: Callable[[bytes], Any],
    cmd_r: int,
    res_w: int,
    err_w: int,
    in_r: int,
    memory_limit_bytes: int,
) -> None:
    """Decode mutants from ``cmd_r`` until it closes, answering each on ``res_w``."""
    _setup_child(err_w, in_r, memory_limit_bytes)
    start_size = address_space()
    while (data := _read_frame(cmd_r)) is not None:
        reset_peak_rss()
        message = _decode_message(decode, data)
        message["peak_rss"] = peak_rss()
        message["recycle"] = address_space() - start_size > memory_limit_bytes // 4
        payload = json.dumps(message).encode()
        _write_all(res_w, _LENGTH.pack(len(payload)) + payload)
        if message["recycle"]:
            break
    os._exit(0)


def _read_frame(fd: int) -> bytes | None:
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    return _read_exactly(fd, _LENGTH.unpack(head)[0])


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
