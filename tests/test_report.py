"""``imgcomp report`` and the suite's quality JSON: synthetic inputs of every kind (modelled on
real files; the pytest-benchmark save is a trimmed real one), read back from the Report, the
SVGs and the page. No benchmark run."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import quality_json
from imgcomp.cli import main
from imgcomp.errors import ImgcompError
from imgcomp.report import ReportWarning, build_report

FIXTURES = Path(__file__).parent / "fixtures" / "report"
BENCH_SAVE = FIXTURES / "0001_benchmark_jpeg.json"
SVG = "{http://www.w3.org/2000/svg}"
WHEN = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
MACHINE = {"cpu": "Test CPU", "threads": 1, "torch": "2.13.0+cpu"}
BASE = "mbt2018-mean-q3"
L1 = f"{BASE}/prune=enc0.3,dec0.3,ent0.3:l1/quant=none"
INT8 = f"{BASE}/prune=none/quant=int8"
RNN_OP = "toderici2017-i3/prune=enc0.3,bin0,dec0.3:l1/quant=none"


# ---- synthetic inputs, one writer per kind --------------------------------------------------


def summary(case_id: str, bpp: float, ssim: float, decode_s: float = 0.05, **extra) -> dict:
    """A case summary as bench/test_quality.py records it (means, baseline, gate)."""
    return {
        "case": case_id,
        "images": 2,
        "bpp": bpp,
        "bytes": bpp * 768 * 512 / 8,
        "psnr": 20 + 10 * ssim,
        "ssim": ssim,
        "ms_ssim": min(1.0, ssim + 0.05),
        "encode_s": 0.04,
        "decode_s": decode_s,
        "baseline_ssim": ssim,
        "baseline_bpp": bpp,
        "gate": "ok",
        **extra,
    }


def per_image(s: dict) -> list[dict]:
    keys = ("bytes", "bpp", "psnr", "ssim", "ms_ssim", "encode_s", "decode_s")
    return [
        {"image": f"kodim0{i}", "height": 512, "width": 768, **{k: s[k] for k in keys}}
        for i in (1, 2)
    ]


def write_quality(path: Path, summaries: list[dict], when: datetime = WHEN) -> Path:
    """A quality results file as the suite writes it (bench.quality_json)."""
    by_id = {s["case"]: s for s in summaries}
    data = quality_json.payload(
        by_id,
        {cid: per_image(s) for cid, s in by_id.items()},
        {"matrix": "default", "dataset": "kodak", "images": 2},
        when=when,
        commit={"id": "a" * 40, "short": "aaaaaaa", "dirty": False},
        machine=MACHINE,
    )
    return quality_json.write(path, data)


def write_eval(path: Path, codec: str, params: dict, bpp: float, ssim: float) -> Path:
    """An ``imgcomp eval --json`` file (the CLI's payload)."""
    mean = {"bpp": bpp, "bytes": bpp * 49152, "psnr": 20 + 10 * ssim, "ssim": ssim}
    mean |= {"ms_ssim": ssim + 0.05, "encode_s": 0.01, "decode_s": 0.01}
    image = {"image": "kodim01", "height": 512, "width": 768, **mean}
    payload = {"codec": codec, "params": params, "ops": [], "dataset": "kodak"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**payload, "mean": mean, "images": [image]}, indent=1))
    return path


def study_row(
    label: str,
    ratios: tuple,
    method: str,
    quant,
    decode_s: float,
    ssim: float,
    size: int,
    rounds: list[float],
) -> dict:
    """One row as imgcomp.study.rows_to_json writes it (field order included)."""
    enc, dec, ent = ratios
    return {
        "label": label,
        "encoder": enc,
        "decoder": dec,
        "entropy": ent,
        "method": method,
        "quant": quant,
        "images": 2,
        "total_inference_s": 1.0 + decode_s,
        "encode_s": 1.0,
        "decode_s": decode_s,
        "ssim": ssim,
        "psnr": 28.0,
        "bpp": 0.3,
        "avg_bytes": 14745.6,
        "parameters": 5_000_000,
        "nonzero_parameters": 4_000_000,
        "serialized_bytes": size,
        "macs": 10**9,
        "encode_rounds": [1.0, 1.0],
        "decode_rounds": rounds,
    }


