"""The fuzz harness itself (imgcomp.fuzz), on toy codecs whose decoders misbehave on purpose:
each misbehaviour must land in its outcome, with its reproducer saved."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import zlib

import numpy as np
import pytest

from imgcomp.bitstream import StreamHeader, unpack
from imgcomp.codecs.base import ContainerCodec
from imgcomp.errors import BitstreamError, ImgcompError
from imgcomp.fuzz import (
    FAILURES,
    KINDS,
    RAW_KINDS,
    STRUCTURED_KINDS,
    Target,
    classify_exception,
    decode_in_worker,
    mutate,
    run_campaign,
)
from imgcomp.registry import register_codec, unregister_codec

_H, _W = 8, 12
_IMG = np.random.default_rng(0).integers(0, 256, (_H, _W, 3), dtype=np.uint8)
_NAMES = ("jpeg", "webp", "fuzz-echo")


class Echo(ContainerCodec):
    """Raw pixels in one section; refuses anything else with a BitstreamError."""

    name = "fuzz-echo"

    def encode_sections(self, img: np.ndarray) -> list[bytes]:
        return [img.tobytes()]

    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        shape = (header.height, header.width, 3)
        if len(sections) != 1 or len(sections[0]) != int(np.prod(shape)):
            raise BitstreamError("not one section of raw pixels")
        return np.frombuffer(sections[0], np.uint8).reshape(shape).copy()


class Picky(Echo):
    """Raises ValueError (not a typed error) when the section count is wrong."""

    def decode_sections(self, sections: list[bytes], header: StreamHeader) -> np.ndarray:
        if len(sections) != 1:
            raise ValueError(f"picky: {len(sections)} sections")
        return super().decode_sections(sections, header)


class Sleepy(Echo):
    def decode_sections(self, sections, header):
        time.sleep(30)
        raise AssertionError("not reached")


class StdinReader(Echo):
    """Reads stdin, as a codec handed ``checkpoint=/dev/stdin`` would."""

    def decode_sections(self, sections, header):
        sys.stdin.buffer.read()
        return super().decode_sections(sections, header)


class NumpyHog(Echo):
    def decode_sections(self, sections, header):
        return np.ones((1 << 30, 1), np.uint8)  # 1 GiB, past the tests' 256 MiB limit


class TorchHog(Echo):
    def decode_sections(self, sections, header):
        import torch

        return torch.ones(1 << 30, dtype=torch.uint8)


class Segfault(Echo):
    def decode_sections(self, sections, header):
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)


class Exits(Echo):
    def decode_sections(self, sections, header):
        os._exit(3)


class WrongImage:
    """Not a ContainerCodec: nothing checks its output but the harness."""

    name = "wrong-image"

    def decode(self, data: bytes) -> np.ndarray:
        unpack(data)
        return np.zeros((2, 2, 3), np.float32)


def _target(codec, label: str | None = None) -> Target:
    return Target(label or type(codec).__name__, Echo().encode(_IMG), "codec", codec=codec)


def _one(codec, limit_s: float = 5.0, memory: int = 3 << 30):
    """The outcome of the unmutated stream, decoded in a worker."""
    return decode_in_worker(_target(codec), Echo().encode(_IMG), limit_s, memory)


# -- outcomes ----------------------------------------------------------------------------------
def test_a_well_behaved_codec_gives_only_images_and_typed_errors() -> None:
    report = run_campaign([_target(Echo())], 60, seed=1)
    (t,) = report.targets
    assert t.baseline.outcome == "image"
    assert t.counts["image"] > 0 and t.counts["typed"] > 0
    assert t.counts["image"] + t.counts["typed"] == t.mutants == 60
    assert report.ok and not report.failures() and not report.reproducers
    assert "BitstreamError" in t.typed_errors and sum(t.typed_errors.values()) == t.counts["typed"]
    assert all(r.peak_rss_bytes > 0 and r.elapsed_s >= 0 for r in report.results)


def test_decode_stream_path_rebuilds_a_registered_codec() -> None:
    register_codec("fuzz-echo")(Echo)
    try:
        target = Target("echo:stream", Echo().encode(_IMG), "decode_stream")
        report = run_campaign([target], 40, seed=2)
    finally:
        unregister_codec("fuzz-echo")
    (t,) = report.targets
    assert t.baseline.outcome == "image"
    assert t.counts["image"] + t.counts["typed"] == 40, report.failures()


def test_a_foreign_exception_is_counted_and_its_reproducer_saved(tmp_path) -> None:
    seed, target = 3, _target(Picky())
    report = run_campaign([target], 60, seed=seed, out_dir=tmp_path)
    foreign = [r for r in report.results if r.outcome == "foreign"]
    assert foreign and report.counts["Picky"]["foreign"] == len(foreign)
    assert not report.ok and report.reproducers == [r.reproducer for r in foreign]
    lines = [json.loads(s) for s in (tmp_path / "reproducers.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == [r.index for r in foreign]
    for r, line in zip(foreign, lines, strict=True):
        assert r.error.startswith("ValueError: picky") and "test_fuzz_harness.py:" in r.where
        rng = np.random.default_rng([seed, zlib.crc32(target.stream), r.index])
        mutant, description = mutate(target.stream, rng, codec_names=_registered())
        with open(r.reproducer, "rb") as f:
            saved = f.read()
        assert saved == mutant and description == r.description == line["description"]
        assert line["outcome"] == "foreign" and line["reproducer"] == r.reproducer
        with pytest.raises(ValueError, match="picky"):
            Picky().decode(saved)
    assert json.loads((tmp_path / "report.json").read_text())["failures"]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _registered() -> tuple[str, ...]:
    from imgcomp.registry import list_codecs

    return tuple(list_codecs(aliases=True))


def test_a_decoder_past_the_time_limit_is_killed_as_over_time(tmp_path) -> None:
    start = time.perf_counter()
    report = run_campaign([_target(Sleepy())], 4, time_limit_s=0.5, out_dir=tmp_path, jobs=2)
    took = time.perf_counter() - start
    (t,) = report.targets
    assert t.baseline.outcome == "over_time" and t.counts["over_time"] >= 1
    assert t.counts["over_time"] + t.counts["typed"] == 4
    assert 0.5 <= t.worst_s < 2.0 and took < 6.0
    assert len(report.reproducers) == t.counts["over_time"] + 1  # the baseline's too
    assert any(p.endswith("original-over_time.bin") for p in report.reproducers)


def test_reading_stdin_hangs_as_over_time() -> None:
    assert _one(StdinReader(), limit_s=0.5).outcome == "over_time"


@pytest.mark.parametrize("hog", [NumpyHog, TorchHog])
def test_an_allocation_past_the_memory_limit_is_over_memory(hog) -> None:
    result = _one(hog(), memory=256 << 20)
    assert result.outcome == "over_memory", result
    assert result.peak_rss_bytes < _rss() + (256 << 20)


def test_a_segfault_is_a_crash_with_the_fault_on_stderr(tmp_path) -> None:
    report = run_campaign([_target(Segfault())], 3, out_dir=tmp_path)
    (t,) = report.targets
    assert t.baseline.outcome == "crash" and t.baseline.error == "killed by SIGSEGV"
    assert "Segmentation fault" in t.baseline.stderr
    assert t.counts["crash"] + t.counts["typed"] == 3


def test_a_worker_exiting_without_a_result_is_a_crash() -> None:
    result = _one(Exits())
    assert (result.outcome, result.error) == ("crash", "exited with status 3, no result")


def test_a_wrong_image_is_foreign() -> None:
    result = _one(WrongImage())
    assert result.outcome == "foreign" and result.error.startswith("WrongImage")


def test_classify_exception() -> None:
    assert classify_exception(BitstreamError("x")) == ("typed", "BitstreamError")
    assert classify_exception(ImgcompError("x"))[0] == "typed"
    alloc = RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: 4 GB")
    assert classify_exception(alloc)[0] == "over_memory"
    assert classify_exception(MemoryError())[0] == "over_memory"
    assert classify_exception(KeyError("k")) == ("foreign", "KeyError: 'k'")
    assert classify_exception(SystemExit(2))[0] == "foreign"


# -- the report --------------------------------------------------------------------------------
def test_the_report_table_and_json() -> None:
    report = run_campaign([_target(Echo(), "echo"), _target(Picky(), "picky")], 30, seed=4)
    lines = report.table().splitlines()
    assert lines[0].split()[:2] == ["target", "mutants"] and "over memory" in lines[0]
    assert lines[2].split()[0] == "echo" and lines[3].split()[0] == "picky"
    assert [int(x) for x in lines[2].split()[1:8]] == [
        30,
        *(report.counts["echo"][o] for o in ("image", "typed", "foreign")),
        *(report.counts["echo"][o] for o in FAILURES[1:]),
    ]
    doc = json.loads(report.to_json())
    assert [t["label"] for t in doc["targets"]] == ["echo", "picky"]
    assert len(doc["failures"]) == report.counts["picky"]["foreign"]
    assert "results" not in doc and len(json.loads(report.to_json(True))["results"]) == 60


def test_a_campaign_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[tuple[str, str]]:
        report = run_campaign([_target(Picky())], 25, seed=seed)
        return [(r.description, r.outcome) for r in report.results]

    assert run(5) == run(5) != run(6)


# -- mutators ----------------------------------------------------------------------------------
def test_mutators_are_deterministic_for_a_seed() -> None:
    stream = Echo().encode(_IMG)

    def batch(seed: int) -> list[tuple[bytes, str]]:
        rngs = (np.random.default_rng([seed, i]) for i in range(80))
        return [mutate(stream, rng, codec_names=_NAMES) for rng in rngs]

    first = batch(0)
    assert first == batch(0) and first != batch(1)
    assert len({d for _, d in first}) > 60  # varied
    assert sum(m != stream for m, _ in first) > 70


@pytest.mark.parametrize("kind", sorted(STRUCTURED_KINDS))
def test_structure_aware_mutants_pass_the_crc(kind: str) -> None:
    stream = Echo().encode(_IMG)
    donor = unpack(Echo(quality=3).encode(_IMG[:4]))[0]
    changed = 0
    for i in range(60):
        rng = np.random.default_rng([7, i])
        mutant, what = mutate(stream, rng, codec_names=_NAMES, donors=[donor], kinds=[kind])
        unpack(mutant)  # the CRC, the lengths and the header are all valid
        changed += mutant != stream
        assert what and len(what.split("; ")) <= 3
    assert changed >= 40  # a few are no-ops (e.g. forging the fingerprint it has)


def test_stacked_structure_aware_mutants_pass_the_crc() -> None:
    stream = Echo().encode(_IMG)
    for i in range(200):
        mutant, what = mutate(
            stream, np.random.default_rng([8, i]), codec_names=_NAMES, kinds=list(STRUCTURED_KINDS)
        )
        unpack(mutant)
        assert 1 <= len(what.split("; ")) <= 3


def test_raw_mutants_are_mostly_refused_by_the_crc() -> None:
    stream = Echo().encode(_IMG)
    refused = 0
    for i in range(60):
        mutant, _ = mutate(stream, np.random.default_rng([9, i]), kinds=["bit-flip"])
        try:
            unpack(mutant)
        except BitstreamError:
            refused += 1
    assert refused == 60


def test_mutation_descriptions_say_what_was_done() -> None:
    stream = Echo().encode(_IMG)
    seen = " | ".join(
        mutate(stream, np.random.default_rng([10, i]), codec_names=_NAMES)[1] for i in range(400)
    )
    for part in ("flip byte", "header height=", "params +checkpoint=", "section", "codec "):
        assert part in seen, part
    assert set(KINDS) == set(STRUCTURED_KINDS) | set(RAW_KINDS)
    with pytest.raises(ValueError, match="unknown mutation kind"):
        mutate(stream, np.random.default_rng(0), kinds=["nope"])


def test_stacked_size_edits_never_stop_a_campaign() -> None:
    # a header at the container's largest side, edited again (off by one), once raised
    # BitstreamError in the parent and ended a 33-target campaign
    from imgcomp.bitstream import MAX_SIDE, pack

    header, sections = unpack(Echo().encode(_IMG))
    edge = pack(StreamHeader(header.codec, header.fingerprint, 1, MAX_SIDE, {}), sections)
    for seed in range(300):
        data, _ = mutate(edge, np.random.default_rng(seed), kinds=["header-size"])
        assert isinstance(data, bytes)


def test_section_edits_of_a_stream_with_the_most_sections_never_stop_a_campaign() -> None:
    # stacked section edits once reached MAX_SECTIONS and "many" then drew from an empty range:
    # a ValueError in the parent ended the 10,000-mutant campaign at its 19th target
    from imgcomp.bitstream import MAX_SECTIONS, pack

    header, _ = unpack(Echo().encode(_IMG))
    full = pack(header, [bytes([i]) for i in range(MAX_SECTIONS)])
    for seed in range(400):
        data, _ = mutate(full, np.random.default_rng(seed), kinds=["section"])
        assert isinstance(data, bytes)
