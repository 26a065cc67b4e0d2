"""Fixtures of the benchmark suite: the images, the case matrix, cached runs and baselines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.cases import Case, all_cases, learned_cases
from imgcomp.baselines import BaselineStore
from imgcomp.data import load_dataset
from imgcomp.evaluate import ImageResult, evaluate

REPO = Path(__file__).resolve().parent.parent
_SUMMARY: dict[str, dict] = {}
_CHANGES: list[str] = []
_SPEEDUPS: dict[str, dict] = {}
_PRECISION: list[dict] = []
_STEADY = pytest.StashKey[bool]()


def _params(cases: list[Case]) -> list:
    params = []
    for case in cases:
        marks = [pytest.mark.quick] if case.quick else []
        marks += [pytest.mark.slow] if case.slow else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``case``: every case of the matrix; ``learned_case``: those of learned codecs (plain and
    with compression ops)."""
    matrix = metafunc.config.getoption("--matrix")
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", _params(all_cases(matrix)))
    if "learned_case" in metafunc.fixturenames:
        from bench.matrix import op_cases

        learned = learned_cases()
        metafunc.parametrize("learned_case", _params(learned + op_cases(learned, matrix)))


def pytest_configure(config: pytest.Config) -> None:
    """Pin glibc's malloc thresholds so timings do not drift with test order (see
    :func:`imgcomp.timing.steady_allocator`)."""
    from imgcomp.timing import steady_allocator

    config.stash[_STEADY] = steady_allocator()


def pytest_report_header(config: pytest.Config) -> str:
    steady = config.stash.get(_STEADY, False)
    return "imgcomp: malloc thresholds " + ("pinned (steady timings)" if steady else "default")


def dataset_key(spec: str) -> str:
    """Baseline directory name of a dataset spec: kodak, sample or folder-<name>."""
    if spec.startswith("folder:"):
        return "folder-" + re.sub(r"[^A-Za-z0-9._-]", "_", Path(spec[7:]).expanduser().name)
    return spec


@pytest.fixture(scope="session")
def bench_images(pytestconfig: pytest.Config) -> list[tuple[str, object]]:
    """(name, uint8 HxWx3) pairs of the selected dataset, first --images N of them."""
    spec = pytestconfig.getoption("--dataset")
    dataset = load_dataset(spec)
    n = pytestconfig.getoption("--images")
    if n is not None:
        dataset = dataset.subset(n)
    return [(item.name, item.load()) for item in dataset]


@pytest.fixture(scope="session")
def baseline_store(pytestconfig: pytest.Config) -> BaselineStore:
    root = pytestconfig.getoption("--baselines") or REPO / "fixtures" / "baselines"
    return BaselineStore(root, dataset_key(pytestconfig.getoption("--dataset")))


@pytest.fixture(scope="session")
def codec_for(pytestconfig: pytest.Config):
    """Build each case's codec once per worker, on the --device chosen."""
    device = pytestconfig.getoption("--device")
    cache: dict[str, object] = {}

    def get(case: Case):
        if case.id not in cache:
            cache[case.id] = case.build(device)
        return cache[case.id]

    return get


