"""What this CPU can speed up: capability probes and the rule for gating a speed-up target.

A decode-latency target holds only where the hardware delivers it. bf16 is fast where oneDNN has
native bf16 kernels: AMX tiles, or bf16 dot products (AVX512-BF16) that measure clearly faster
than float32 on this host; elsewhere bf16 is emulated and decodes at about float32's speed. int8
needs a quantized engine (x86 or fbgemm, what :func:`imgcomp.ops.quant.int8.select_engine`
accepts) and, where that can be detected, VNNI-class int8 dot products. Structured pruning needs
nothing: it removes work on any CPU.
"""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imgcomp.errors import ImgcompError
from imgcomp.timing import time_side_by_side

__all__ = [
    "CAPABILITY_NEEDED",
    "INT8_ENGINES",
    "NATIVE_BF16_MAX_RATIO",
    "CpuCapabilities",
    "GateDecision",
    "cpu_capabilities",
    "measure_bf16_ratio",
    "speedup_gate",
]

#: Quantized engines the int8 op runs on (in order of preference).
INT8_ENGINES = ("x86", "fbgemm")
#: bf16's decode target gates without AMX only where a bf16 transposed convolution takes at most
#: this fraction of float32's time: the convolutions are most of a decode but not all of it, so
#: the 0.5x target needs them near a quarter of float32's time (an AMX Xeon: conv 0.18x, decode
#: 0.45x; an AVX512-BF16 EPYC without AMX: conv 0.53x, decode 0.56x; emulated bf16: 1x or more).
NATIVE_BF16_MAX_RATIO = 0.3
#: The capability each timed op's decode target needs.
CAPABILITY_NEEDED = {
    "structured": "nothing (it removes work on any CPU)",
    "bf16": f"native bf16 (AMX tiles, or a bf16 conv <= {NATIVE_BF16_MAX_RATIO}x float32's time)",
    "int8": "an int8 quantized engine (x86/fbgemm) and VNNI-class int8 dot products",
}
_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "dot", "i8mm")  # x86 and arm64
_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuCapabilities:
    """The CPU features the compression ops' speed-ups depend on (see the module doc)."""

    model: str  # e.g. "AMD EPYC", from /proc/cpuinfo where present
    isa: str  # torch's kernel dispatch level: "AVX512", "AVX2", "DEFAULT", ...
    avx512_bf16: bool
    amx_tiles: bool
    int8_dot: bool | None  # VNNI-class int8 dot products; None: this torch cannot tell
    int8_engine: str | None  # the first of INT8_ENGINES this torch build has, else None

    @property
    def cpu(self) -> str:
        """Model, dispatch level and bf16/int8 dot-product extensions: "AMD EPYC, AVX512, ..."."""
        extras = [
            name for name, on in (("avx512_bf16", self.avx512_bf16), ("VNNI", self.int8_dot)) if on
        ]
        return ", ".join([self.model[:32], self.isa, *extras])

    def describe(self) -> str:
        """One line, e.g. "AMD EPYC, AVX512, avx512_bf16, VNNI, no AMX, int8 engine x86"."""
        engine = f"int8 engine {self.int8_engine}" if self.int8_engine else "no int8 engine"
        return f"{self.cpu}, {'AMX' if self.amx_tiles else 'no AMX'}, {engine}"


@dataclass(frozen=True)
class GateDecision:
    """Whether an op's decode target gates on this host, and why."""

    gate: bool
    reason: str  # a sentence: what this host has or lacks
    short: str  # at most 30 characters, for the terminal summary's verdict column


def _cpu_model(cpuinfo: Path = _CPUINFO) -> str:
    """The CPU model name of /proc/cpuinfo ("model name", arm64: "Hardware"), else platform's."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown CPU"


def _torch_flags() -> Mapping[str, Any]:
    """torch's runtime CPU feature flags (``torch.cpu.get_capabilities``), or the few older
    torch versions expose as private probes."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return get()
    probes = {
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_tile": "_is_amx_tile_supported",
        "avx512_vnni": "_is_vnni_supported",
    }
    return {k: bool(getattr(torch.cpu, f)()) for k, f in probes.items() if hasattr(torch.cpu, f)}


