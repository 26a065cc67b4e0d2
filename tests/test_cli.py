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

pytestmark = pytest.mark.usefixtures("one_thread")


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


# -- versions, saved codecs and compression ops ------------------------------------------------
SHIPPED = ["--codec", "mbt2018-mean", "--quality", "3"]
L1 = "enc0.3,dec0.3,ent0.3:l1"
STRUCTURED = "enc0.3,dec0.3,ent0.3:structured"


@pytest.fixture(scope="module")
def shipped():
    import imgcomp

    return imgcomp.create_codec("mbt2018-mean", quality=3)


@pytest.fixture()
def train_dir(tmp_path: Path) -> Path:
    from skimage import data

    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(2):  # small: calibration crops are at most the image
        crop = data.astronaut()[200 + 100 * i : 264 + 100 * i, 200:264]
        save_png(np.ascontiguousarray(crop), folder / f"t{i}.png")
    return folder


def test_version(capsys) -> None:
    import imgcomp

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"imgcomp {imgcomp.__version__}\n"


def test_encode_with_ops_saves_the_codec_and_decode_needs_it(
    tmp_path: Path, png: Path, shipped, capsys
) -> None:
    import imgcomp

    stream, model, back = tmp_path / "s.imgc", tmp_path / "m.safetensors", tmp_path / "b.png"
    args = ["encode", str(png), str(stream), *SHIPPED, "--prune", L1, "--quant", "w8"]
    assert main([*args, "--save-model", str(model)]) == 0
    assert f"saved the codec to {model}" in capsys.readouterr().out
    expected = imgcomp.quantize(imgcomp.prune(shipped, 0.3, 0.3, 0.3), "w8")
    assert imgcomp.load_codec(model).fingerprint == expected.fingerprint
    assert stream.read_bytes() == expected.encode(load_image(png))
    # the header names the plain model: without the saved codec, a clear way out
    assert main(["decode", str(stream), str(back)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgcomp: error:") and "pass --model PATH" in err
    assert "Traceback" not in err and not back.exists()
    assert main(["decode", "--model", str(model), str(stream), str(back)]) == 0
    assert np.array_equal(load_image(back), expected.decode(stream.read_bytes()))
    # a plain stream still decodes from its header; the wrong saved codec is refused
    plain = tmp_path / "plain.imgc"
    assert main(["encode", str(png), str(plain), *SHIPPED]) == 0
    assert main(["decode", str(plain), str(back)]) == 0
    assert main(["decode", "--model", str(model), str(plain), str(back)]) == 2
    assert "different 'mean-scale-hyperprior' model" in capsys.readouterr().err


def test_encode_structured_int8_like_the_benchmark(
    tmp_path: Path, png: Path, train_dir: Path, monkeypatch
) -> None:
    """`:structured` is the benchmark's structured pruning (activation importance, round_to=4)."""
    import imgcomp

    monkeypatch.delenv("IMGCOMP_TRAIN_DIR", raising=False)
    stream, model = tmp_path / "s.imgc", tmp_path / "m.safetensors"
    args = ["encode", str(png), str(stream), *SHIPPED, "--prune", STRUCTURED, "--quant", "int8"]
    args += ["--train-data", str(train_dir), "--recover-steps", "0"]  # ranking and calibration
    assert main([*args, "--save-model", str(model)]) == 0
    saved = imgcomp.load_codec(model)
    assert saved.ops == (  # the records prune(method="structured", importance="activation",
        # round_to=4) and quantize(..., "int8") write
        "prune=enc0.3,dec0.3,ent0.3:structured-activation:round4",
        "quantize:int8:encoder+decoder+entropy",
    )
    assert saved.model.config == {"arch": "mbt2018-mean", "N": 44, "M": 64}
    back = tmp_path / "b.png"
    assert main(["decode", "--model", str(model), str(stream), str(back)]) == 0
    assert np.array_equal(load_image(back), saved.decode(stream.read_bytes()))
    assert stream.read_bytes() == saved.encode(load_image(png))


def test_train_data_and_structured_options_reach_the_ops(
    tmp_path: Path, png: Path, monkeypatch
) -> None:
    import imgcomp

    seen: dict = {}

    def prune(c, op, **k):
        seen["prune"] = {**k, "op": op}
        return c

    monkeypatch.setattr(imgcomp, "prune", prune)
    monkeypatch.setattr(imgcomp, "quantize", lambda c, m, **k: (seen.setdefault(m.tag, k), c)[1])
    args = ["encode", str(png), str(tmp_path / "s"), *SHIPPED, "--prune", STRUCTURED]
    args += ["--quant", "int8", "--train-data", "folder:/my/train", "--recover-steps", "7"]
    assert main([*args, "--round-to", "1"]) == 0
    assert seen["int8"] == {"data": "folder:/my/train"}
    assert seen["prune"] == {
        "op": imgcomp.StructuredPrune(
            {"encoder": 0.3, "decoder": 0.3, "entropy": 0.3},
            importance="activation",
            recover_steps=7,
            round_to=None,  # 1: exact widths
        ),
        "data": "folder:/my/train",
    }
    seen.clear()
    assert main(["encode", str(png), str(tmp_path / "s"), *SHIPPED, "--quant", "bf16"]) == 0
    assert seen == {"bf16": {}}  # no --train-data: the ops' own default


def test_eval_with_a_saved_codec(tmp_path: Path, png: Path, shipped) -> None:
    import imgcomp

    codec = imgcomp.prune(shipped, decoder=0.5, method="structured")
    model = imgcomp.save_codec(codec, tmp_path / "m.safetensors")
    out = tmp_path / "r.json"
    args = ["eval", "--model", str(model), "--dataset", f"folder:{png.parent}", "--quiet"]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ops"] == list(codec.ops) and result["params"] == {"quality": 3}
    assert result["images"][0]["bytes"] == len(codec.encode(load_image(png)))
    # ops on top of a saved codec, and the plain codec's eval keeps its fields
    assert main([*args, "--quant", "w8", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["ops"] == [*codec.ops, "quantize:w8:encoder+decoder+entropy"]


def test_ops_note_and_option_errors(tmp_path: Path, png: Path, capsys) -> None:
    stream = str(tmp_path / "s")
    assert main(["encode", str(png), stream, *SHIPPED, "--prune", L1]) == 0
    assert "decodes only with this compressed codec" in capsys.readouterr().err
    bad = [
        ([*SHIPPED, "--prune", "enc0.3:l1"], "cannot read the pruning tag 'enc0.3:l1'"),
        ([*SHIPPED, "--quant", "int4"], "unknown quantization mode 'int4'"),
        ([*SHIPPED, "--prune", L1, "--recover-steps", "5"], "apply to structured pruning"),
        (["--model", str(png), "--quality", "3"], "drop --quality"),
    ]
    for extra, message in bad:
        assert main(["encode", str(png), stream, *extra]) == 2, extra
        assert message in capsys.readouterr().err
    jpeg = ["encode", str(png), stream, "--codec", "jpeg"]
    assert main([*jpeg, "--prune", L1]) == 2
    assert main([*jpeg, "--save-model", str(tmp_path / "j.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "apply to learned codecs" in err and "--save-model saves learned codecs" in err
    assert main(["decode", "--model", str(tmp_path / "none.safetensors"), stream, "x.png"]) == 2
    assert "no such file" in capsys.readouterr().err
    for args in ([], ["--codec", "jpeg", "--model", "m.safetensors"]):
        with pytest.raises(SystemExit):
            main(["encode", str(png), stream, *args])


def test_help_states_the_structured_defaults(capsys) -> None:
    from imgcomp.study import STRUCTURED_RECOVER_STEPS, STRUCTURED_ROUND_TO

    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: the benchmark's, {STRUCTURED_RECOVER_STEPS})" in text
    assert f"(default: the benchmark's, {STRUCTURED_ROUND_TO}; 1: exact widths)" in text