@pytest.fixture(scope="session")
def case_results(codec_for, bench_images):
    """Run a case over the images once per worker (round trip verified), cached by case id."""
    cache: dict[str, list[ImageResult]] = {}

    def get(case: Case) -> list[ImageResult]:
        if case.id not in cache:
            cache[case.id] = evaluate(codec_for(case), bench_images, verify=True)
        return cache[case.id]

    return get


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect per-case summaries and baseline changes (also from xdist workers)."""
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key == "imgcomp_summary":
            _SUMMARY[value["case"]] = value
        elif key == "imgcomp_baseline_changes":
            _CHANGES.extend(value)
        elif key == "imgcomp_speedup":
            _SPEEDUPS[value["op"]] = value
        elif key == "imgcomp_precision":
            _PRECISION.append(value)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _SUMMARY:
        tr = terminalreporter
        tr.section("imgcomp quality (means over images)")
        width = max(40, *(len(c) + 2 for c in _SUMMARY))
        head = f"{'case':<{width}}{'n':>4}{'bpp':>9}{'PSNR':>8}{'SSIM':>8}{'MS-SSIM':>9}"
        head += f"{'base SSIM':>11}{'base bpp':>10}  gate"
        tr.write_line(head)
        for case_id in sorted(_SUMMARY):
            s = _SUMMARY[case_id]
            base_ssim = f"{s['baseline_ssim']:.4f}" if s.get("baseline_ssim") is not None else "-"
            base_bpp = f"{s['baseline_bpp']:.4f}" if s.get("baseline_bpp") is not None else "-"
            tr.write_line(
                f"{case_id:<{width}}{s['images']:>4}{s['bpp']:>9.4f}{s['psnr']:>8.2f}"
                f"{s['ssim']:>8.4f}{s['ms_ssim']:>9.4f}{base_ssim:>11}{base_bpp:>10}  {s['gate']}"
            )
    if any("/prune=" in case_id for case_id in _SUMMARY):
        _write_study_tables(terminalreporter)
    if _SPEEDUPS:
        _write_speedups(terminalreporter)
    for study in _PRECISION:
        _write_precision(terminalreporter, study)
    if _CHANGES:
        terminalreporter.section("imgcomp baseline changes")
        for line in _CHANGES:
            terminalreporter.write_line(line)


def _write_study_tables(tr) -> None:
    """The op-matrix cases as the study's table, one per base case (family) they derive from."""
    from imgcomp.study import EXTENDED_GRID, format_study_table, parse_case_id, row_from_summary

    parsed = {}
    for case_id, summary in _SUMMARY.items():
        try:
            parsed[case_id] = (*parse_case_id(case_id), summary)
        except ValueError:
            continue  # not an op case id this table understands
    families = {parsed[c][0] for c in parsed if "/prune=" in c}
    order = {config.label: i for i, config in enumerate(EXTENDED_GRID)}
    tr.section("imgcomp study table (times from the quality pass; noisy under xdist)")
    for family in sorted(families):
        entries = sorted(
            [
                (order.get(config.label, len(order)), config.label, config, summary)
                for fam, config, summary in parsed.values()
                if fam == family
            ],
            key=lambda e: e[:2],
        )
        rows = [row_from_summary(config, summary) for *_, config, summary in entries]
        tr.write_line(f"{family} ({rows[0].images} images; decode speedup vs the unmodified model)")
        tr.write_line(format_study_table(rows))


def _write_speedups(tr) -> None:
    """Decode-latency ratios of bench/test_speedups.py against the issue's targets."""
    tr.section("imgcomp speed-ups (interleaved, vs the unpruned float32 model)")
    tr.write_line(
        f"{'op':<12}{'images':>7}{'decode ms':>11}{'float32 ms':>12}{'ratio':>7}{'min':>7}"
        f"{'encode':>8}{'target':>8}{'gate':>6}  verdict"
    )
    for op, s in _SPEEDUPS.items():
        verdict = "meets target" if s["decode_ratio"] <= s["target"] else "MISSES target"
        tr.write_line(
            f"{op:<12}{s['images']:>7}{s['decode_ms']:>11.1f}{s['float32_decode_ms']:>12.1f}"
            f"{s['decode_ratio']:>7.2f}{s['decode_min_ratio']:>7.2f}{s['encode_ratio']:>8.2f}"
            f"{s['target']:>8.2f}{s['gate']:>6.2f}  {verdict}"
        )


def _write_precision(tr, study: dict) -> None:
    """SSIM vs weight bits of bench/test_precision.py."""
    tr.section(f"imgcomp precision study: {study['case']}, weights at K bits")
    tr.write_line(f"{'weights':<9}{'images':>7}{'SSIM':>8}{'PSNR':>8}{'bpp':>8}")
    for name, r in study["rows"].items():
        tr.write_line(
            f"{name:<9}{r['images']:>7}{r['ssim']:>8.4f}{r['psnr']:>8.2f}{r['bpp']:>8.4f}"
        )
