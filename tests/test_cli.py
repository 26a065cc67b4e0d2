"""The imgcomp command line: encode, decode, eval, list, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgcomp.cli import main
from imgcomp.images import load_image, save_png


@pytest.fixture()
def png(tmp_path: Path) -> Path:
    from skimage import data

    path = tmp_path / "in.png"
    save_png(np.ascontiguousarray(data.astronaut()[:96, :128]), path)
    return path


def test_encode_then_decode_uses_the_header(tmp_path: Path, png: Path, capsys) -> None:
    stream = tmp_path / "out.imgc"
    assert main(["encode", str(png), str(stream), "--codec", "webp", "--quality", "50"]) == 0
    assert "bytes" in capsys.readouterr().out
    back = tmp_path / "back.png"
    assert main(["decode", str(stream), str(back)]) == 0
    rec = load_image(back)
    assert rec.shape == (96, 128, 3)
    from imgcomp.registry import create_codec

    expected = create_codec("webp", quality=50).decode(stream.read_bytes())
    assert np.array_equal(rec, expected)


def test_target_bpp_and_generic_params(tmp_path: Path, png: Path) -> None:
    stream = tmp_path / "s"
    assert main(["encode", str(png), str(stream), "--codec", "jpeg", "-p", "bpp=1.0"]) == 0
    assert 8 * stream.stat().st_size / (96 * 128) <= 1.0


def test_corrupt_stream_is_a_clear_error(tmp_path: Path, png: Path, capsys) -> None:
    stream = tmp_path / "s"
    main(["encode", str(png), str(stream), "--codec", "jpeg"])
    stream.write_bytes(stream.read_bytes()[:-3])
    assert main(["decode", str(stream), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgcomp: error:") and "truncated" in err
    assert not (tmp_path / "x.png").exists()


def test_missing_input_and_unknown_codec(tmp_path: Path, png: Path, capsys) -> None:
    assert main(["decode", str(tmp_path / "nope"), str(tmp_path / "x.png")]) == 2
    assert main(["encode", str(png), str(tmp_path / "s"), "--codec", "nope"]) == 2
    assert main(["encode", str(tmp_path / "no.png"), str(tmp_path / "s"), "--codec", "jpeg"]) == 2
    err = capsys.readouterr().err
    assert "unknown codec 'nope'" in err and "no.png" in err


def test_eval_prints_table_and_writes_json(tmp_path: Path, png: Path, capsys) -> None:
    out = tmp_path / "r.json"
    code = main(
        [
            "eval",
            "--codec",
            "jpeg",
            "--quality",
            "10",
            "--dataset",
            f"folder:{png.parent}",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "mean" in table and "MS-SSIM" in table
    result = json.loads(out.read_text())
    (row,) = result["images"]
    assert row["image"] == "in" and row["bytes"] > 0
    assert row["bpp"] == pytest.approx(8 * row["bytes"] / (96 * 128))
    assert result["mean"]["ssim"] == pytest.approx(row["ssim"])
    assert result["params"] == {"quality": 10}


def test_list_and_console_script() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "imgcomp.cli", "list", "--aliases"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"jpeg", "webp", "jpeg2000", "avif", "jpg"} <= set(out)
