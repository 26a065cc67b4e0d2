"""The stream fuzz campaign CI runs (imgcomp.fuzz): mutants of the quick targets' streams, each
decoded in a worker under time and memory limits, must end in an image or a typed error.

``IMGCOMP_FUZZ_MUTANTS`` sets the mutants per target (default 200), ``IMGCOMP_FUZZ_SEED`` the
seed (default 0), ``IMGCOMP_FUZZ_OUT`` a folder to keep the reproducers in (default: tmp).
"""

from __future__ import annotations

import os

from imgcomp.fuzz import FAILURES, default_targets, fuzz_image, run_campaign


def test_the_quick_campaign_finds_no_foreign_errors_timeouts_or_crashes(tmp_path) -> None:
    mutants = int(os.environ.get("IMGCOMP_FUZZ_MUTANTS", "200"))
    seed = int(os.environ.get("IMGCOMP_FUZZ_SEED", "0"))
    out = os.environ.get("IMGCOMP_FUZZ_OUT") or tmp_path
    targets = default_targets(fuzz_image(), quick=True)
    assert {t.label.rsplit(":", 1)[0] for t in targets} >= {
        "mbt2018-mean-q3",
        "bmshj2018-factorized-q3",
        "toderici2017-i3",
        "hific",
        "mbt2018-mean-q3+int8",
    }
    report = run_campaign(targets, mutants, seed=seed, out_dir=out, progress=True)
    print(report.table())
    bad = {
        t.label: {o: t.counts[o] for o in FAILURES if t.counts[o]}
        for t in report.targets
        if any(t.counts[o] for o in FAILURES)
    }
    examples = "\n".join(
        f"  {r.target} #{r.index} {r.outcome}: {r.description} -> {r.error} at {r.where}"
        for r in report.failures()[:25]
    )
    assert report.ok, (
        f"decodes that neither gave an image nor a typed error: {bad}\n"
        f"{report.table()}\nexamples:\n{examples}\nreproducers in {out}"
    )
    for t in report.targets:
        if t.decode == "codec":
            assert t.baseline.outcome == "image", (t.label, t.baseline)
