"""Quality gate: every case, every image, through real bytes, against its committed baseline."""

from __future__ import annotations

import pytest

from bench.cases import Case
from imgcomp.baselines import BaselineError
from imgcomp.evaluate import summarize


@pytest.mark.quality
def test_quality(case: Case, case_results, baseline_store, pytestconfig, record_property) -> None:
    results = case_results(case)
    summary = {"case": case.id, "images": len(results), **summarize(results)}
    if pytestconfig.getoption("--update-baselines"):
        try:
            changes = baseline_store.update(
                case.id,
                results,
                case.tolerance,
                allow_lower=pytestconfig.getoption("--accept-lower-baselines"),
            )
        except BaselineError as exc:
            record_property("imgcomp_summary", {**summary, "gate": "REFUSED"})
            pytest.fail(str(exc), pytrace=False)
        record_property("imgcomp_baseline_changes", changes)
    try:
        outcome = baseline_store.check(case.id, results)
    except BaselineError as exc:
        record_property("imgcomp_summary", {**summary, "gate": "NO BASELINE"})
        pytest.fail(str(exc), pytrace=False)
    summary.update(baseline_ssim=outcome.baseline_ssim, baseline_bpp=outcome.baseline_bpp)
    record_property("imgcomp_summary", {**summary, "gate": "ok" if outcome.passed else "FAIL"})
    if not outcome.passed:
        pytest.fail(f"{case.id}: " + "; ".join(outcome.failures), pytrace=False)
