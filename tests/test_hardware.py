"""imgcomp.hardware: the capability probes and the pure rule that gates a speed-up target."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from imgcomp import hardware
from imgcomp.errors import ImgcompError
from imgcomp.hardware import (
    CAPABILITY_NEEDED,
    INT8_ENGINES,
    CpuCapabilities,
    GateDecision,
    cpu_capabilities,
    measure_bf16_ratio,
    speedup_gate,
)

#: A host like this project's: AVX512-BF16 and VNNI, no AMX tiles.
EPYC = CpuCapabilities("AMD EPYC", "AVX512", True, False, True, "x86")
#: A host with AMX tiles (Sapphire Rapids class).
XEON = CpuCapabilities("Intel(R) Xeon(R) Platinum 8480+", "AVX512", True, True, True, "x86")


def test_probe_returns_sane_types() -> None:
    caps = cpu_capabilities()
    assert isinstance(caps.model, str) and caps.model.strip()
    assert isinstance(caps.isa, str) and caps.isa
    assert isinstance(caps.avx512_bf16, bool) and isinstance(caps.amx_tiles, bool)
    assert caps.int8_dot is None or isinstance(caps.int8_dot, bool)
    assert caps.int8_engine is None or caps.int8_engine in INT8_ENGINES
    assert (
        caps.int8_engine is None or caps.int8_engine in torch.backends.quantized.supported_engines
    )
    line = caps.describe()
    assert "\n" not in line and line.startswith(caps.model[:32]) and len(line) <= 90


def test_describe_names_model_isa_extensions_amx_and_engine() -> None:
    assert EPYC.cpu == "AMD EPYC, AVX512, avx512_bf16, VNNI"
    assert EPYC.describe() == "AMD EPYC, AVX512, avx512_bf16, VNNI, no AMX, int8 engine x86"
    bare = CpuCapabilities("Some CPU", "AVX2", False, False, None, None)
    assert bare.describe() == "Some CPU, AVX2, no AMX, no int8 engine"
    assert XEON.describe().endswith(", AMX, int8 engine x86")


def test_cpu_model_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 9654\n")
    assert hardware._cpu_model(info) == "AMD EPYC 9654"
    info.write_text("processor\t: 0\nHardware\t: BCM2835\n")
    assert hardware._cpu_model(info) == "BCM2835"
    assert hardware._cpu_model(tmp_path / "absent")  # falls back to platform, never empty


def test_bf16_measurement_is_a_ratio_and_restores_threads() -> None:
    threads = torch.get_num_threads()
    ratio = measure_bf16_ratio(rounds=2, channels=8, hw=(8, 8))
    assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
    assert torch.get_num_threads() == threads


def test_structured_always_gates() -> None:
    bare = CpuCapabilities("Some CPU", "DEFAULT", False, False, False, None)
    assert speedup_gate("structured", bare).gate
    assert speedup_gate("structured", EPYC, 2.0).gate


def test_bf16_without_amx_and_slow_bf16_skips_with_the_measured_ratio() -> None:
    d = speedup_gate("bf16", EPYC, 0.9)
    assert not d.gate
    assert d.reason == (
        "no AMX tiles on this CPU (AMD EPYC, AVX512, avx512_bf16, VNNI) and a bf16 conv takes "
        "0.90x of float32's time"
    )
    assert d.short == "no AMX, bf16 conv 0.90x" and len(d.short) <= 30


@pytest.mark.parametrize(
    ("ratio", "gate"), [(0.18, True), (0.3, True), (0.31, False), (0.53, False), (1.3, False)]
)
def test_bf16_without_amx_gates_only_when_measured_clearly_faster(ratio: float, gate: bool) -> None:
    assert speedup_gate("bf16", EPYC, ratio).gate is gate


def test_bf16_with_amx_gates_whatever_the_measurement() -> None:
    for ratio in (0.3, 1.2, None):
        d = speedup_gate("bf16", XEON, ratio)
        assert d.gate and "AMX tiles" in d.reason and d.short == ""


def test_bf16_unmeasured_without_amx_skips() -> None:
    d = speedup_gate("bf16", EPYC, None)
    assert not d.gate and "not measured" in d.reason and d.short == "no AMX"


def test_int8_needs_an_engine_and_vnni_where_known() -> None:
    no_engine = dataclasses.replace(EPYC, int8_engine=None)
    d = speedup_gate("int8", no_engine)
    assert not d.gate and "x86/fbgemm" in d.reason and d.short == "no int8 engine"
    no_vnni = dataclasses.replace(EPYC, int8_dot=False)
    d = speedup_gate("int8", no_vnni)
    assert not d.gate and "VNNI" in d.reason and d.short == "no VNNI int8"
    assert speedup_gate("int8", EPYC).gate
    assert speedup_gate("int8", dataclasses.replace(EPYC, int8_dot=None)).gate  # unknown: engine


def test_decision_is_pure_and_every_op_names_its_need() -> None:
    assert speedup_gate("bf16", EPYC, 0.9) == speedup_gate("bf16", EPYC, 0.9)
    assert isinstance(speedup_gate("int8", EPYC), GateDecision)
    assert set(CAPABILITY_NEEDED) == {"structured", "bf16", "int8"}
    with pytest.raises(ImgcompError, match="w8"):
        speedup_gate("w8", EPYC)
