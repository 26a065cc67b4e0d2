"""``imgcomp report``: one HTML page of what the benchmark runs and the CLI measured.

    from imgcomp.report import build_report
    report = build_report([Path(".benchmarks"), Path("study.json")], Path("out/report"))
    report.index                                # out/report/index.html
    report.figures["rd_ssim"].series            # {codec: [(bpp, ssim), ...]}

Inputs (any mix, recognised by content; folders searched for ``*.json``): pytest-benchmark saves,
the suite's quality results (``pytest bench --quality-json``), ``imgcomp eval --json`` and
``imgcomp study --json`` files. The page shows rate-distortion curves per codec, each learned
codec's op frontier (decode speed-up and model size against SSIM drop), the latency history
across saved runs (with the change between the last two), the study tables and the visual
comparison (the suite's crops of one image under each codec and op, at about equal bpp).
``build_report(..., benchmark_action=DIR)`` also writes the newest quality run for
github-action-benchmark. Modules: :mod:`~imgcomp.report.load` (reading),
:mod:`~imgcomp.report.data` (what is plotted), :mod:`~imgcomp.report.figures`,
:mod:`~imgcomp.report.crops`, :mod:`~imgcomp.report.tables`, :mod:`~imgcomp.report.history`,
:mod:`~imgcomp.report.html`, :mod:`~imgcomp.report.build`; :mod:`~imgcomp.report.merge` joins the
parts of a sharded run (``pytest bench --shard K/N``) into one.
"""

from imgcomp.report.build import Report, build_report
from imgcomp.report.figures import Figure
from imgcomp.report.load import Inputs, ReportWarning, load_inputs
from imgcomp.report.tables import Table

__all__ = ["Figure", "Inputs", "Report", "ReportWarning", "Table", "build_report", "load_inputs"]
