"""Fixtures of the benchmark suite: the images, the case matrix, cached runs and baselines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.cases import Case, all_cases, matrix_learned_cases
from bench.plan import Plan, matches, plan_from_names
from bench.shard import Shard, parse_shard, split, unit_key
from imgcomp.baselines import BaselineStore
from imgcomp.data import load_dataset
from imgcomp.errors import DatasetError
from imgcomp.evaluate import ImageResult, evaluate

REPO = Path(__file__).resolve().parent.parent
_SUMMARY: dict[str, dict] = {}
_CHANGES: list[str] = []
_SPEEDUPS: dict[str, dict] = {}
_PRECISION: list[dict] = []
_PER_IMAGE: dict[str, list[dict]] = {}
_CROPS: dict[str, dict] = {}
_BACKENDS: dict[str, dict] = {}
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

        learned = matrix_learned_cases(matrix)
        metafunc.parametrize("learned_case", _params(learned + op_cases(learned, matrix)))


def pytest_configure(config: pytest.Config) -> None:
    """Pin glibc's malloc thresholds so timings do not drift with test order (see
    :func:`imgcomp.timing.steady_allocator`); with ``--shard K/N``, keep only that part."""
    from imgcomp.timing import steady_allocator

    config.stash[_STEADY] = steady_allocator()
    raw = config.getoption("--shard")
    if raw is not None:
        try:
            shard = parse_shard(raw)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.pluginmanager.register(_ShardPlugin(shard), "imgcomp-shard")


class _ShardPlugin:
    """``--shard K/N``: deselect the other shards' tests (:mod:`bench.shard`), after every
    other selection (``--case``, ``-m``, ``-k``) is done. Fewer units than shards stops the run
    with exit 4 (an xdist worker cannot stop it: it tells the controller, which does)."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.error: str | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list) -> None:
        def describe(item: pytest.Item) -> tuple[str, str]:
            case = _item_case(item)
            return unit_key(item.nodeid, case.id if case else None), item.name

        config.stash[_POSITIONS] = {item.nodeid: i for i, item in enumerate(items)}
        try:
            kept, dropped = split(items, self.shard, describe)
        except ValueError as exc:
            items[:] = []  # the collection's summary must not list the tests as selected
            if not hasattr(config, "workerinput"):
                raise pytest.UsageError(f"imgcomp bench: {exc}") from None
            config.workeroutput[_SHARD_ERROR] = f"imgcomp bench: {exc}"
            return
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        self.error = self.error or getattr(node, "workeroutput", {}).get(_SHARD_ERROR)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.error:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"ERROR: {self.error}", red=True)
            session.exitstatus = pytest.ExitCode.USAGE_ERROR


_SHARD_ERROR = "imgcomp_shard_error"
#: Each test's place in the whole selection of a sharded run (its saves record it, so that the
#: report lists a joined run's timings in the unsharded order).
_POSITIONS = pytest.StashKey[dict]()


def pytest_report_header(config: pytest.Config) -> str:
    steady = config.stash.get(_STEADY, False)
    return "imgcomp: malloc thresholds " + ("pinned (steady timings)" if steady else "default")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Find the images and training data once, before any test: missing data stops the run
    with one message and the command that fixes it (not one traceback per test)."""
    config = session.config
    if hasattr(config, "workerinput"):
        return  # xdist workers: the controller checked already
    spec = config.getoption("--dataset")
    try:
        load_dataset(spec)
    except DatasetError as exc:  # raised as a usage error: pytest prints it once, exit 4
        fix = (
            "set IMGCOMP_KODAK_DIR to a folder holding kodim01.png..kodim24.png, or run offline "
            "on the bundled photos: pytest bench --dataset sample"
            if spec.strip().lower() == "kodak"
            else "--dataset takes kodak, sample or folder:PATH"
        )
        raise pytest.UsageError(
            f"imgcomp bench: cannot load --dataset {spec}: {exc}\nfix: {fix}"
        ) from None
    train = config.getoption("--train-data")
    try:
        from imgcomp.trainsets import load_training_set

        load_training_set(train)
    except DatasetError as exc:
        raise pytest.UsageError(
            f"imgcomp bench: cannot load --train-data {train}: {exc}\n"
            "fix: pass --train-data bundled (offline, what the baselines use) or a folder"
        ) from None
    for name in ("--timing-images", "--verify-images"):
        _count_option(config, name)  # a bad value stops here too
    _check_backend(config)


def _check_backend(config: pytest.Config) -> None:
    """``--backend``: its packages installed; no baseline writes (the baselines are torch's)."""
    backend = config.getoption("--backend")
    if backend == "torch":
        return
    if config.getoption("--update-baselines"):
        raise pytest.UsageError(
            f"imgcomp bench: --update-baselines writes torch's baselines; run it without "
            f"--backend {backend}"
        )
    from imgcomp.errors import ImgcompError
    from imgcomp.registry import backend_converter

    try:
        backend_converter(backend)
    except ImgcompError as exc:
        raise pytest.UsageError(f"imgcomp bench: --backend {backend}: {exc}") from None


def _count_option(config: pytest.Config, name: str) -> int | None:
    """An ``N|all`` option as a count, None for all."""
    raw = str(config.getoption(name)).strip().lower()
    if raw == "all":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"{name} must be a positive integer or all, not {raw!r}")
    return int(raw)


