"""Sharded runs merged (``pytest bench --shard K/N``, :mod:`imgcomp.report.merge`): the report of
a run's parts equals the report of the unsharded run, from synthetic files shaped like the
suite's and from a real small benchmark run; shards of other runs stay apart; the shards'
pytest-benchmark JSON merge into one file for github-action-benchmark."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench import quality_json
from imgcomp.report import ReportWarning, build_report, load_inputs
from imgcomp.report.merge import merge_benchmark_json, part_of, run_key
from tests.test_report import summary

REPO = Path(__file__).resolve().parents[1]
BENCH_SAVE = Path(__file__).parent / "fixtures" / "report" / "0001_benchmark_jpeg.json"
WHEN = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
COMMIT = "c" * 40
MACHINE = {"cpu": "Test CPU", "threads": 1, "torch": "2.13.0+cpu"}
OPTIONS = {"matrix": "default", "dataset": "kodak", "images": 2, "case": [], "markexpr": ""}
BASE = "mbt2018-mean-q3"
L1 = f"{BASE}/prune=enc0.3,dec0.3,ent0.3:l1/quant=none"
INT8 = f"{BASE}/prune=none/quant=int8"
RNN = "toderici2017-i3"
RNN_OP = f"{RNN}/prune=enc0.3,bin0,dec0.3:l1/quant=none"
#: case id -> (bpp, ssim, decode seconds), in the suite's order of cases.
CASES = {
    "jpeg-q75": (1.2, 0.93, 0.010),
    "jpeg-q10": (0.25, 0.70, 0.008),
    BASE: (0.30, 0.760, 0.200),
    L1: (0.29, 0.740, 0.180),
    INT8: (0.30, 0.757, 0.100),
    RNN: (0.37, 0.70, 0.300),
    RNN_OP: (0.37, 0.68, 0.200),
}
#: Each op in another shard than its base: only the joined run pairs them (the Ballé ops by
#: the saves' timings, the RNN's by the quality pass: the saves do not time the RNN).
SHARDS = ({"jpeg-q75", BASE, RNN_OP}, {"jpeg-q10", L1, INT8, RNN})
TIMED = [case_id for case_id in CASES if not case_id.startswith("toderici")]
ORDER = [f"test_{d}_latency[{case_id}]" for d in ("encode", "decode") for case_id in TIMED]


# ---- synthetic files, as the suite writes them ----------------------------------------------


def _summary(case_id: str) -> dict:
    bpp, ssim, decode_s = CASES[case_id]
    return summary(case_id, bpp, ssim, decode_s)


def write_quality(
    path: Path, cases, shard: str | None = None, when: datetime = WHEN, commit: str = COMMIT, **opt
) -> Path:
    """A quality results file of ``cases`` (bench.quality_json), the shard in its options."""
    summaries = {c: _summary(c) for c in cases}
    keys = ("bytes", "bpp", "psnr", "ssim", "ms_ssim", "encode_s", "decode_s")
    images = {
        c: [{"image": "kodim01", "height": 512, "width": 768, **{k: s[k] for k in keys}}]
        for c, s in summaries.items()
    }
    options = {**OPTIONS, **opt, "shard": shard, "xdist_workers": 0}
    data = quality_json.payload(
        summaries,
        images,
        options,
        when=when,
        commit={"id": commit, "short": commit[:7], "dirty": False},
        machine=MACHINE,
    )
    return quality_json.write(path, data)


def _entry(template: dict, name: str) -> dict:
    """A latency benchmark of the suite: ``test_decode_latency[<case>]`` from the real one."""
    entry = copy.deepcopy(template)
    case_id = name.split("[", 1)[1][:-1]
    direction = name[len("test_") : len("test_encode")]
    base, _, ops = case_id.partition("/")
    bpp, ssim, decode_s = CASES[case_id]
    entry.update(name=name, fullname=f"bench/test_latency.py::{name}", param=case_id)
    entry["group"] = f"{base if ops else base.rsplit('-', 1)[0]} {direction}"
    entry["extra_info"] = {"case": case_id, "images": 2, "ssim": ssim, "bpp": bpp}
    if base.startswith("mbt"):
        entry["extra_info"]["serialized_bytes"] = 5e6 if "int8" in case_id else 2e7
    median = decode_s if direction == "decode" else 0.04 + ORDER.index(name) / 1000
    stats = entry["stats"]
    scale = median / stats["median"]
    for key in ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr"):
        stats[key] *= scale
    return entry


def write_save(
    path: Path,
    cases,
    shard: str | None = None,
    when: datetime = WHEN,
    commit: str = COMMIT,
    positions: bool = True,
    node: str | None = None,
) -> dict:
    """A pytest-benchmark save of the suite timing ``cases``, with what bench/conftest.py adds
    (its options, and for a shard each timing's place in the whole selection)."""
    data = json.loads(BENCH_SAVE.read_text())
    template = data["benchmarks"][0]
    data["datetime"] = when.isoformat()
    data["commit_info"]["id"] = commit
    data["machine_info"]["node"] = node or data["machine_info"]["node"]
    names = [n for n in ORDER if n.split("[", 1)[1][:-1] in cases]
    data["benchmarks"] = [_entry(template, n) for n in names]
    data["imgcomp"] = {"options": {**OPTIONS, "shard": shard, "timing_images": "4"}}
    if shard and positions:
        data["imgcomp"]["positions"] = {
            f"bench/test_latency.py::{n}": 2 + 3 * ORDER.index(n) for n in names
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return data


def report_data(report) -> dict:
    """What a report shows, without where its files went: every figure's data, every table."""
    figures = {
        name: (f.kind, f.title, f.xlabel, f.ylabel, f.series, f.labels, f.xticks, f.reference)
        for name, f in report.figures.items()
    }
    figures |= {f"{name} dotted": sorted(f.dotted) for name, f in report.figures.items()}
    tables = {key: (t.title, t.header, t.rows, t.note) for key, t in report.tables.items()}
    return {"figures": figures, "tables": tables, "runs": len(report.runs)}


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory):
    """The report of an unsharded run, and of the same run in two shards (shard 1 finished
    half an hour before shard 2, which finished when the unsharded run did)."""
    root = tmp_path_factory.mktemp("merge")
    whole, parts = root / "whole", root / "parts"
    write_quality(whole / "quality.json", CASES)
    write_save(whole / "0001_run.json", CASES)
    for k, cases in enumerate(SHARDS, 1):
        when = WHEN - timedelta(minutes=30) * (len(SHARDS) - k)
        write_quality(parts / f"shard-{k}" / "quality.json", cases, f"{k}/2", when)
        write_save(parts / f"shard-{k}" / "0001_run.json", cases, f"{k}/2", when)
    with warnings_as_errors():
        return (
            build_report([whole], root / "report-whole"),
            build_report([parts], root / "report-parts"),
        )


class warnings_as_errors:
    """A block in which a ReportWarning fails the test (merging said something it should not)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", ReportWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


# ---- the report of the parts is the report of the run -----------------------------------------


def test_report_of_the_shards_equals_the_unsharded_report(two_reports) -> None:
    whole, parts = two_reports
    assert report_data(parts) == report_data(whole)
    assert whole.warnings == parts.warnings == []


def test_the_joined_run_pairs_ops_with_bases_of_other_shards(two_reports) -> None:
    """What only the joined run shows: the ops of shard 2 against their base in shard 1 (the
    save's timings), the RNN's op of shard 1 against its base in shard 2 (the quality pass)."""
    _, parts = two_reports
    label = "ccccccc 2026-12-01 10:00"
    speed = parts.figures[f"frontier_speed:{BASE}"]
    source = f"benchmark {label}"
    timed = dict(zip(speed.labels[source], speed.series[source], strict=True))
    assert timed["prune=none/quant=int8"] == (pytest.approx(0.003), pytest.approx(2.0))
    assert timed["prune=enc0.3,dec0.3,ent0.3:l1/quant=none"][1] == pytest.approx(0.2 / 0.18)
    rnn = parts.figures[f"frontier_speed:{RNN}"].series
    assert rnn == {f"quality pass {label}": [(pytest.approx(0.02), pytest.approx(1.5))]}
    quality = parts.tables["quality"]
    assert [row[0] for row in quality.rows] == sorted(CASES)
    (run,) = parts.runs
    assert run.shards == ("1/2", "2/2") and [p.parent.name for p in run.parts] == [
        "shard-1",
        "shard-2",
    ]
    latency = parts.tables["latency"]
    assert len(latency.header) == 4 and len(latency.rows) == len(ORDER)  # one run of them all


def test_loader_joins_the_parts_into_one_run(tmp_path: Path) -> None:
    for k, cases in enumerate(SHARDS, 1):
        write_quality(tmp_path / f"q{k}.json", cases, f"{k}/2", WHEN + timedelta(minutes=k))
        write_save(tmp_path / f"b{k}.json", cases, f"{k}/2", WHEN + timedelta(minutes=k))
    found = load_inputs([tmp_path])
    assert len(found.files) == 4  # every file is listed as read
    (quality,) = found.quality
    assert list(quality.cases) == sorted(CASES)
    assert quality.datetime == WHEN + timedelta(minutes=2) and quality.options["shard"] is None
    assert quality.shards == ("1/2", "2/2") and quality.parts == (
        tmp_path / "q1.json",
        tmp_path / "q2.json",
    )
    (bench,) = found.benchmarks
    assert [e.name for e in bench.benchmarks] == ORDER  # the unsharded order, from positions
    assert " + " not in bench.machine and bench.machine.endswith(")")  # one machine, once
    write_save(tmp_path / "b2.json", SHARDS[1], "2/2", WHEN, node="runner-2")
    (bench,) = load_inputs([tmp_path]).benchmarks
    assert bench.machine.endswith(") + Intel(R) Xeon(R) Processor (runner-2)"), bench.machine


def test_without_positions_the_parts_keep_their_own_order(tmp_path: Path) -> None:
    for k, cases in enumerate(SHARDS, 1):
        write_save(tmp_path / f"b{k}.json", cases, f"{k}/2", positions=False)
    (bench,) = load_inputs([tmp_path]).benchmarks
    first = [n for n in ORDER if n.split("[", 1)[1][:-1] in SHARDS[0]]
    assert [e.name for e in bench.benchmarks][: len(first)] == first
    assert len(bench.benchmarks) == len(ORDER)


# ---- what is one run, and what is not ---------------------------------------------------------


def test_shards_of_different_runs_stay_apart(tmp_path: Path) -> None:
    """Another commit, other options, another N, or no shard at all: separate runs."""
    a, b = SHARDS
    write_quality(tmp_path / "1.json", a, "1/2")
    write_quality(tmp_path / "2.json", b, "2/2", commit="d" * 40)  # another commit
    write_quality(tmp_path / "3.json", b, "2/2", images=3)  # other options
    write_quality(tmp_path / "4.json", b, "2/3")  # another split
    write_quality(tmp_path / "5.json", CASES, None)
    write_quality(tmp_path / "6.json", CASES, None, WHEN + timedelta(hours=1))
    with pytest.warns(ReportWarning) as caught:
        found = load_inputs([tmp_path])
    assert len(found.quality) == 6
    assert sorted(len(r.cases) for r in found.quality) == [3, 4, 4, 4, 7, 7]
    assert all("not among the inputs" in str(w.message) for w in caught) and len(caught) == 4


def test_a_missing_shard_is_said_and_the_others_shown(tmp_path: Path) -> None:
    write_quality(tmp_path / "1.json", {"jpeg-q75"}, "1/3")
    write_quality(tmp_path / "3.json", {"jpeg-q10"}, "3/3")
    with pytest.warns(ReportWarning, match=r"3 shards, 2/3 not among the inputs"):
        (run,) = load_inputs([tmp_path]).quality
    assert sorted(run.cases) == ["jpeg-q10", "jpeg-q75"] and run.shards == ("1/3", "3/3")


def test_a_shard_run_again_counts_by_its_later_file(tmp_path: Path) -> None:
    write_quality(tmp_path / "old" / "1.json", {"jpeg-q75", "jpeg-q10"}, "1/2", WHEN)
    write_quality(tmp_path / "new" / "1.json", {"jpeg-q75"}, "1/2", WHEN + timedelta(hours=1))
    write_quality(tmp_path / "2.json", {BASE}, "2/2", WHEN)
    with pytest.warns(ReportWarning, match="the later file is used"):
        (run,) = load_inputs([tmp_path]).quality
    assert sorted(run.cases) == sorted({"jpeg-q75", BASE})
    assert run.parts == (tmp_path / "new" / "1.json", tmp_path / "2.json")


def test_one_file_in_two_folders_and_one_session_saved_twice_are_one_run(tmp_path: Path) -> None:
    """A copy of a quality file; a session's autosave and its --benchmark-json (dates apart
    by microseconds, timings identical): one run each, sharded or not, and nothing said."""
    write_quality(tmp_path / "a" / "q.json", CASES)
    shutil.copy(tmp_path / "a" / "q.json", tmp_path / "q-copy.json")
    write_save(tmp_path / "a" / "0001_x.json", CASES, when=WHEN)
    write_save(tmp_path / "bench.json", CASES, when=WHEN + timedelta(microseconds=250))
    write_save(tmp_path / "s" / "0001_x.json", SHARDS[0], "1/2", WHEN)
    write_save(tmp_path / "bench-shard-1.json", SHARDS[0], "1/2", WHEN + timedelta(seconds=1))
    write_save(tmp_path / "s" / "0002_x.json", SHARDS[1], "2/2", WHEN)
    with warnings_as_errors():
        found = load_inputs([tmp_path])
    assert len(found.files) == 7 and len(found.quality) == 1
    assert [len(r.benchmarks) for r in found.benchmarks] == [len(ORDER)] * 2
    # another session of the same commit and options, timed differently: another run
    later = write_save(tmp_path / "0003_x.json", CASES, when=WHEN + timedelta(hours=1))
    later["benchmarks"][0]["stats"]["median"] *= 1.1
    (tmp_path / "0003_x.json").write_text(json.dumps(later))
    assert len(load_inputs([tmp_path]).benchmarks) == 3


def test_the_run_key_ignores_only_the_shard_and_the_workers() -> None:
    class Run:
        commit, dirty = COMMIT, False

        def __init__(self, **options) -> None:
            self.options = {**OPTIONS, **options}

    assert part_of({"shard": "2/4"}) == (2, 4)
    assert part_of({"shard": None}) is None and part_of({"shard": "5/4"}) is None
    assert part_of({}) is None and run_key(Run(shard=None)) is None
    one = run_key(Run(shard="1/4", xdist_workers=2))
    assert one == run_key(Run(shard="3/4", xdist_workers=8))
    assert one != run_key(Run(shard="1/2")) and one != run_key(Run(shard="1/4", images=3))
    assert one != run_key(Run(shard="1/4", markexpr="quick"))


# ---- the shards' pytest-benchmark JSON, one file for github-action-benchmark -----------------


def test_merge_benchmark_json(tmp_path: Path) -> None:
    one = write_save(tmp_path / "1.json", SHARDS[0], "1/2", WHEN)
    two = write_save(tmp_path / "2.json", SHARDS[1], "2/2", WHEN + timedelta(minutes=5))
    merged = merge_benchmark_json([one, two])
    names = [b["name"] for b in merged["benchmarks"]]
    assert sorted(names) == sorted(ORDER) and len(names) == len(set(names))
    assert merged["machine_info"] == one["machine_info"] and "imgcomp" not in merged
    assert merged["datetime"] == two["datetime"] and merged["commit_info"]["id"] == COMMIT
    with pytest.raises(ValueError, match="timed in files 1 and 2"):
        merge_benchmark_json([one, one])
    other = write_save(tmp_path / "3.json", SHARDS[1], "2/2", commit="d" * 40)
    with pytest.raises(ValueError, match="different commits"):
        merge_benchmark_json([one, other])

    script = REPO / "scripts" / "merge_benchmark_json.py"
    out = tmp_path / "out" / "bench.json"
    run = subprocess.run(
        [sys.executable, str(script), str(out), str(tmp_path / "1.json"), str(tmp_path / "2.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["benchmarks"] == merged["benchmarks"]
    assert f"merged 2 files, {len(ORDER)} benchmarks" in run.stdout
    bad = subprocess.run(
        [sys.executable, str(script), str(out), str(tmp_path / "1.json"), str(tmp_path / "3.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "different commits" in bad.stderr


# ---- a real run: the classic codecs on one sample image, whole and in two shards --------------

REAL_CASES = ["--case", "jpeg-*", "--case", "webp-*"]
REAL = ["--dataset", "sample", "--images", "1", "--timing-images", "1", *REAL_CASES]
TIMING = ["--benchmark-min-rounds=1", "--benchmark-max-time=0.02"]


def run_bench(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "IMGCOMP_"))}
    env["IMGCOMP_CACHE_DIR"] = str(tmp / "cache")
    cmd = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "-n", "0", *REAL]
    return subprocess.run(
        [*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> dict:
    """The run whole (writing its baselines into an empty folder), then shard 1/2 updating
    baselines in a folder holding shard 2's only, then shard 2/2 gating against a folder
    holding its own cases' baselines only."""
    tmp = tmp_path_factory.mktemp("real")
    for folder in ("shard-1", "shard-2"):  # pytest-benchmark makes no folder for --benchmark-json
        (tmp / folder).mkdir()
    listed = run_bench(tmp, "--co", "-q", "--shard", "1/2")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    first = {line.split("[", 1)[1][:-1] for line in listed.stdout.splitlines() if "::" in line}

    whole = tmp / "whole"
    run = run_bench(
        tmp,
        *TIMING,
        "--baselines",
        str(tmp / "U"),
        "--update-baselines",
        f"--quality-json={whole / 'quality.json'}",
        f"--benchmark-json={tmp / 'whole-bench.json'}",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    made = _files(tmp / "U" / "sample")
    cases = set(json.loads((whole / "quality.json").read_text())["cases"])
    assert first and first < cases, (first, cases)
    second = cases - first
    own = {name for name in made if json.loads(made[name])["case"] in first}

    shard_dir = tmp / "S" / "sample"
    shard_dir.mkdir(parents=True)
    for name in set(made) - own:  # shard 2's baselines only
        (shard_dir / name).write_bytes(made[name])
    before = _files(shard_dir)
    one = run_bench(
        tmp,
        *TIMING,
        "--shard",
        "1/2",
        "--baselines",
        str(tmp / "S"),
        "--update-baselines",
        f"--quality-json={tmp / 'shard-1' / 'quality.json'}",
        f"--benchmark-json={tmp / 'shard-1' / 'bench.json'}",
    )
    assert one.returncode == 0, one.stdout + one.stderr

    gate_dir = tmp / "T" / "sample"
    gate_dir.mkdir(parents=True)
    for name in set(made) - own:
        (gate_dir / name).write_bytes(made[name])
    two = run_bench(
        tmp,
        *TIMING,
        "--shard",
        "2/2",
        "--baselines",
        str(tmp / "T"),
        f"--quality-json={tmp / 'shard-2' / 'quality.json'}",
        f"--benchmark-json={tmp / 'shard-2' / 'bench.json'}",
    )
    assert two.returncode == 0, two.stdout + two.stderr
    return {
        "tmp": tmp,
        "first": first,
        "second": second,
        "made": made,
        "own": own,
        "before": before,
        "after": _files(shard_dir),
        "outputs": (one.stdout, two.stdout),
    }


def test_real_shards_split_the_cases_and_record_the_shard(real_runs) -> None:
    tmp = real_runs["tmp"]
    for k, cases in ((1, real_runs["first"]), (2, real_runs["second"])):
        quality = json.loads((tmp / f"shard-{k}" / "quality.json").read_text())
        assert set(quality["cases"]) == cases and quality["options"]["shard"] == f"{k}/2"
        bench = json.loads((tmp / f"shard-{k}" / "bench.json").read_text())
        assert bench["imgcomp"]["options"]["shard"] == f"{k}/2"
        assert {b["param"] for b in bench["benchmarks"]} == cases
        assert f"imgcomp bench: shard {k}/2: {len(cases)} cases" in real_runs["outputs"][k - 1]
    whole = json.loads((tmp / "whole" / "quality.json").read_text())
    assert whole["options"]["shard"] is None


def test_update_baselines_in_a_shard_writes_only_its_cases(real_runs) -> None:
    """Shard 1 with --update-baselines: its cases' files written (as the whole run wrote them),
    shard 2's left byte for byte, none deleted; shard 2 gated against its own files alone."""
    before, after, made, own = (real_runs[k] for k in ("before", "after", "made", "own"))
    assert own and set(before) == set(made) - own
    assert set(after) == set(made)
    assert {n: after[n] for n in before} == before
    for name in own:
        assert json.loads(after[name])["images"] == json.loads(made[name])["images"]
    changes = json.loads((real_runs["tmp"] / "shard-1" / "quality.json").read_text())
    assert sorted(line.split()[0] for line in changes["baseline_changes"]) == sorted(
        real_runs["first"]
    )
    gated = json.loads((real_runs["tmp"] / "shard-2" / "quality.json").read_text())
    assert {c["baseline"]["gate"] for c in gated["cases"].values()} == {"ok"}


def _runs_normalised(data):
    """Report data with run labels (commit and minute) and latency numbers taken out: the
    timings of two real runs differ, their quality does not."""
    text = json.dumps(data, sort_keys=True, default=str)
    return re.sub(r"[0-9a-f]{7}\*? \d{4}-\d\d-\d\d \d\d:\d\d", "<run>", text)


def test_real_report_of_the_shards_equals_the_unsharded_one(real_runs) -> None:
    tmp = real_runs["tmp"]
    whole = build_report([tmp / "whole", tmp / "whole-bench.json"], tmp / "report-whole")
    parts = build_report([tmp / "shard-1", tmp / "shard-2"], tmp / "report-parts")
    quality = {k: v for k, v in report_data(parts)["figures"].items() if k.startswith("rd_")}
    expected = {k: v for k, v in report_data(whole)["figures"].items() if k.startswith("rd_")}
    assert quality and _runs_normalised(quality) == _runs_normalised(expected)
    w, p = whole.tables["quality"], parts.tables["quality"]
    assert p.header == w.header and len(p.rows) == 3
    # peak memory is measured, not computed: two real runs differ by a MiB or so
    measured = {i for i, h in enumerate(w.header) if h.endswith(" MiB")}
    assert [[c for i, c in enumerate(r) if i not in measured] for r in p.rows] == [
        [c for i, c in enumerate(r) if i not in measured] for r in w.rows
    ]
    assert len(parts.runs) == len(whole.runs) == 1
    assert [r[0] for r in parts.tables["latency"].rows] == [
        r[0] for r in whole.tables["latency"].rows
    ]
    assert sorted(n for n in parts.figures if n.startswith("latency:")) == sorted(
        n for n in whole.figures if n.startswith("latency:")
    )