def cpu_capabilities() -> CpuCapabilities:
    """Probe this CPU and torch build (no timing; see :func:`measure_bf16_ratio` for that)."""
    flags = _torch_flags()
    known_dot = [f for f in _INT8_DOT_FLAGS if f in flags]
    engines = torch.backends.quantized.supported_engines
    return CpuCapabilities(
        model=_cpu_model(),
        isa=torch.backends.cpu.get_cpu_capability(),
        avx512_bf16=bool(flags.get("avx512_bf16", False)),
        amx_tiles=bool(flags.get("amx_tile", False)),
        int8_dot=any(bool(flags[f]) for f in known_dot) if known_dot else None,
        int8_engine=next((e for e in INT8_ENGINES if e in engines), None),
    )


def measure_bf16_ratio(
    rounds: int = 5, channels: int = 64, hw: tuple[int, int] = (48, 64)
) -> float:
    """bf16 time / float32 time of a decoder-like 5x5 stride-2 transposed convolution
    (channels_last, ``channels`` wide, on a ``hw`` input): below 1, bf16 runs faster here.

    Timed side by side on one thread, fastest round of each: what the core's kernels can do,
    not what a loaded machine lets them do (with 2 threads and one core busy elsewhere, every
    call waits for the descheduled thread and both dtypes take the same time). Well under 1 s;
    where bf16 is far slower (reference kernels) one call of each says so and is returned.
    """
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.ConvTranspose2d(channels, channels, 5, stride=2, padding=2, output_padding=1)
    conv = conv.to(memory_format=torch.channels_last).eval()
    conv16 = copy.deepcopy(conv).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    x = torch.randn(1, channels, *hw, generator=gen).contiguous(memory_format=torch.channels_last)
    x16 = x.to(torch.bfloat16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            conv(x), conv16(x16)  # kernel selection and allocation, untimed
            t0 = time.perf_counter()
            conv(x)
            t1 = time.perf_counter()
            conv16(x16)
            t2 = time.perf_counter()
            if t2 - t1 > 3 * (t1 - t0):
                return (t2 - t1) / (t1 - t0)
            calls = {"float32": [lambda: conv(x)] * 3, "bf16": [lambda: conv16(x16)] * 3}
            runs = time_side_by_side(calls, rounds, warmup=0)
    finally:
        torch.set_num_threads(threads)
    return runs.ratio("bf16", "float32", "min")


def speedup_gate(op: str, caps: CpuCapabilities, bf16_ratio: float | None = None) -> GateDecision:
    """Whether ``op``'s decode target (structured, bf16, int8) gates on a host with ``caps``,
    where a bf16 transposed conv measured ``bf16_ratio`` of float32's time (None: unmeasured).

    Pure: the same inputs give the same decision, so it is tested with made-up hosts.
    """
    if op == "structured":
        return GateDecision(True, "structured pruning removes work on any CPU", "")
    if op == "bf16":
        measured = (
            f"a bf16 conv takes {bf16_ratio:.2f}x of float32's time"
            if bf16_ratio is not None
            else "bf16 speed not measured"
        )
        if caps.amx_tiles:
            return GateDecision(True, f"AMX tiles on this CPU ({caps.cpu}); {measured}", "")
        if bf16_ratio is not None and bf16_ratio <= NATIVE_BF16_MAX_RATIO:
            return GateDecision(True, f"native bf16 on this CPU ({caps.cpu}): {measured}", "")
        return GateDecision(
            False,
            f"no AMX tiles on this CPU ({caps.cpu}) and {measured}",
            f"no AMX, bf16 conv {bf16_ratio:.2f}x" if bf16_ratio is not None else "no AMX",
        )
    if op == "int8":
        if caps.int8_engine is None:
            return GateDecision(
                False,
                f"this torch build has no int8 engine ({'/'.join(INT8_ENGINES)})",
                "no int8 engine",
            )
        if caps.int8_dot is False:
            return GateDecision(
                False,
                f"no VNNI-class int8 dot products on this CPU ({caps.cpu})",
                "no VNNI int8",
            )
        dot = "VNNI-class int8 dot products" if caps.int8_dot else "int8 dot products unknown"
        return GateDecision(True, f"int8 engine {caps.int8_engine}, {dot}", "")
    raise ImgcompError(f"no speed-up target for op {op!r}; known: {sorted(CAPABILITY_NEEDED)}")