STUDY_ROWS = [
    study_row("prune=none/quant=none", (0, 0, 0), "-", None, 0.50, 0.760, 20_000_000, [0.5, 0.5]),
    study_row(
        "prune=enc0,dec0.3,ent0:l1/quant=none",
        (0, 0.3, 0),
        "l1",
        None,
        0.40,
        0.750,
        20_000_000,
        [0.4, 0.5],
    ),
    study_row(
        "prune=none/quant=int8", (0, 0, 0), "-", "int8", 0.25, 0.755, 5_000_000, [0.25, 0.25]
    ),
]


def write_study(path: Path, rows: list[dict] = STUDY_ROWS) -> Path:
    """An ``imgcomp study --json`` file (the CLI's payload)."""
    payload = {
        "codec": "mean-scale-hyperprior",
        "params": {"quality": 3},
        "dataset": "kodak",
        "grid": "extended",
        "repeats": 2,
        "timing": "median of interleaved rounds (imgcomp.timing.time_side_by_side)",
        "threads": 1,
        "images": ["kodim01", "kodim02"],
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    return path


def bench_entry(template: dict, direction: str, case_id: str, median: float, **extra) -> dict:
    """A pytest-benchmark entry of the suite's latency test of ``case_id`` (from the real one),
    grouped as the suite groups it: by the case's family and direction (an op case's family is
    its base case: ``mbt2018-mean-q3 decode``; a learned base's is its codec)."""
    entry = copy.deepcopy(template)
    name = f"test_{direction}_latency[{case_id}]"
    entry.update(name=name, fullname=f"bench/test_latency.py::{name}", param=case_id)
    base, _, ops = case_id.partition("/")
    entry["group"] = f"{base if ops else base.rsplit('-', 1)[0]} {direction}"
    entry["extra_info"] = {**entry["extra_info"], "case": case_id, **extra}
    stats = entry["stats"]
    scale = median / stats["median"]
    for key in ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr"):
        stats[key] *= scale
    return entry


def write_bench_save(
    path: Path, when: datetime, commit: str, scale: float = 1.0, learned: bool = True
) -> dict:
    """A pytest-benchmark save: the trimmed real jpeg one (timings times ``scale``) plus, with
    ``learned``, decode timings of the learned base and two op cases."""
    data = json.loads(BENCH_SAVE.read_text())
    data["datetime"] = when.isoformat()
    data["commit_info"]["id"] = commit
    jpeg = data["benchmarks"]
    template = next(b for b in jpeg if b["name"].startswith("test_decode_latency"))
    data["benchmarks"] = [
        bench_entry(b, b["name"][5:11], "jpeg-q75", b["stats"]["median"] * scale) for b in jpeg
    ]
    if learned:
        size = {"serialized_bytes": 20_000_000, "nonzero_parameters": 4_000_000}
        data["benchmarks"] += [
            bench_entry(template, "decode", BASE, 0.200, ssim=0.760, **size),
            bench_entry(template, "decode", L1, 0.180, ssim=0.740, **size),
            bench_entry(template, "decode", INT8, 0.100, ssim=0.757, serialized_bytes=5_000_000),
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return data


def write_rate_curve(path: Path) -> Path:
    """An ``imgcomp study --rate-curve 2 --json`` file."""
    rows = [
        {"iterations": k, "images": 1, "bytes": 100.0 * k, "bpp": 0.125 * k, "ssim": 0.6 + 0.1 * k}
        | {"psnr": 24.0 + k, "ms_ssim": float("nan") if k == 1 else 0.9}
        for k in (1, 2)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder of every kind: two quality runs (the later one re-measures jpeg-q75), eval
    files (one of the learned model by its registry name), a study, a rate curve, a save."""
    root = tmp_path_factory.mktemp("inputs")
    old = [summary("jpeg-q75", 1.3, 0.90)]
    write_quality(root / "quality" / "old.json", old, WHEN - timedelta(days=1))
    write_quality(
        root / "quality" / "new.json",
        [
            summary("jpeg-q75", 1.2, 0.93),
            summary("jpeg-q10", 0.25, 0.70),
            summary(BASE, 0.30, 0.760, decode_s=0.2),
            summary(L1, 0.29, 0.740, decode_s=0.18),
            summary(INT8, 0.30, 0.757, decode_s=0.1),
            summary("toderici2017-i3", 0.37, 0.70, decode_s=0.3),
            summary(RNN_OP, 0.37, 0.68, decode_s=0.2),
        ],
    )
    write_eval(root / "eval" / "webp.json", "webp", {"quality": 75}, 0.9, 0.91)
    write_eval(root / "eval" / "msh-q2.json", "mean-scale-hyperprior", {"quality": 2}, 0.2, 0.72)
    write_study(root / "study.json")
    write_rate_curve(root / "rnn-curve.json")
    write_bench_save(root / "bench" / "Linux" / "0001_run.json", WHEN, "b" * 40)
    return root


@pytest.fixture(scope="module")
def report(inputs: Path, tmp_path_factory):
    return build_report([inputs], tmp_path_factory.mktemp("report"))


def svg_points(figure) -> dict[str, int]:
    """Markers drawn per series in the figure's SVG (``<use>`` elements in its group)."""
    tree = ET.parse(figure.svg)
    groups = {g.get("id"): g for g in tree.iter(f"{SVG}g")}
    return {name: len(list(groups[gid].iter(f"{SVG}use"))) for name, gid in figure.gids.items()}


def svg_text(figure) -> str:
    return " ".join("".join(t.itertext()) for t in ET.parse(figure.svg).iter(f"{SVG}text"))


# ---- the suite's quality JSON ---------------------------------------------------------------


def test_quality_json_holds_cases_machine_commit_options(tmp_path: Path) -> None:
    s = summary(INT8, 0.3, 0.757)
    path = write_quality(tmp_path / "q.json", [s])
    data = json.loads(path.read_text())
    assert data["format"] == "imgcomp-quality" and data["machine_info"] == MACHINE
    assert data["commit_info"]["short"] == "aaaaaaa" and data["datetime"] == WHEN.isoformat()
    assert data["options"]["dataset"] == "kodak"
    case = data["cases"][INT8]
    assert case["codec"] == "mbt2018-mean" and case["base"] == BASE and case["setting"] == "q3"
    assert case["ops"] == "prune=none/quant=int8" and case["quant"] == "int8"
    assert case["mean"]["ms_ssim"] == s["ms_ssim"] and len(case["per_image"]) == 2
    assert case["baseline"] == {"ssim": 0.757, "bpp": 0.3, "gate": "ok"}
    assert quality_json.case_fields("hific")["setting"] is None
    path = quality_json.default_path(tmp_path, WHEN, {"short": None})
    assert path == tmp_path / ".benchmarks" / "imgcomp-quality" / "20261201T100000Z_nocommit.json"


class _Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str, **_) -> None:
        self.lines.append(f"== {title}")

    def write_line(self, line: str, **_) -> None:
        self.lines.append(line)


def test_the_suite_writes_the_quality_json_at_its_end(tmp_path: Path, monkeypatch) -> None:
    """pytest_terminal_summary: the quality table as before, then the file (default path under
    the invocation folder; an explicit one; '' off; nothing on an xdist worker)."""
    from bench import conftest as bench_conftest

    s = summary("jpeg-q75", 1.2, 0.93)
    monkeypatch.setattr(bench_conftest, "_SUMMARY", {"jpeg-q75": s})
    monkeypatch.setattr(bench_conftest, "_PER_IMAGE", {"jpeg-q75": per_image(s)})
    monkeypatch.setattr(quality_json, "machine_info", lambda: MACHINE)

    def run(option, worker: bool = False) -> list[str]:
        values = {"--quality-json": option, "--images": 2, "--case": []}
        config = SimpleNamespace(
            getoption=lambda name, default=None: values.get(name, "x"),
            invocation_params=SimpleNamespace(dir=tmp_path),
        )
        if worker:
            config.workerinput = {}
        tr = _Reporter()
        bench_conftest.pytest_terminal_summary(tr, 0, config)
        return tr.lines

    lines = run(None)
    assert lines[0] == "== imgcomp quality (means over images)" and "jpeg-q75" in lines[2]
    (written,) = (tmp_path / ".benchmarks" / "imgcomp-quality").glob("*.json")
    assert lines[-1] == f"imgcomp: quality results written to {written}"
    case = json.loads(written.read_text())["cases"]["jpeg-q75"]
    assert case["mean"]["ssim"] == 0.93 and case["per_image"][0]["image"] == "kodim01"
    assert run("sub/q.json")[-1].endswith(str(tmp_path / "sub" / "q.json"))
    assert (tmp_path / "sub" / "q.json").is_file()
    assert "written" not in run("")[-1] and "written" not in run(None, worker=True)[-1]
    assert len(list((tmp_path / ".benchmarks" / "imgcomp-quality").glob("*.json"))) == 1


# ---- the report -----------------------------------------------------------------------------


def test_reads_every_kind(report) -> None:
    kinds = sorted(kind for _, kind in report.files)
    assert kinds == ["benchmark", "eval", "eval", "quality", "quality", "rate_curve", "study"]
    assert report.index.is_file() and not report.skipped


def test_rd_curves_plot_the_latest_means(report) -> None:
    """One series per codec: quality cases and eval files of the same model meet under the
    case ids' name; a re-measured setting shows its latest value; MS-SSIM NaN is left out."""
    ssim = report.figures["rd_ssim"].series
    assert ssim["jpeg"] == [(0.25, 0.70), (1.2, 0.93)]  # 1.3 / 0.90: the older run's
    assert ssim["mbt2018-mean"] == [(0.2, 0.72), (0.30, 0.760)]  # eval q2, quality q3
    assert ssim["webp"] == [(0.9, 0.91)]
    assert ssim["rnn-curve (rate curve)"] == [(0.125, 0.7), (0.25, 0.8)]
    assert not any("[" in name for name in ssim)  # op cases: in rd_ops:<codec>
    ops = report.figures["rd_ops:mbt2018-mean"]
    assert ops.series == {
        "mbt2018-mean": [(0.2, 0.72), (0.30, 0.760)],
        "mbt2018-mean [prune=enc0.3,dec0.3,ent0.3:l1/quant=none]": [(0.29, 0.740)],
        "mbt2018-mean [prune=none/quant=int8]": [(0.30, 0.757)],
    }
    assert ops.dotted == set(ops.series) - {"mbt2018-mean"}
    assert "toderici2017 [prune=enc0.3,bin0,dec0.3:l1/quant=none]" in (
        report.figures["rd_ops:toderici2017"].series
    )
    assert report.figures["rd_ssim"].labels["mbt2018-mean"] == ["q2", "q3"]
    assert report.figures["rd_psnr"].series["jpeg"][1] == (1.2, pytest.approx(29.3))
    assert report.figures["rd_ms_ssim"].series["rnn-curve (rate curve)"] == [(0.25, 0.9)]
    for name in ("rd_psnr", "rd_ssim", "rd_ms_ssim", "rd_ops:mbt2018-mean"):
        figure = report.figures[name]
        assert svg_points(figure) == {k: len(v) for k, v in figure.series.items()}
        assert "bits per pixel" in svg_text(figure) and figure.png.stat().st_size > 0
    assert "MS-SSIM" in svg_text(report.figures["rd_ms_ssim"])


def test_frontier_pairs_ops_with_their_base(report) -> None:
    """Study rows against their unmodified row; a save's op timings against its base's; the
    quality pass only for a base no save timed (the RNN)."""
    speed = report.figures[f"frontier_speed:{BASE}"]
    run_label = "bbbbbbb 2026-12-01 10:00"
    assert set(speed.series) == {"study study.json", f"benchmark {run_label}"}
    study = speed.series["study study.json"]
    assert study == [(pytest.approx(0.010), pytest.approx(1.25)), (pytest.approx(0.005), 2.0)]
    assert speed.labels["study study.json"] == [
        "prune=enc0,dec0.3,ent0:l1/quant=none",
        "prune=none/quant=int8",
    ]
    timed = dict(
        zip(
            speed.labels[f"benchmark {run_label}"],
            speed.series[f"benchmark {run_label}"],
            strict=True,
        )
    )
    assert timed["prune=none/quant=int8"] == (pytest.approx(0.003), pytest.approx(2.0))
    assert timed["prune=enc0.3,dec0.3,ent0.3:l1/quant=none"] == (
        pytest.approx(0.020),
        pytest.approx(0.2 / 0.18),
    )
    size = report.figures[f"frontier_size:{BASE}"]
    assert size.series["study study.json"] == [
        (pytest.approx(0.01), 2e7),
        (pytest.approx(0.005), 5e6),
    ]
    assert size.reference == (0.0, 2e7)
    nonzero = report.figures[f"frontier_nonzero:{BASE}"]
    timed_nonzero = dict(
        zip(
            nonzero.labels[f"benchmark {run_label}"],
            nonzero.series[f"benchmark {run_label}"],
            strict=True,
        )
    )
    assert timed_nonzero == {"prune=enc0.3,dec0.3,ent0.3:l1/quant=none": (pytest.approx(0.02), 4e6)}
    rnn = report.figures["frontier_speed:toderici2017-i3"].series
    assert list(rnn) == ["quality pass aaaaaaa 2026-12-01 10:00"]
    assert rnn["quality pass aaaaaaa 2026-12-01 10:00"] == [
        (pytest.approx(0.02), pytest.approx(1.5))
    ]
    assert "frontier_size:toderici2017-i3" not in report.figures  # the quality pass has no sizes
    for figure in (speed, size, nonzero):
        assert svg_points(figure) == {k: len(v) for k, v in figure.series.items()}
        assert "SSIM drop" in svg_text(figure)
    rows = report.tables[f"frontier:{BASE}"].rows
    int8 = [r for r in rows if r[0] == "study study.json" and r[1] == "prune=none/quant=int8"]
    (row,) = int8
    assert row[2:] == ["0.7550", "+0.0050", "2.00x", "5.000", "4.000M", "*"]


def test_a_study_and_a_save_of_one_model_meet_under_its_case_id(tmp_path: Path) -> None:
    """The study names the model by its registry name (mean-scale-hyperprior, quality 3), the
    save by the case id (mbt2018-mean-q3): one base, both sources, the case ids' spelling."""
    write_study(tmp_path / "in" / "study.json")
    write_bench_save(tmp_path / "in" / "0001_x.json", WHEN, "f" * 40)
    report = build_report([tmp_path / "in"], tmp_path / "out")
    frontier = [name for name in report.figures if name.startswith("frontier_speed:")]
    assert frontier == [f"frontier_speed:{BASE}"]
    sources = report.figures[frontier[0]].series
    assert sorted(sources) == ["benchmark fffffff 2026-12-01 10:00", "study study.json"]


def test_study_table_as_the_study_prints_it(report) -> None:
    table = report.tables["study:study.json"]
    assert table.header[:3] == [
        "Encoder pruning ratio",
        "Decoder pruning ratio",
        "Probability model pruning ratio",
    ]
    assert table.header[-2:] == ["Decode speedup", "Non-zero params"]
    assert table.rows[1][:5] == ["0", "0.3", "0", "l1", "-"]
    assert table.rows[1][5] == "00:00:01.40" and table.rows[1][-2] == "1.25x (1.00-1.25)"
    assert table.rows[2][-2] == "2.00x (2.00-2.00)" and "mean-scale-hyperprior" in table.title
    page = report.index.read_text()
    assert "Probability model pruning ratio" in page and "1.25x (1.00-1.25)" in page


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.add(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_page_references_only_files_it_wrote(report) -> None:
    parser = _Refs()
    parser.feed(report.index.read_text())
    files = [r for r in parser.refs if not r.startswith("#")]
    assert files and "script" not in parser.tags
    assert all("://" not in r and not r.startswith("/") for r in files), files
    assert all((report.out_dir / r).is_file() for r in files), files
    anchors = [r[1:] for r in parser.refs if r.startswith("#")]
    assert all(f'id="{a}"' in report.index.read_text() for a in anchors)
    figures = {p.name for f in report.figures.values() for p in (f.svg, f.png)}
    assert figures == {Path(r).name for r in files}


def test_latency_history_of_two_runs_in_date_order(tmp_path: Path) -> None:
    """Two saves, the later one's file name first: runs by date, each benchmark's medians in
    that order, the change between them in the table."""
    first = write_bench_save(tmp_path / "b" / "0002_x.json", WHEN, "c" * 40, learned=False)
    write_bench_save(
        tmp_path / "a" / "0001_x.json", WHEN + timedelta(hours=5), "d" * 40, 1.1, False
    )
    report = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert [r.commit for r in report.runs] == ["c" * 40, "d" * 40]
    figure = report.figures["latency:jpeg decode"]
    stats = next(b["stats"] for b in first["benchmarks"] if b["name"].startswith("test_decode"))
    (points,) = figure.series.values()
    assert points[0] == (0.0, stats["median"], stats["q1"], stats["q3"])
    assert points[1][0] == 1.0 and points[1][1] == pytest.approx(1.1 * stats["median"])
    assert figure.xticks == ["ccccccc 2026-12-01 10:00", "ddddddd 2026-12-01 15:00"]
    assert svg_points(figure) == {"test_decode_latency[jpeg-q75]": 2}
    text = svg_text(figure)
    assert "ccccccc 2026-12-01 10:00" in text and text.index("ccccccc") < text.index("ddddddd")
    table = report.tables["latency"]
    assert table.header[1:3] == [
        "run 0: ccccccc 2026-12-01 10:00",
        "run 1: ddddddd 2026-12-01 15:00",
    ]
    row = next(r for r in table.rows if r[0] == "test_decode_latency[jpeg-q75]")
    assert row[1] == f"{1e3 * stats['median']:.3f}" and row[3] == "+10.0% (run 0 -> 1)"
    page = report.index.read_text()
    assert "+10.0% (run 0 -&gt; 1)" in page and page.index("ccccccc") < page.index("ddddddd")


def test_unknown_json_is_skipped_with_a_warning(tmp_path: Path) -> None:
    write_eval(tmp_path / "in" / "jpeg.json", "jpeg", {"quality": 50}, 0.8, 0.88)
    (tmp_path / "in" / "other.json").write_text('{"hello": "world"}')
    (tmp_path / "in" / "broken.json").write_text("{not json")
    with pytest.warns(ReportWarning) as caught:
        report = build_report([tmp_path / "in"], tmp_path / "out")
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2 and "broken.json: skipped" in messages[0]
    assert messages[1].endswith(
        "other.json: skipped: not a file of a kind the report reads "
        "(benchmark, quality, eval, study, rate_curve)"
    )
    assert sorted(p.name for p, _ in report.skipped) == ["broken.json", "other.json"]
    assert [p.name for p, _ in report.files] == ["jpeg.json"]
    assert report.figures["rd_ssim"].series == {"jpeg": [(0.8, 0.88)]}
    assert "other.json" in report.index.read_text()
    with pytest.warns(ReportWarning), pytest.raises(ImgcompError, match="no report input"):
        build_report([tmp_path / "in" / "other.json"], tmp_path / "out2")
    with pytest.raises(ImgcompError, match="no such file"):
        build_report([tmp_path / "nope"], tmp_path / "out3")


def test_cli_report(tmp_path: Path, monkeypatch, capsys) -> None:
    """``imgcomp report INPUT... --out DIR``, and ``.benchmarks`` when no input is given."""
    write_bench_save(tmp_path / ".benchmarks" / "Linux" / "0001_x.json", WHEN, "e" * 40)
    write_study(tmp_path / "study.json")
    (tmp_path / "junk.json").write_text("[1, 2]")
    out = tmp_path / "r1"
    assert (
        main(
            ["report", str(tmp_path / "study.json"), str(tmp_path / "junk.json"), "--out", str(out)]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        "read 1 files (1 study)" in captured.out and f"wrote {out / 'index.html'}" in captured.out
    )
    assert "warning:" in captured.err and "junk.json" in captured.err
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--out", "r2"]) == 0
    assert "read 1 files (1 benchmark) from .benchmarks" in capsys.readouterr().out
    assert (tmp_path / "r2" / "index.html").is_file()
    assert main(["report", "missing", "--out", "r3"]) == 2
    assert "no such file or folder: missing" in capsys.readouterr().err
    monkeypatch.chdir(out)
    assert main(["report", "--out", "r4"]) == 2
    assert "no .benchmarks folder here" in capsys.readouterr().err
