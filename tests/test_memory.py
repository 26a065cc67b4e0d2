"""Peak memory measurement (imgcomp.memory) and where it shows: the benchmark's summaries, the
study table, the quality JSON and the report."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

import imgcomp.memory as memory
from bench import quality_json
from bench.memory import case_peaks
from imgcomp.memory import MIB, MemoryMeasureError, codec_peaks, format_mib, measure_peak
from imgcomp.report import build_report
from imgcomp.study import StudyConfig, format_study_table, row_from_summary, rows_to_json

linux = pytest.mark.skipif(not memory.supported(), reason="needs /proc/self/clear_refs")
SUMMARY = {"images": 2, "encode_s": 0.5, "decode_s": 0.25, "ssim": 0.7, "psnr": 28.0}
SUMMARY |= {"bpp": 0.3, "bytes": 100.5}


@linux
def test_a_known_allocation_is_seen() -> None:
    """A 200 MiB tensor filled in the call: at least 190 MiB above the worker's baseline, and
    the absolute peak above the increment (the process's own memory)."""
    peak = measure_peak(lambda: float(torch.ones(200 * MIB // 4).sum()), keep_result=True)
    assert peak is not None and peak.result == 200 * MIB // 4
    assert 190 <= peak.increment_mib < 260
    assert peak.peak_bytes > peak.increment_bytes > 0 and peak.baseline_bytes > 0


@linux
def test_memory_freed_in_this_process_before_counts_again() -> None:
    """Heap this process freed (resident, reusable by malloc) is handed back in the worker
    first, so a call that reuses it is still charged for it."""
    for _ in range(3):  # leave freed buffers in the heap
        np.ones(40 * MIB // 8).sum()
    peak = measure_peak(lambda: np.ones(40 * MIB // 8).sum())
    assert peak is not None and peak.increment_mib >= 38


@linux
def test_a_call_that_needs_nothing_measures_near_zero() -> None:
    peak = measure_peak(lambda: None)
    assert peak is not None and peak.increment_mib < 5 and peak.result is None


@linux
def test_failures_are_typed_errors() -> None:
    with pytest.raises(MemoryMeasureError, match="ZeroDivisionError"):
        measure_peak(lambda: 1 / 0)
    with pytest.raises(MemoryMeasureError, match="ran past"):
        measure_peak(lambda: time.sleep(10), timeout_s=0.3)
    with pytest.raises(MemoryMeasureError, match="SIGKILL"):
        measure_peak(lambda: os.kill(os.getpid(), 9))


def test_unsupported_platforms_give_none_and_na(monkeypatch) -> None:
    monkeypatch.setattr(memory, "supported", lambda: False)
    assert measure_peak(lambda: 1) is None
    assert codec_peaks(object(), np.zeros((8, 8, 3), np.uint8)) is None
    assert format_mib(None) == "n/a" and format_mib(81.46) == "81"


class _Codec:
    """A codec whose encode allocates ~16 MiB and decode ~64 MiB (float64 buffers)."""

    name = "toy"

    def encode(self, img: np.ndarray) -> bytes:
        return bytes(np.ones(16 * MIB // 8).astype(np.uint8)[:8])

    def decode(self, data: bytes) -> np.ndarray:
        buf = np.ones(64 * MIB // 8)
        return np.full((8, 8, 3), int(buf[0]), np.uint8)


@linux
def test_codec_peaks_measure_encode_and_decode_apart() -> None:
    peaks = codec_peaks(_Codec(), np.zeros((8, 8, 3), np.uint8))
    assert peaks is not None
    assert 15 <= peaks.encode.increment_mib < 40 and 62 <= peaks.decode.increment_mib < 90
    d = peaks.as_dict()
    assert set(d) == {"peak_encode_mib", "peak_decode_mib"} and d["peak_decode_mib"] >= 62


def test_bench_case_peaks_cache_and_survive_failures(monkeypatch) -> None:
    """The suite's per-case values: measured once per case and codec; a failing measurement is
    a warning and None (n/a), never a failed benchmark."""
    import bench.memory as bench_memory
    from bench.case import Case

    calls = []

    def fake(codec, img, **_):
        calls.append(codec)
        if codec == "broken":
            raise MemoryMeasureError("worker died")
        return memory.CodecPeaks(memory.PeakMemory(0, 10 * MIB), memory.PeakMemory(0, 30 * MIB))

    monkeypatch.setattr(memory, "codec_peaks", fake)  # what peak_fields calls
    monkeypatch.setattr(bench_memory, "_PEAKS", {})
    case = Case(id="toy-q1", family="toy", factory=lambda d, t: None)
    images = [("kodim01", np.zeros((8, 8, 3), np.uint8))]
    got = case_peaks(case, "codec", images)
    assert got == {"peak_encode_mib": 10.0, "peak_decode_mib": 30.0, "memory_image": "kodim01"}
    assert case_peaks(case, "codec", images) == got and calls == ["codec"]
    with pytest.warns(UserWarning, match="worker died"):
        broken = case_peaks(case, "broken", images)
    assert broken["peak_decode_mib"] is None and broken["memory_image"] == "kodim01"


def test_study_table_shows_peak_decode_memory() -> None:
    """The column appears when some row has the value (n/a for the others), after the decode
    speedup; the study's own columns never show it; the JSON rows carry both peaks."""
    base = row_from_summary(StudyConfig(), {**SUMMARY, "peak_decode_mib": 81.5})
    int8 = row_from_summary(StudyConfig(quant="int8"), {**SUMMARY, "peak_encode_mib": 99.0})
    md = format_study_table([base, int8], style="markdown").splitlines()
    head = [c.strip() for c in md[0].strip("|").split("|")]
    assert head[head.index("Decode speedup") + 1] == "Peak decode memory (MiB)"
    col = head.index("Peak decode memory (MiB)")
    assert [line.strip("|").split("|")[col].strip() for line in md[2:]] == ["82", "n/a"]
    assert "dec MiB" in format_study_table([base, int8]).splitlines()[0]
    assert "memory" not in format_study_table([base, int8], style="tsv", columns="study")
    plain = row_from_summary(StudyConfig(), SUMMARY)
    assert "MiB" not in format_study_table([plain])
    data = rows_to_json([base, int8])
    assert data[0]["peak_decode_mib"] == 81.5 and data[1]["peak_encode_mib"] == 99.0


def test_bench_study_section_shows_the_column(study_table_lines) -> None:
    ids = ["mbt2018-mean-q3", "mbt2018-mean-q3/prune=none/quant=int8"]
    summaries = {
        c: {"case": c, **SUMMARY, "peak_decode_mib": 60.0 + 30 * i} for i, c in enumerate(ids)
    }
    lines = study_table_lines(summaries)
    assert "dec MiB" in lines[2] and lines[4].split()[-1] == "60" and lines[5].split()[-1] == "90"


def _summary(case_id: str, **memory_keys) -> dict:
    return {"case": case_id, **SUMMARY, "ms_ssim": 0.9, "gate": "ok", **memory_keys}


def test_quality_json_and_report_show_peak_memory(tmp_path: Path) -> None:
    """The quality file holds each case's peaks under ``memory``; the report's quality table
    shows them (n/a where null, as a case on a platform without the measurement)."""
    base, int8 = "mbt2018-mean-q3", "mbt2018-mean-q3/prune=none/quant=int8"
    summaries = {
        base: _summary(base, peak_encode_mib=80.0, peak_decode_mib=71.0, memory_image="kodim01"),
        int8: _summary(int8, peak_encode_mib=None, peak_decode_mib=None, memory_image="kodim01"),
        "jpeg-q75": _summary("jpeg-q75"),  # a file written before the measurement
    }
    data = quality_json.payload(
        summaries,
        {},
        {"dataset": "kodak"},
        when=datetime(2026, 12, 1, tzinfo=timezone.utc),
        commit={"id": None, "short": None, "dirty": None},
        machine={},
    )
    path = quality_json.write(tmp_path / "in" / "q.json", data)
    written = json.loads(path.read_text())["cases"]
    assert written[base]["memory"] == {
        "peak_encode_mib": 80.0,
        "peak_decode_mib": 71.0,
        "memory_image": "kodim01",
    }
    assert "memory" not in written["jpeg-q75"]
    report = build_report([tmp_path / "in"], tmp_path / "out")
    table = report.tables["quality"]
    assert table.header[-2:] == ["peak encode MiB", "peak decode MiB"]
    rows = {r[0]: r for r in table.rows}
    assert rows[base][-2:] == ["80", "71"] and rows[int8][-2:] == ["n/a", "n/a"]
    assert rows["jpeg-q75"][-2:] == ["n/a", "n/a"] and "kodim01" in table.note
    assert "peak decode MiB" in report.index.read_text()


def test_report_study_table_shows_peak_decode_memory(tmp_path: Path) -> None:
    rows = rows_to_json(
        [
            row_from_summary(StudyConfig(), {**SUMMARY, "peak_decode_mib": 70.0}),
            row_from_summary(StudyConfig(quant="int8"), {**SUMMARY, "peak_decode_mib": 95.0}),
        ]
    )
    payload = {"codec": "mean-scale-hyperprior", "params": {"quality": 3}, "rows": rows}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "study.json").write_text(json.dumps(payload))
    table = build_report([tmp_path / "in"], tmp_path / "out").tables["study:study.json"]
    col = table.header.index("Peak decode memory (MiB)")
    assert table.header[col - 1] == "Decode speedup" and [r[col] for r in table.rows] == [
        "70",
        "95",
    ]
