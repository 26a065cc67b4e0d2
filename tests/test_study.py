"""The study table: configs, rows from real streams, table formats, case-id parsing, the CLI."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp.cli import main
from imgcomp.evaluate import RoundTripError, evaluate
from imgcomp.images import save_png
from imgcomp.study import (
    EXTENDED_GRID,
    STRUCTURED_CONFIG,
    STRUCTURED_RECOVER_STEPS,
    STRUCTURED_ROUND_TO,
    STUDY_GRID,
    StudyConfig,
    StudyRow,
    config_from_tags,
    format_study_table,
    get_grid,
    parse_case_id,
    row_from_summary,
    rows_to_json,
    run_study,
)

TINY = {"pretrained": False, "N": 8, "M": 12, "seed": 0}
SHORT = ("enc", "dec", "ent", "method", "quant", "enc+dec time", "SSIM", "avg bytes", "bpp")
HEADERS = (
    "Encoder pruning ratio",
    "Decoder pruning ratio",
    "Probability model pruning ratio",
    "Total inference time (hh:mm:ss)",
    "SSIM",
    "Avg. compressed image size (B)",
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and leave the other core alone)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images() -> list[tuple[str, np.ndarray]]:
    y, x = np.mgrid[0:64, 0:64]
    smooth = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return [("smooth", smooth), ("noisy", noisy)]


@pytest.fixture(scope="module")
def tiny():
    return imgcomp.create_codec("mean-scale-hyperprior", **TINY)


@pytest.fixture(scope="module")
def study(tiny):
    """The study grid on the tiny model (module-scoped: built and measured once)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_study(tiny, STUDY_GRID, _images(), memory=False)
    finally:
        torch.set_num_threads(old)


def test_grids() -> None:
    assert len(STUDY_GRID) == 8 and STUDY_GRID[0] == StudyConfig()
    ratios = {(c.encoder, c.decoder, c.entropy) for c in STUDY_GRID}
    assert ratios == {(e, d, n) for e in (0, 0.3) for d in (0, 0.3) for n in (0, 0.3)}
    assert all(c.method == "l1" and c.scope == "layer" and c.quant is None for c in STUDY_GRID)
    extra = EXTENDED_GRID[8:]
    assert EXTENDED_GRID[:8] == STUDY_GRID
    assert [c.label for c in extra] == [
        "prune=enc0.3,dec0.3,ent0.3:structured/quant=none",
        "prune=none/quant=bf16",
        "prune=none/quant=int8",
        "prune=enc0.3,dec0.3,ent0.3:structured/quant=int8",
    ]
    assert extra[0].importance == "activation" and extra[0].recover_steps == 300
    assert extra[0].recover_steps == STRUCTURED_RECOVER_STEPS
    assert extra[0].round_to == STRUCTURED_ROUND_TO == 4 and extra[3].round_to == 4
    assert get_grid("extended") == EXTENDED_GRID
    with pytest.raises(imgcomp.ImgcompError, match="unknown grid"):
        get_grid("nope")


def test_apply_returns_new_codecs(tiny) -> None:
    assert StudyConfig().apply(tiny) is tiny
    pruned = StudyConfig(decoder=0.3).apply(tiny)
    assert pruned is not tiny and pruned.ops and not tiny.ops
    both = StudyConfig(encoder=0.3, quant="w8").apply(tiny)
    assert len(both.ops) == 2 and both.ops[0].startswith("prune=") and not tiny.ops
    slim = StudyConfig(decoder=0.3, method="structured", round_to=4).apply(tiny)
    assert slim.ops[0].endswith(":round4")
    assert all(m.out_channels % 4 == 0 for m in slim.model.g_s[:-1:2])


def test_rows_follow_config_order_and_match_plain_evaluate(study, tiny) -> None:
    assert [r.label for r in study] == [c.label for c in STUDY_GRID]
    plain = evaluate(tiny, _images())
    base = study[0]
    assert (base.encoder, base.decoder, base.entropy, base.method) == (0, 0, 0, "-")
    assert base.avg_bytes == np.mean([r.bytes for r in plain])
    assert base.ssim == pytest.approx(np.mean([r.ssim for r in plain]), abs=0)
    assert base.psnr == pytest.approx(np.mean([r.psnr for r in plain]), abs=0)
    assert base.bpp == pytest.approx(np.mean([r.bpp for r in plain]))
    assert all(r.images == 2 for r in study)