def _timing_images(config: pytest.Config) -> int | None:
    return _count_option(config, "--timing-images")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--case``: keep only the tests of the named cases; ``--matrix default``: leave the
    precision study to ``--matrix study``."""
    patterns = config.getoption("--case")
    keep, drop = [], []
    for item in items:
        case = _item_case(item)
        unselected = patterns and (case is None or not matches(case.id, patterns))
        study_only = config.getoption("--matrix") == "default" and item.get_closest_marker("study")
        (drop if unselected or study_only else keep).append(item)
    if patterns and not keep:
        raise pytest.UsageError(
            f"--case {' '.join(patterns)} matches no case of --matrix "
            f"{config.getoption('--matrix')}; the quality table prints every case id"
        )
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _item_case(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    value = callspec.params.get("case", callspec.params.get("learned_case"))
    return value if isinstance(value, Case) else None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Say at the start how many cases will run and roughly how long it takes."""
    config = session.config
    if not hasattr(config, "workerinput") and session.items:
        _say_plan(config, [item.name for item in session.items], workers=1)


def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """Under xdist the controller sees test ids only: say the plan once, from the first node."""
    config = node.config
    if config.stash.get(_PLANNED, False):
        return
    config.stash[_PLANNED] = True
    workers = len(getattr(config.option, "tx", None) or []) or 1
    _say_plan(config, [i.split("::")[-1] for i in ids], workers)


_PLANNED = pytest.StashKey[bool]()


def _say_plan(config: pytest.Config, names: list[str], workers: int) -> None:
    plan = _plan_from_ids(config, names, workers)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if plan is not None and reporter is not None:
        reporter.write_line(plan.describe())


def _plan_from_ids(config: pytest.Config, names: list[str], workers: int) -> Plan | None:
    """A Plan from test names like ``test_quality[<case id>]``."""
    if plan_from_names(names, 1, 1) is None:
        return None  # no work the estimate knows: the dataset need not be looked at
    try:
        images = len(load_dataset(config.getoption("--dataset"), download=False))
    except DatasetError:
        images = 24
    n = config.getoption("--images")
    images = min(images, n) if n else images
    timing = _timing_images(config)
    timing = images if timing is None else min(timing, images)
    benchmark_off = workers > 1 or config.getoption("benchmark_skip", False)
    return plan_from_names(
        names, images, timing, workers, benchmark_off, shard=config.getoption("--shard")
    )


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
def timing_images(pytestconfig: pytest.Config, bench_images) -> list[tuple[str, object]]:
    """The images latency and speed-up tests time: the first ``--timing-images`` of them."""
    n = _timing_images(pytestconfig)
    return bench_images if n is None else bench_images[:n]


@pytest.fixture(scope="session")
def codec_for(pytestconfig: pytest.Config):
    """Build each case's codec once per worker, on the --device chosen, its ops learning from
    --train-data, its transforms on --backend (``get(case, backend)`` asks for another one:
    the side-by-side backend bench)."""
    from bench.case import TORCH, on_backend

    device = pytestconfig.getoption("--device")
    train_data = pytestconfig.getoption("--train-data")
    chosen = pytestconfig.getoption("--backend")
    cache: dict[tuple[str, str], object] = {}
    matrix: dict[str, Case] = {}

    def find(case_id: str) -> Case:
        if not matrix:
            matrix.update((c.id, c) for c in all_cases("full"))
        return matrix[case_id]

    def get(case: Case, backend: str | None = None):
        backend = backend or chosen
        key = (case.id, backend)
        if key not in cache:
            if backend == TORCH:
                cache[key] = case.build(device, train_data)
            else:
                build = lambda c: get(c, TORCH)  # noqa: E731
                cache[key] = on_backend(case, backend, build, find, train_data)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def case_crops():
    """Each case's crop of its first decoded image (bench.quality_json.Crops), for the report."""
    from bench.quality_json import Crops

    return Crops()


