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


def _params(cases: list[Case]) -> list:
    params = []
    for case in cases:
        marks = [pytest.mark.quick] if case.quick else []
        marks += [pytest.mark.slow] if case.slow else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``case``: every case of the matrix; ``learned_case``: those of learned codecs."""
    if "case" in metafunc.fixturenames:
        matrix = metafunc.config.getoption("--matrix")
        metafunc.parametrize("case", _params(all_cases(matrix)))
    if "learned_case" in metafunc.fixturenames:
        metafunc.parametrize("learned_case", _params(learned_cases()))


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
    if _CHANGES:
        terminalreporter.section("imgcomp baseline changes")
        for line in _CHANGES:
            terminalreporter.write_line(line)