def test_avg_bytes_are_real_stream_lengths(study) -> None:
    config = STUDY_GRID[-1]
    codec = config.apply(imgcomp.create_codec("mean-scale-hyperprior", **TINY))
    lengths = [len(codec.encode(img)) for _, img in _images()]
    assert study[-1].avg_bytes == np.mean(lengths)


def test_times_and_sizes(study) -> None:
    for row in study:
        assert row.encode_s > 0 and row.decode_s > 0
        assert row.total_inference_s == row.encode_s + row.decode_s
        assert len(row.encode_rounds) == len(row.decode_rounds) == 3  # the default repeats
        assert all(t > 0 for t in row.encode_rounds + row.decode_rounds)
        # per-call medians, summed: between the fastest and the slowest round's sum
        assert min(row.decode_rounds) <= row.decode_s <= max(row.decode_rounds)
        assert row.parameters == study[0].parameters and row.macs == study[0].macs
        assert row.serialized_bytes > 0
    assert 0 < study[0].nonzero_parameters <= study[0].parameters  # some biases start at 0
    for row in study[1:]:  # L1 pruning zeroes weights: fewer non-zeros, same count
        assert row.nonzero_parameters < study[0].nonzero_parameters
    assert study[-1].nonzero_parameters == min(r.nonzero_parameters for r in study)


def test_rows_carry_peak_memory_unless_asked_not_to(tiny) -> None:
    from imgcomp.memory import supported

    rows = run_study(tiny, STUDY_GRID[:2], _images()[:1], repeats=1, warmup=0)
    if supported():
        assert all(r.peak_decode_mib is not None and r.peak_decode_mib >= 0 for r in rows)
        assert all(r.peak_encode_mib is not None for r in rows)
        assert "dec MiB" in format_study_table(rows)
    off = run_study(tiny, STUDY_GRID[:1], _images()[:1], repeats=1, warmup=0, memory=False)
    assert off[0].peak_decode_mib is None and "dec MiB" not in format_study_table(off)


def test_repeats_keep_the_results(tiny) -> None:
    rows = run_study(tiny, STUDY_GRID[:1], _images()[:1], repeats=2, warmup=False)
    once = evaluate(tiny, _images()[:1])[0]
    assert rows[0].avg_bytes == once.bytes and rows[0].ssim == once.ssim
    assert len(rows[0].decode_rounds) == 2
    with pytest.raises(imgcomp.ImgcompError, match="repeats"):
        run_study(tiny, STUDY_GRID[:1], _images(), repeats=0)
    with pytest.raises(imgcomp.ImgcompError, match="warmup"):
        run_study(tiny, STUDY_GRID[:1], _images(), warmup=-1)


def test_rows_are_timed_interleaved_round_by_round(tiny, monkeypatch) -> None:
    """Every timed round runs every configuration's encodes and decodes of every image."""
    import imgcomp.study as study_module

    real = study_module.time_side_by_side
    seen = []

    def spy(calls, rounds, warmup):
        seen.append(({k: len(v) for k, v in calls.items()}, rounds, warmup))
        return real(calls, rounds=rounds, warmup=warmup)

    monkeypatch.setattr(study_module, "time_side_by_side", spy)
    rounds, images = [], []
    configs = STUDY_GRID[:3]
    rows = run_study(
        tiny,
        configs,
        _images(),
        repeats=2,
        warmup=1,
        progress=lambda c, *a: images.append((c.label, *a)),
        timing_progress=lambda *a: rounds.append(a),
    )
    every = {f"{v}/{op}": 2 for v in range(3) for op in ("encode", "decode")}
    assert seen == [(every, 1, 0)] * 3  # one round per call: every encode and decode
    for r, (calls, *_) in enumerate(seen):  # variant by variant, round r starting at variant r
        order = [(r + k) % 3 for k in range(3)]
        assert list(calls) == [f"{v}/{op}" for v in order for op in ("encode", "decode")]
    assert rounds == [(1, 3), (2, 3), (3, 3)]
    labels = [c.label for c in configs]
    built = [(label, 0, 2) for label in labels]  # every codec is built before any measurement
    assert images == built + [(label, i, 2) for label in labels for i in (1, 2)]
    assert all(len(r.decode_rounds) == 2 for r in rows)