@pytest.fixture(scope="session")
def case_results(pytestconfig: pytest.Config, codec_for, bench_images, case_crops):
    """Run a case over the images once per worker (round trip verified on the first
    ``--verify-images``; the first image's crop kept in ``case_crops``), cached by case id
    (and backend: ``get(case, backend)``, default --backend; crops of --backend's only)."""
    cache: dict[tuple[str, str | None], list[ImageResult]] = {}
    n = _count_option(pytestconfig, "--verify-images")
    n = len(bench_images) if n is None else n
    chosen = pytestconfig.getoption("--backend")

    def get(case: Case, backend: str | None = None) -> list[ImageResult]:
        key = (case.id, None if backend in (None, chosen) else backend)
        if key not in cache:
            codec = codec_for(case, backend)
            keep = case_crops.keeper(case.id) if key[1] is None else None
            verified = evaluate(codec, bench_images[:n], verify=True, on_decoded=keep)
            cache[key] = verified + evaluate(codec, bench_images[n:])
        return cache[key]

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
        elif key == "imgcomp_images":
            _PER_IMAGE[value["case"]] = value["images"]
        elif key == "imgcomp_crop" and value:
            _CROPS[value["case"]] = value
        elif key == "imgcomp_backends":
            _BACKENDS.update(value)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _SUMMARY:
        _write_quality(terminalreporter)
    if any("/prune=" in case_id for case_id in _SUMMARY):
        _write_study_tables(terminalreporter)
    if _SPEEDUPS:
        _write_speedups(terminalreporter)
    if _BACKENDS:
        _write_backends(terminalreporter)
    for study in _PRECISION:
        _write_precision(terminalreporter, study)
    if _CHANGES:
        terminalreporter.section("imgcomp baseline changes")
        for line in _CHANGES:
            terminalreporter.write_line(line)
    if _SUMMARY and not hasattr(config, "workerinput"):
        _write_quality_json(terminalreporter, config)


def _write_quality_json(tr, config: pytest.Config) -> None:
    """The quality results as JSON (``--quality-json``; ``imgcomp report`` reads it), after the
    tables: one line says where."""
    from datetime import datetime, timezone

    from bench import quality_json

    chosen = config.getoption("--quality-json")
    if chosen == "":
        return
    root = config.invocation_params.dir
    when = datetime.now(timezone.utc)
    commit = quality_json.commit_info(REPO)
    path = Path(chosen) if chosen else quality_json.default_path(root, when, commit)
    path = path if path.is_absolute() else root / path
    data = quality_json.payload(
        _SUMMARY,
        _PER_IMAGE,
        _run_options(config),
        when=when,
        commit=commit,
        machine=quality_json.machine_info(),
        baseline_changes=_CHANGES,
        speedups=_SPEEDUPS,
        precision=_PRECISION,
    )
    try:
        quality_json.write(path, data, crops=_CROPS)
    except OSError as exc:
        tr.write_line(f"imgcomp: cannot write the quality results to {path}: {exc}", red=True)
        return
    tr.write_line(f"imgcomp: quality results written to {path}")


def _run_options(config: pytest.Config) -> dict:
    """The run's options as its quality JSON and timing saves record them: the suite's
    (``quality_json.OPTIONS``), the selection (``-m``, ``-k``), the shard and the xdist workers
    (``imgcomp report`` merges the shards of one run: files alike in all but the shard)."""
    from bench import quality_json

    options = {
        name: config.getoption("--" + name.replace("_", "-")) for name in quality_json.OPTIONS
    }
    options["markexpr"] = config.getoption("markexpr", "") or ""
    options["keyword"] = config.getoption("keyword", "") or ""
    options["shard"] = config.getoption("--shard", None)
    options["xdist_workers"] = config.getoption("numprocesses", None) or 0
    return options


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    """Record the run's options (shard included) in pytest-benchmark's saves and
    ``--benchmark-json``, so that ``imgcomp report`` shows a sharded run's saves as one run."""
    options = {**_run_options(config), "timing_images": config.getoption("--timing-images")}
    output_json["imgcomp"] = {"options": options}
    if _POSITIONS in config.stash:
        everywhere = config.stash[_POSITIONS]
        output_json["imgcomp"]["positions"] = {
            b["fullname"]: everywhere[b["fullname"]]
            for b in output_json.get("benchmarks", [])
            if b.get("fullname") in everywhere
        }


