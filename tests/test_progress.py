"""Progress bars (imgcomp.progress): one rule for study, eval, train and report. Shown on a
terminal, forced by IMGCOMP_PROGRESS=1 / 0, never with --quiet; stdout untouched."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from imgcomp import progress
from imgcomp.cli import main
from imgcomp.errors import ImgcompError
from imgcomp.images import save_png

pytestmark = pytest.mark.usefixtures("one_thread")


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "env", "quiet", "shown"),
    [
        (True, None, False, True),  # a terminal
        (False, None, False, False),  # a log or a pipe (CI)
        (False, "1", False, True),  # forced on
        (True, "0", False, False),  # forced off
        (True, "1", True, False),  # --quiet wins
        (True, "junk", False, True),  # anything else: the terminal decides
    ],
)
def test_the_rule(monkeypatch, tty: bool, env: str | None, quiet: bool, shown: bool) -> None:
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    if env is None:
        monkeypatch.delenv(progress.ENV, raising=False)
    else:
        monkeypatch.setenv(progress.ENV, env)
    assert progress.enabled(quiet) is shown
    with progress.bar(range(3), quiet=quiet, desc="work") as bar:
        assert list(bar) == [0, 1, 2]
    assert ("work: 100%" in sys.stderr.getvalue()) is shown


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    save_png(np.ascontiguousarray(data.astronaut()[:64, :96]), folder / "a.png")
    save_png(np.ascontiguousarray(data.coffee()[:64, :96]), folder / "b.png")
    return folder


def _force(monkeypatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(progress.ENV, raising=False)
    else:
        monkeypatch.setenv(progress.ENV, value)


@pytest.mark.parametrize(("env", "shown"), [("1", True), (None, False)])
def test_eval(photos: Path, monkeypatch, capsys, env: str | None, shown: bool) -> None:
    _force(monkeypatch, env)
    args = ["eval", "--codec", "jpeg", "--quality", "50", "--dataset", f"folder:{photos}"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "mean" in captured.out and "it/s" not in captured.out and "img/s" not in captured.out
    if shown:
        assert "jpeg: 100%" in captured.err and "2/2" in captured.err
    else:
        assert captured.err == ""


def test_eval_quiet_wins_over_forced(photos: Path, monkeypatch, capsys) -> None:
    _force(monkeypatch, "1")
    assert main(["eval", "--codec", "jpeg", "--dataset", f"folder:{photos}", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_study_bars_follow_run_study(monkeypatch, capsys) -> None:
    """The quality pass (configurations x images), then the timing rounds, from run_study's own
    callbacks."""
    from imgcomp.registry import create_codec
    from imgcomp.study import StudyConfig, StudyProgress, run_study

    _force(monkeypatch, "1")
    images = [("a", np.zeros((32, 32, 3), np.uint8)), ("b", np.full((32, 32, 3), 90, np.uint8))]
    with StudyProgress(1, len(images)) as bars:
        run_study(
            create_codec("jpeg", quality=50),
            [StudyConfig()],
            images,
            repeats=2,
            warmup=1,
            progress=bars.quality,
            timing_progress=bars.timing,
        )
    err = capsys.readouterr().err
    assert "prune=none/quant=none: 100%" in err and "2/2 [" in err
    assert "timing: 100%" in err and "3/3 [" in err  # one untimed and two timed rounds


def test_cli_study_bars_and_quiet(photos: Path, monkeypatch, capsys) -> None:
    import imgcomp.study as study_module
    from imgcomp.study import StudyConfig, row_from_summary

    def fake(codec, configs, images, *, progress, timing_progress, skip, **_):
        for config in configs:
            progress(config, 0, len(images))
        skip(configs[-1], ImgcompError("not this one"))
        for config in configs[:-1]:
            for i in range(len(images)):
                progress(config, i + 1, len(images))
        for r in range(2):
            timing_progress(r + 1, 2)
        means = {"images": 2, "encode_s": 1.0, "decode_s": 1.0, "ssim": 0.5, "psnr": 20.0}
        return [row_from_summary(StudyConfig(), means | {"bpp": 1.0, "bytes": 512.0})]

    monkeypatch.setattr(study_module, "run_study", fake)
    args = ["study", "--codec", "jpeg", "--dataset", f"folder:{photos}"]
    _force(monkeypatch, "1")
    assert main(args) == 0
    err = capsys.readouterr().err
    last = "prune=enc0.3,dec0.3,ent0.3:l1/quant=none"
    assert f"{last}: skipped (not this one)" in err
    assert "14/14 [" in err  # 8 rows x 2 images, less the skipped row's
    assert "timing: 100%" in err
    _force(monkeypatch, None)  # not a terminal: only the skipped row is said
    assert main(args) == 0
    assert capsys.readouterr().err.strip() == f"{last}: skipped (not this one)"
    _force(monkeypatch, "1")
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_train(photos: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from imgcomp.train import TrainConfig, train

    def run(out: str, shown: bool) -> str:
        config = TrainConfig(
            model={"arch": "mbt2018-mean", "N": 8, "M": 12},
            steps=2,
            batch_size=1,
            patch_size=64,
            data=str(photos),
            out=str(tmp_path / out),
            progress=shown,
        )
        train(config)
        return capsys.readouterr().err

    _force(monkeypatch, "1")
    err = run("on", True)
    assert "on: 100%" in err and "2/2 [" in err and "step" in err
    assert run("quiet", False) == ""  # TrainConfig(progress=False): imgcomp train --quiet
    _force(monkeypatch, None)
    assert run("not-a-terminal", True) == ""


def test_report(tmp_path: Path, monkeypatch, capsys) -> None:
    from tests.test_report import write_study

    study = write_study(tmp_path / "study.json")
    _force(monkeypatch, "1")
    assert main(["report", str(study), "--out", str(tmp_path / "r1")]) == 0
    err = capsys.readouterr().err
    assert "figures: 100%" in err
    assert main(["report", str(study), "--out", str(tmp_path / "r2"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    _force(monkeypatch, None)
    assert main(["report", str(study), "--out", str(tmp_path / "r3")]) == 0
    assert capsys.readouterr().err == ""