def test_configurations_share_their_pruning(tiny, monkeypatch) -> None:
    """structured and structured + quantization prune (and fine-tune) once."""
    calls = []
    real = imgcomp.prune
    monkeypatch.setattr(imgcomp, "prune", lambda *a, **k: calls.append(k) or real(*a, **k))
    slim = StudyConfig(0.3, 0.3, 0.3, method="structured", round_to=4)
    rows = run_study(tiny, [StudyConfig(), slim, replace(slim, quant="w8")], _images()[:1])
    assert len(calls) == 1 and rows[1].parameters == rows[2].parameters < rows[0].parameters
    assert rows[2].quant == "w8" and rows[1].quant is None


def test_data_reaches_the_ops(tiny, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(
        imgcomp,
        "prune",
        lambda codec, op, **k: (seen.setdefault("prune", {**k, "op": op}), codec)[1],
    )
    monkeypatch.setattr(imgcomp, "quantize", lambda c, m, **k: (seen.setdefault("quant", k), c)[1])
    replace(STRUCTURED_CONFIG, quant="int8").apply(tiny, data="folder:/train")
    assert seen["prune"]["data"] == "folder:/train" and seen["quant"] == {"data": "folder:/train"}
    assert seen["prune"]["op"].recover_steps == STRUCTURED_RECOVER_STEPS
    seen.clear()
    StudyConfig(decoder=0.3, quant="w8").apply(tiny)  # no data: the ops' defaults
    assert "data" not in seen["prune"] and seen["quant"] == {}


def test_repeated_encodes_must_give_the_same_bytes() -> None:
    img = _images()[0][1]

    class Drifting:
        name = "drifting"
        calls = 0

        def encode(self, image):
            self.calls += 1
            return b"A" if self.calls <= 2 else b"B"  # the quality pass (and its check) see A

        def decode(self, data):
            return img

    with pytest.raises(RoundTripError, match="repeated encodes gave other bytes"):
        run_study(Drifting(), [StudyConfig()], [("x", img)], repeats=1, warmup=0)


def test_config_from_tags() -> None:
    l1 = config_from_tags("enc0.3,dec0,ent0.3:l1")
    assert (l1.encoder, l1.decoder, l1.entropy, l1.method, l1.scope) == (0.3, 0, 0.3, "l1", "layer")
    assert config_from_tags("enc0.5,dec0.5,ent0.5:l1-global").scope == "global"
    assert config_from_tags("enc0.3,dec0.3,ent0.3:structured", "int8") == replace(
        STRUCTURED_CONFIG, quant="int8"
    )
    assert (
        config_from_tags(None, "bf16")
        == config_from_tags("none", "bf16")
        == StudyConfig(quant="bf16")
    )
    assert config_from_tags() == StudyConfig()
    for config in EXTENDED_GRID:  # the grids' own tags read back as the grids' configurations
        assert config_from_tags(config.prune_tag, config.quant) == config
    for bad in ("enc0.3:l1", "enc0.3,dec0,ent0:magic", "enc0.3,dec0,ent0:l1-diagonal", "0.3"):
        with pytest.raises(imgcomp.ImgcompError, match="cannot read the pruning tag"):
            config_from_tags(bad)
    with pytest.raises(imgcomp.ImgcompError, match="unknown quantization mode"):
        config_from_tags(None, "int4")


def test_classic_codecs_are_refused_before_work() -> None:
    jpeg = imgcomp.create_codec("jpeg", quality=50)
    with pytest.raises(imgcomp.ImgcompError, match="learned codecs"):
        run_study(jpeg, STUDY_GRID, _images())
    rows = run_study(jpeg, STUDY_GRID[:1], _images())  # no op: any codec, no model sizes
    assert rows[0].parameters is None and rows[0].avg_bytes > 0


def test_text_table(study) -> None:
    text = format_study_table(study)
    lines = text.splitlines()
    assert len(lines) == 2 + len(study)
    assert lines[0].split()[:5] == list(SHORT[:5]) and all(h in lines[0] for h in SHORT)
    assert set(lines[1]) <= {"-", " "}
    assert re.search(r"\b\d\d:\d\d:\d\d\.\d\d\b", lines[2])
    assert f"{study[0].avg_bytes:.3f}" in lines[2] and f"{study[0].ssim:.4f}" in lines[2]
    assert lines[2].split()[-2] == "1.00x" and "decode speedup" in lines[0]
    # every other row: the speedup, then the lowest and highest per-round ratio
    for row, line in zip(study[1:], lines[3:], strict=True):
        m = re.search(r" (\d+\.\d\d)x \((\d+\.\d\d)-(\d+\.\d\d)\) ", line)
        assert m, line
        lo, hi = float(m[2]), float(m[3])
        per_round = [b / r for b, r in zip(study[0].decode_rounds, row.decode_rounds, strict=True)]
        assert (lo, hi) == (round(min(per_round), 2), round(max(per_round), 2))
        assert float(m[1]) == round(study[0].decode_s / row.decode_s, 2)
    # without the unmodified model first, there is nothing to state a speedup against
    assert "decode speedup" not in format_study_table(study[1:]).splitlines()[0]


def test_speedup_spread_and_width() -> None:
    """The text table of the extended grid stays under 120 columns, spreads included."""
    summary = {"images": 24, "encode_s": 0.1, "decode_s": 0.1, "ssim": 0.77, "psnr": 29.0}
    summary |= {"bpp": 0.3171, "bytes": 15585.625}
    rows = []
    for i, config in enumerate(EXTENDED_GRID):
        row = row_from_summary(config, {**summary, "decode_s": 0.1 / (1 + i)})
        row.decode_rounds = [2.4 / (1 + i) * f for f in (1.0, 1.25, 0.8)]
        row.nonzero_parameters = 1_764_000
        rows.append(row)
    rows[0].decode_rounds = [2.4, 2.4, 2.4]
    lines = format_study_table(rows).splitlines()
    assert max(map(len, lines)) < 120
    assert lines[3].split()[-3:] == ["2.00x", "(1.60-2.50)", "1.764M"]
    assert lines[-1].split()[-3:] == ["12.00x", "(9.60-15.00)", "1.764M"]
    assert "(" not in lines[2]  # the reference row: no spread against itself
    md = format_study_table(rows, style="markdown").splitlines()
    assert "| 2.00x (1.60-2.50) |" in md[3] and all(h in md[0] for h in HEADERS)
    rows[1].decode_rounds = None  # e.g. rebuilt from a summary: no per-round times
    assert format_study_table(rows).splitlines()[3].split()[-2] == "2.00x"


def test_markdown_and_tsv(study) -> None:
    md = format_study_table(study, style="markdown").splitlines()
    assert all(h in md[0] for h in HEADERS) and md[0].startswith("| ")
    assert re.fullmatch(r"\|( :?---:? \|)+", md[1])
    assert len(md) == 2 + len(study) and all(line.count("|") == md[0].count("|") for line in md)
    tsv = [line.split("\t") for line in format_study_table(study, style="tsv").splitlines()]
    assert tsv[0][:3] == list(HEADERS[:3]) and len({len(r) for r in tsv}) == 1
    assert tsv[1][:3] == ["0", "0", "0"] and tsv[-1][:3] == ["0.3", "0.3", "0.3"]
    with pytest.raises(ValueError):
        format_study_table(study, style="html")
    with pytest.raises(ValueError):
        format_study_table([])


def test_hours_format() -> None:
    row = row_from_summary(
        StudyConfig(),
        {"images": 24, "encode_s": 100.0, "decode_s": 60.0, "ssim": 0.8, "psnr": 30.0}
        | {"bpp": 0.3, "bytes": 18850.3333},
    )
    assert row.total_inference_s == pytest.approx(3840.0) and row.encode_s == 2400.0
    line = format_study_table([row]).splitlines()[2]
    assert "01:04:00.00" in line and "18850.333" in line and "0.8000" in line
    assert "Non-zero params" not in format_study_table([row])  # unknown sizes: no column


def test_parse_case_id() -> None:
    family, c = parse_case_id("mbt2018-mean-q3/prune=enc0.3,dec0,ent0:l1/quant=none")
    assert family == "mbt2018-mean-q3"
    assert (c.encoder, c.decoder, c.entropy, c.method, c.scope, c.quant) == (
        0.3,
        0,
        0,
        "l1",
        "layer",
        None,
    )
    assert parse_case_id("mbt2018-mean-q3/prune=none/quant=int8")[1] == StudyConfig(quant="int8")
    _, s = parse_case_id("mbt2018-mean-q3/prune=enc0.3,dec0.3,ent0.3:structured/quant=int8")
    assert (s.method, s.quant, s.encoder, s.entropy) == ("structured", "int8", 0.3, 0.3)
    _, g = parse_case_id("mbt2018-mean-q3/prune=enc0.5,dec0.5,ent0.5:l1-global/quant=none")
    assert (g.method, g.scope, g.label.split(":")[1]) == ("l1", "global", "l1-global/quant=none")
    assert parse_case_id("mbt2018-mean-q3") == ("mbt2018-mean-q3", StudyConfig())
    for config in EXTENDED_GRID:  # labels are the tails of the benchmark's case ids
        assert parse_case_id(f"fam/{config.label}")[1].label == config.label
    for bad in (
        "f/prune=enc0.3:l1/quant=none",
        "f/prune=none",
        "f/prune=encx,dec0,ent0:l1/quant=a",
    ):
        with pytest.raises(ValueError):
            parse_case_id(bad)


def test_bench_summary_section(study_table_lines) -> None:
    def summary(case: str, ssim: float) -> dict:
        means = {"bpp": 0.3, "bytes": 100.5, "psnr": 30.0, "ssim": ssim, "ms_ssim": 0.9}
        return {"case": case, "images": 2, **means, "encode_s": 0.5, "decode_s": 0.25}

    ids = [
        "mbt2018-mean-q3/prune=none/quant=int8",
        "mbt2018-mean-q3/prune=enc0.3,dec0,ent0:l1/quant=none",
        "mbt2018-mean-q3",
        "jpeg-q10",
    ]
    lines = study_table_lines({c: summary(c, 0.5 + i / 10) for i, c in enumerate(ids)})
    assert "quality pass" in lines[0] and lines[1].startswith("mbt2018-mean-q3 (2 images")
    body = lines[4:]
    assert len(body) == 3 and not any("jpeg" in line for line in lines)
    assert "0.7000" in body[0] and "0.6000" in body[1] and "int8" in body[2]  # base row first
    assert "00:00:01.50" in body[0]  # (0.5 + 0.25) s per image x 2 images


def test_rows_to_json(study) -> None:
    data = json.loads(json.dumps(rows_to_json(study)))
    assert data[0]["label"] == "prune=none/quant=none" and data[0]["quant"] is None
    # every field, the ratios by component name (the rows' ratio pairs and family are not keys)
    fields = [f for f in StudyRow.__dataclass_fields__ if f not in ("ratios", "family")]
    assert list(data[0]) == ["label", "encoder", "decoder", "entropy", *fields[1:]]


def test_cli_study(tmp_path: Path, capsys) -> None:
    for name, img in _images():
        save_png(img, tmp_path / f"{name}.png")
    out = tmp_path / "study.json"
    args = ["study", "--codec", "mean-scale-hyperprior", "--dataset", f"folder:{tmp_path}"]
    for key, value in TINY.items():
        args += ["-p", f"{key}={json.dumps(value)}"]
    args += ["--images", "1", "--format", "tsv", "--threads", "1", "--json", str(out), "--quiet"]
    assert main([*args, "--repeats", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# ") and "1 images, grid study" in lines[0]
    assert "median of 2 interleaved rounds" in lines[0]
    assert lines[1].split("\t")[:3] == list(HEADERS[:3]) and len(lines) == 1 + 1 + 8 + 1
    head = lines[1].split("\t")
    speedup = lines[3].split("\t")[head.index("Decode speedup")]
    assert re.fullmatch(r"\d+\.\d\dx \(\d+\.\d\d-\d+\.\d\d\)", speedup)
    if "Peak decode memory (MiB)" in head:  # measured where the platform allows (Linux)
        memory = lines[3].split("\t")[head.index("Peak decode memory (MiB)")]
        assert memory.isdigit(), memory
    payload = json.loads(out.read_text())
    assert payload["grid"] == "study" and payload["images"] == ["noisy"]
    assert payload["repeats"] == 2 and "interleaved" in payload["timing"]
    assert [r["label"] for r in payload["rows"]] == [c.label for c in STUDY_GRID]
    assert all(r["images"] == 1 and r["avg_bytes"] > 0 for r in payload["rows"])
    assert all(len(r["decode_rounds"]) == 2 and r["decode_s"] > 0 for r in payload["rows"])


def test_cli_study_passes_train_data(tmp_path: Path, monkeypatch, capsys) -> None:
    import imgcomp.study as study_module

    save_png(_images()[0][1], tmp_path / "a.png")
    seen = {}

    def fake(codec, configs, images, **options):
        seen.update(options, configs=configs)
        return [
            row_from_summary(
                StudyConfig(),
                {"images": 1, "encode_s": 1.0, "decode_s": 1.0}
                | {"ssim": 0.5, "psnr": 20.0, "bpp": 1.0, "bytes": 512.0},
            )
        ]

    monkeypatch.setattr(study_module, "run_study", fake)
    args = ["study", "--codec", "jpeg", "--dataset", f"folder:{tmp_path}", "--quiet"]
    assert main([*args, "--train-data", "folder:/train", "--grid", "extended"]) == 0
    assert seen["data"] == "folder:/train" and seen["repeats"] == 3  # the default rounds
    assert seen["configs"] == EXTENDED_GRID  # the grid stays as it is
    assert main([*args, "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_cli_study_errors(capsys) -> None:
    assert main(["study", "--codec", "jpeg", "--dataset", "folder:/nonexistent/dir"]) == 2
    assert main(["study", "--codec", "mbt2018-mean", "--quality", "3", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--threads" in err
    with pytest.raises(SystemExit):
        main(["study", "--codec", "jpeg", "--grid", "huge"])


# -- the Toderici RNN: the study over another family (its Table 1) -----------------------------
RNN_TINY = {"iterations": 3, "pretrained": False, "width": 0.125}
RNN_HEADERS = [
    "Encoder pruning ratio",
    "Decoder pruning ratio",
    "Total inference time (hh:mm:ss)",
    "SSIM",
    "Avg. compressed image size (B)",
]


@pytest.fixture(scope="module")
def rnn():
    return imgcomp.create_codec("toderici2017", **RNN_TINY)


@pytest.fixture(scope="module")
def rnn_study(rnn):
    """The RNN's study grid (Table 1) on the tiny random model, one timed round."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_study(
            rnn, get_grid("study", family="rnn"), _images(), repeats=1, warmup=0, memory=False
        )
    finally:
        torch.set_num_threads(old)


def test_rnn_grids() -> None:
    grid = get_grid("study", family="rnn")
    assert len(grid) == 4 and grid[0] == StudyConfig(family="rnn")
    assert {(c.encoder, c.decoder) for c in grid} == {(e, d) for e in (0, 0.3) for d in (0, 0.3)}
    assert all(c.ratio("binarizer") == 0 and c.family == "rnn" for c in grid)
    assert [c.label for c in grid] == [
        "prune=none/quant=none",
        "prune=enc0,bin0,dec0.3:l1/quant=none",
        "prune=enc0.3,bin0,dec0:l1/quant=none",
        "prune=enc0.3,bin0,dec0.3:l1/quant=none",
    ]
    extended = get_grid("extended", family="rnn")
    assert extended[:4] == grid and [c.label for c in extended[4:]] == [
        "prune=enc0.3,bin0,dec0.3:structured/quant=none",
        "prune=none/quant=bf16",
        "prune=none/quant=int8",
        "prune=enc0.3,bin0,dec0.3:structured/quant=int8",
    ]
    slim = extended[4]
    assert (slim.importance, slim.recover_steps, slim.round_to) == ("l1", 300, 4)
    assert slim.prune_op.record() == "prune=enc0.3,bin0,dec0.3:structured-l1:round4:recover300"
    assert extended[5].quant_op.record() == "quantize:bf16:encoder+binarizer+decoder"
    assert get_grid("study") == STUDY_GRID == get_grid("study", family="balle")
    with pytest.raises(AttributeError, match="no component 'entropy'"):
        grid[1].entropy  # noqa: B018
    with pytest.raises(imgcomp.ImgcompError, match="unknown component 'entropy'"):
        StudyConfig(entropy=0.3, family="rnn")


def test_rnn_table_has_the_study_columns(rnn_study) -> None:
    tsv = format_study_table(rnn_study, style="tsv", columns="study").splitlines()
    assert tsv[0].split("\t") == RNN_HEADERS and len(tsv) == 1 + 4
    assert [line.split("\t")[:2] for line in tsv[1:]] == [
        ["0", "0"],
        ["0", "0.3"],
        ["0.3", "0"],
        ["0.3", "0.3"],
    ]
    md = format_study_table(rnn_study, style="markdown", columns="study").splitlines()
    assert md[0] == "| " + " | ".join(RNN_HEADERS) + " |"
    full = format_study_table(rnn_study, style="tsv").splitlines()[0].split("\t")
    assert [h for h in full if h in RNN_HEADERS] == RNN_HEADERS  # the extras as Ballé's
    assert "Probability model pruning ratio" not in full and "Binarizer pruning ratio" not in full
    text = format_study_table(rnn_study).splitlines()
    assert text[0].split()[:4] == ["enc", "dec", "method", "quant"] and len(text) == 2 + 4


def test_rnn_rows_come_from_real_streams(rnn_study, rnn) -> None:
    assert [r.label for r in rnn_study] == [c.label for c in get_grid("study", family="rnn")]
    for row in rnn_study:
        assert row.family == "rnn" and row.images == 2
        assert row.avg_bytes > 0 and 0 < row.ssim <= 1
        assert row.total_inference_s == row.encode_s + row.decode_s > 0
    last = get_grid("study", family="rnn")[-1].apply(rnn)
    assert last.ops == ("prune=enc0.3,bin0,dec0.3:l1-layer",)
    assert rnn_study[-1].avg_bytes == np.mean([len(last.encode(img)) for _, img in _images()])
    assert rnn_study[-1].nonzero_parameters < rnn_study[0].nonzero_parameters
    data = rows_to_json(rnn_study)
    assert list(data[0])[:5] == ["label", "encoder", "binarizer", "decoder", "method"]
    assert data[-1]["encoder"] == data[-1]["decoder"] == 0.3 and data[-1]["binarizer"] == 0
    with pytest.raises(ValueError, match="several families"):
        format_study_table([*rnn_study, row_from_summary(StudyConfig(), _SUMMARY)])


_SUMMARY = {"images": 2, "encode_s": 0.5, "decode_s": 0.25, "ssim": 0.5, "psnr": 20.0}
_SUMMARY |= {"bpp": 0.3, "bytes": 100.0}


def test_rnn_configs_round_trip_through_tags_and_case_ids() -> None:
    for config in get_grid("extended", family="rnn"):
        assert config_from_tags(config.prune_tag, config.quant, family="rnn") == config
        assert StudyConfig.from_ops(config.prune_op, config.quant_op, family="rnn") == config
        base, back = parse_case_id(f"toderici2017-i3/{config.label}")
        assert base == "toderici2017-i3" and back.family == "rnn" and back.label == config.label
    l1 = config_from_tags("enc0.3,bin0,dec0.3:l1")  # the tag's abbreviations name the family
    assert l1 == get_grid("study", family="rnn")[-1]
    assert parse_case_id("toderici2017-i3") == ("toderici2017-i3", StudyConfig(family="rnn"))
    assert parse_case_id("x/prune=enc0,bin0.5,dec0:l1/quant=w8")[1].ratio("binarizer") == 0.5
    with pytest.raises(ValueError):  # a Ballé tag on an RNN base
        parse_case_id("toderici2017-i3/prune=enc0.3,dec0,ent0:l1/quant=none")
    with pytest.raises(imgcomp.ImgcompError, match=r"bin0\.3"):
        config_from_tags("enc0.3:l1", family="rnn")


def test_configs_must_be_of_the_codec_family(rnn) -> None:
    with pytest.raises(imgcomp.ImgcompError, match=r"family 'balle'.*of 'rnn'"):
        run_study(rnn, [StudyConfig(quant="bf16")], _images())
    assert StudyConfig().apply(rnn) is rnn  # no ops: nothing to check


def test_configs_the_ops_refuse_are_skipped(rnn, monkeypatch) -> None:
    def no_int8(codec, config, **kwargs):
        raise imgcomp.ImgcompError("no int8 path")

    monkeypatch.setattr(imgcomp, "quantize", no_int8)
    configs = [StudyConfig(family="rnn"), StudyConfig(quant="int8", family="rnn")]
    skipped = []
    rows = run_study(
        rnn, configs, _images()[:1], repeats=1, warmup=0, skip=lambda *a: skipped.append(a)
    )
    assert [r.label for r in rows] == ["prune=none/quant=none"]
    assert [(c.label, str(e)) for c, e in skipped] == [("prune=none/quant=int8", "no int8 path")]
    with pytest.raises(imgcomp.ImgcompError, match="no int8 path"):
        run_study(rnn, configs, _images()[:1], repeats=1, warmup=0)


def test_cli_study_rnn(tmp_path: Path, capsys) -> None:
    for name, img in _images():
        save_png(img, tmp_path / f"{name}.png")
    out = tmp_path / "rnn.json"
    args = ["study", "--codec", "toderici2017", "--iterations", "3", "--pretrained", "false"]
    args += ["-p", "width=0.125", "--dataset", f"folder:{tmp_path}", "--images", "2"]
    args += ["--repeats", "1", "--threads", "1", "--quiet", "--json", str(out)]
    assert main([*args, "--format", "tsv", "--columns", "study"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "grid study" in lines[0] and lines[1].split("\t") == RNN_HEADERS
    assert len(lines) == 1 + 1 + 4 + 1
    payload = json.loads(out.read_text())
    assert payload["params"]["iterations"] == 3 and "skipped" not in payload
    assert [r["label"] for r in payload["rows"]] == [
        c.label for c in get_grid("study", family="rnn")
    ]
    assert all(r["avg_bytes"] > 0 and 0 < r["ssim"] <= 1 for r in payload["rows"])


# -- HiFiC: the study's Table 2 (encoder / generator / probability model) ----------------------
HIFIC_TINY = {"pretrained": False, "channels": 8, "blocks": 1, "hyper_channels": 8, "width": 0.05}
HIFIC_HEADERS = [
    "Encoder pruning ratio",
    "Generator pruning ratio",
    "Probability model pruning ratio",
    "Total inference time (hh:mm:ss)",
    "SSIM",
    "Avg. compressed image size (B)",
]


def test_hific_grids() -> None:
    grid = get_grid("study", family="hific")
    assert len(grid) == 8 and grid[0] == StudyConfig(family="hific")
    assert {(c.ratio("encoder"), c.ratio("generator"), c.ratio("probability")) for c in grid} == {
        (e, g, p) for e in (0, 0.3) for g in (0, 0.3) for p in (0, 0.3)
    }
    assert grid[-1].label == "prune=enc0.3,gen0.3,pro0.3:l1/quant=none"
    extended = get_grid("extended", family="hific")
    assert extended[:8] == grid and [c.label for c in extended[8:]] == [
        "prune=enc0,gen0.3,pro0:structured/quant=none",
        "prune=none/quant=bf16",
        "prune=none/quant=int8",
        "prune=enc0,gen0.3,pro0:structured/quant=int8",
    ]
    # the target's structured configuration: the generator alone, with recovery
    slim = extended[8]
    assert slim.ratio_map == {"encoder": 0.0, "generator": 0.3, "probability": 0.0}
    assert (slim.importance, slim.recover_steps, slim.round_to) == ("l1", 300, 4)
    assert extended[10].quant_op.record() == "quantize:int8:encoder+generator+probability"
    for config in extended:
        assert config_from_tags(config.prune_tag, config.quant, family="hific") == config
        base, back = parse_case_id(f"hific/{config.label}")
        assert base == "hific" and back.family == "hific" and back.label == config.label
    assert parse_case_id("hific") == ("hific", StudyConfig(family="hific"))


def test_hific_table_has_table2_columns() -> None:
    rows = [row_from_summary(c, _SUMMARY) for c in get_grid("extended", family="hific")]
    tsv = format_study_table(rows, style="tsv", columns="study").splitlines()
    assert tsv[0].split("\t") == HIFIC_HEADERS and len(tsv) == 1 + 12
    md = format_study_table(rows, style="markdown", columns="study").splitlines()
    assert md[0] == "| " + " | ".join(HIFIC_HEADERS) + " |"
    full = format_study_table(rows, style="tsv").splitlines()
    assert [h for h in full[0].split("\t") if h in HIFIC_HEADERS] == HIFIC_HEADERS
    assert full[9].split("\t")[:5] == ["0", "0.3", "0", "structured", "-"]
    assert full[11].split("\t")[:5] == ["0", "0", "0", "-", "int8"]
    assert format_study_table(rows).splitlines()[0].split()[:5] == [
        "enc",
        "gen",
        "pro",
        "method",
        "quant",
    ]


def test_cli_study_hific(tmp_path: Path, capsys) -> None:
    for name, img in _images():
        save_png(img, tmp_path / f"{name}.png")
    args = ["study", "--codec", "hific", "--dataset", f"folder:{tmp_path}", "--images", "1"]
    for key, value in HIFIC_TINY.items():
        args += ["-p", f"{key}={json.dumps(value)}"]
    args += ["--repeats", "1", "--threads", "1", "--quiet", "--format", "tsv"]
    assert main([*args, "--columns", "study"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "grid study" in lines[0] and lines[1].split("\t") == HIFIC_HEADERS
    assert len(lines) == 1 + 1 + 8
    assert [line.split("\t")[:3] for line in lines[2:4]] == [["0", "0", "0"], ["0", "0", "0.3"]]