def _write_quality(tr) -> None:
    """Mean quality per case against its baseline; op cases indented under their base case, so
    every line fits 120 columns."""
    tr.section("imgcomp quality (means over images)")
    rows = [[*case_id.split("/", 1), ""][:2] for case_id in _SUMMARY]
    width = max(
        44, *(len(op) + 4 for _, op in rows if op), *(len(b) + 2 for b, op in rows if not op)
    )
    head = f"{'case':<{width}}{'n':>4}{'bpp':>8}{'PSNR':>7}{'SSIM':>8}{'MS-SSIM':>8}"
    tr.write_line(head + f"{'base SSIM':>10}{'base bpp':>9}  gate")
    last_base = None
    for case_id in sorted(_SUMMARY):
        base, _, op = case_id.partition("/")
        if op and base != last_base and base not in _SUMMARY:
            tr.write_line(base)
        last_base = base
        label = f"  {op}" if op else base
        s = _SUMMARY[case_id]
        base_ssim = f"{s['baseline_ssim']:.4f}" if s.get("baseline_ssim") is not None else "-"
        base_bpp = f"{s['baseline_bpp']:.4f}" if s.get("baseline_bpp") is not None else "-"
        tr.write_line(
            f"{label:<{width}}{s['images']:>4}{s['bpp']:>8.4f}{s['psnr']:>7.2f}"
            f"{s['ssim']:>8.4f}{s['ms_ssim']:>8.4f}{base_ssim:>10}{base_bpp:>9}  {s['gate']}"
        )


def _write_study_tables(tr) -> None:
    """The op-matrix cases as the study's table, one per base case (family) they derive from."""
    from imgcomp.study import format_study_table, get_grid, parse_case_id, row_from_summary

    parsed = {}
    for case_id, summary in _SUMMARY.items():
        try:
            parsed[case_id] = (*parse_case_id(case_id), summary)
        except ValueError:
            continue  # not an op case id this table understands
    families = {parsed[c][0] for c in parsed if "/prune=" in c}
    tr.section("imgcomp study table (times from the quality pass; noisy under xdist)")
    for family in sorted(families):
        model_family = next(c.family for fam, c, _ in parsed.values() if fam == family)
        grid = get_grid("extended", family=model_family)  # the family's row order
        order = {config.label: i for i, config in enumerate(grid)}
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
        verdict = f"skipped: {s['skipped']}" if s.get("skipped") else verdict
        tr.write_line(
            f"{op:<12}{s['images']:>7}{s['decode_ms']:>11.1f}{s['float32_decode_ms']:>12.1f}"
            f"{s['decode_ratio']:>7.2f}{s['decode_min_ratio']:>7.2f}{s['encode_ratio']:>8.2f}"
            f"{s['target']:>8.2f}{s['gate']:>6.2f}  {verdict}"
        )
    if hardware := next((s["hardware"] for s in _SPEEDUPS.values() if "hardware" in s), None):
        tr.write_line(f"hardware: {hardware}")


def _write_backends(tr) -> None:
    """Decode latency per variant on torch and onnxruntime of bench/test_onnxruntime.py."""
    tr.section("imgcomp backends (decode, interleaved in one process)")
    tr.write_line(
        f"{'variant':<18}{'images':>7}{'torch ms':>10}{'ORT ms':>9}{'ORT/torch':>10}"
        f"{'ORT/ORT f32':>12}{'bytes torch':>12}{'bytes ORT':>10}"
    )
    for name, r in _BACKENDS.items():
        tr.write_line(
            f"{name:<18}{r['images']:>7}{r['torch_ms']:>10.1f}{r['ort_ms']:>9.1f}"
            f"{r['ort_ms'] / r['torch_ms']:>10.2f}{r['ort_ratio']:>12.2f}"
            f"{r['torch_bytes']:>12}{r['ort_bytes']:>10}"
        )


def _write_precision(tr, study: dict) -> None:
    """SSIM vs weight bits of bench/test_precision.py."""
    tr.section(f"imgcomp precision study: {study['case']}, weights at K bits")
    width = max(9, *(len(name) + 1 for name in study["rows"]))
    tr.write_line(f"{'weights':<{width}}{'images':>7}{'SSIM':>8}{'PSNR':>8}{'bpp':>8}")
    for name, r in study["rows"].items():
        tr.write_line(
            f"{name:<{width}}{r['images']:>7}{r['ssim']:>8.4f}{r['psnr']:>8.2f}{r['bpp']:>8.4f}"
        )
