"""The report's visual comparison: the suite's crops (bench.quality_json) are the decoded pixels
of real bitstreams, the report picks each codec's setting nearest the target rate, copies the
crops beside its page and links nothing that is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from bench import quality_json
from imgcomp.evaluate import evaluate, summarize
from imgcomp.images import load_image
from imgcomp.registry import create_codec
from imgcomp.report import ReportWarning, build_report
from imgcomp.report.crops import TARGET_BPP
from tests.test_report import MACHINE, WHEN, _Refs, summary, write_quality

REPO = Path(__file__).resolve().parent.parent
BASE = "mbt2018-mean-q3"
INT8 = f"{BASE}/prune=none/quant=int8"
L1 = f"{BASE}/prune=enc0.3,dec0.3,ent0.3:l1/quant=none"
#: Case id -> (codec, quality) that decodes its crop: real jpeg / webp streams; the learned
#: cases borrow jpeg's (the report does not look at what made the pixels).
CASES = {
    "jpeg-q10": ("jpeg", 10),
    "jpeg-q50": ("jpeg", 50),
    "jpeg-q90": ("jpeg", 90),
    "webp-q50": ("webp", 50),
    BASE: ("jpeg", 30),
    INT8: ("jpeg", 25),
    L1: ("jpeg", 20),
}


def images() -> list[tuple[str, np.ndarray]]:
    """Two small photos: the first (160 x 224) gets the crop."""
    from skimage import data

    return [
        ("astronaut", np.ascontiguousarray(data.astronaut()[::2, ::2][:160, :224])),
        ("coffee", np.ascontiguousarray(data.coffee()[:96, :128])),
    ]


def run_cases(cases: dict[str, tuple[str, int]]) -> tuple[dict, dict, dict]:
    """Each case over :func:`images` as the suite's quality pass runs it (round trip verified,
    ``on_decoded`` keeping the first image's crop): summaries, per-image rows, crop records."""
    crops = quality_json.Crops()
    summaries, per_image = {}, {}
    for case_id, (name, quality) in cases.items():
        codec = create_codec(name, quality=quality)
        results = evaluate(codec, images(), verify=True, on_decoded=crops.keeper(case_id))
        summaries[case_id] = {"case": case_id, "images": len(results), **summarize(results)}
        summaries[case_id] |= {"baseline_ssim": None, "baseline_bpp": None, "gate": "ok"}
        per_image[case_id] = [r.as_dict() for r in results]
    records = {case_id: crops.record(case_id) for case_id in cases}
    return summaries, per_image, records


def write_with_crops(path: Path, cases: dict = CASES, when=WHEN, **options) -> Path:
    """A quality results file with its crops, as the suite writes it at the end of a run
    (``options``: run options besides matrix, dataset and images)."""
    summaries, per_image, records = run_cases(cases)
    records = json.loads(json.dumps(records))  # what an xdist worker's user properties carry
    data = quality_json.payload(
        summaries,
        per_image,
        {"matrix": "default", "dataset": "kodak", "images": 2, **options},
        when=when,
        commit={"id": "c" * 40, "short": "ccccccc", "dirty": False},
        machine=MACHINE,
    )
    return quality_json.write(path, data, crops=records)


def crop_inputs(folder: Path) -> Path:
    """A folder with one quality results file and its crops (for the browser test too)."""
    write_with_crops(folder / "imgcomp-quality" / "20261201T100000Z_ccccccc.json")
    return folder


def decoded_crop(case_id: str) -> np.ndarray:
    """The crop of the first image decoded afresh from the case's stream."""
    name, quality = CASES[case_id]
    codec = create_codec(name, quality=quality)
    img = images()[0][1]
    top, left, h, w = quality_json.crop_box(img)
    return codec.decode(codec.encode(img))[top : top + h, left : left + w]


@pytest.fixture(scope="module")
def crops_report(tmp_path_factory):
    folder = crop_inputs(tmp_path_factory.mktemp("in"))
    return build_report([folder], tmp_path_factory.mktemp("out"))


def test_crop_box_is_the_square_of_most_detail() -> None:
    img = np.full((256, 320, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    img[64:192, 160:288] = noise
    assert quality_json.crop_box(img) == (64, 160, 128, 128)
    assert quality_json.crop_box(img[:100, :90]) == (0, 0, 100, 90)  # smaller: the whole side


def test_the_saved_crops_are_the_decoded_pixels(tmp_path: Path) -> None:
    path = write_with_crops(tmp_path / "run" / "q.json", {"jpeg-q50": CASES["jpeg-q50"]})
    case = json.loads(path.read_text())["cases"]["jpeg-q50"]
    first, second = case["per_image"]
    assert first["image"] == "astronaut" and "crop" not in second
    crop = first["crop"]
    top, left, h, w = crop["box"]
    assert (h, w) == (128, 128) and crop["decoded"].startswith("crops/q/")
    decoded = load_image(path.parent / crop["decoded"])
    np.testing.assert_array_equal(decoded, decoded_crop("jpeg-q50"))
    original = load_image(path.parent / crop["original"])
    np.testing.assert_array_equal(original, images()[0][1][top : top + h, left : left + w])
    assert not np.array_equal(decoded, original)  # jpeg q50 is lossy: not the original again


def test_the_report_shows_each_codec_near_the_target_bpp(crops_report) -> None:
    report = crops_report
    plain, ops = report.galleries.values()
    assert plain.image == "astronaut" and "nearest 0.3 bpp" in plain.title
    assert plain.tiles[0].label == "original" and plain.tiles[0].case is None
    by_codec = {quality_json.case_fields(t.case)["codec"]: t for t in plain.tiles[1:]}
    assert sorted(by_codec) == ["jpeg", "mbt2018-mean", "webp"]
    data = json.loads(next(p for p, k in report.files if k == "quality").read_text())
    jpeg_bpp = {
        cid: c["per_image"][0]["bpp"] for cid, c in data["cases"].items() if cid.startswith("jpeg")
    }
    nearest = min(jpeg_bpp, key=lambda cid: abs(jpeg_bpp[cid] - TARGET_BPP))
    assert by_codec["jpeg"].case == nearest and by_codec["jpeg"].bpp == jpeg_bpp[nearest]
    assert [t.case for t in ops.tiles] == [None, BASE, L1, INT8]  # unmodified first, then ops
    assert "mbt2018-mean and its compression ops" in ops.title
    for tile in plain.tiles[1:] + ops.tiles[1:]:
        assert tile.file.parent.parent == report.out_dir / "crops"
        assert tile.ssim == data["cases"][tile.case]["per_image"][0]["ssim"]
    jpeg = by_codec["jpeg"]
    np.testing.assert_array_equal(load_image(jpeg.file), decoded_crop(jpeg.case))
    assert len({t.file for t in plain.tiles[:1] + ops.tiles[:1]}) == 1  # one original copy
    page = report.index.read_text()
    assert 'href="#visual"' in page and "Visual comparison" in page
    assert f"<b>{nearest}</b><br>{jpeg.bpp:.3f} bpp, SSIM {jpeg.ssim:.4f}" in page


def test_the_page_links_only_files_it_holds(crops_report) -> None:
    parser = _Refs()
    parser.feed(crops_report.index.read_text())
    files = [r for r in parser.refs if not r.startswith("#")]
    assert all("://" not in r and (crops_report.out_dir / r).is_file() for r in files), files
    shown = {crops_report.out_dir / r for r in files if r.startswith("crops/")}
    tiles = {t.file for g in crops_report.galleries.values() for t in g.tiles}
    assert shown == tiles  # the original, one jpeg (the nearest), webp and the learned three
    assert len(tiles) == 1 + 1 + 1 + 3


def test_a_report_without_crops_has_no_visual_section(tmp_path: Path) -> None:
    write_quality(tmp_path / "in" / "q.json", [summary("jpeg-q75", 1.2, 0.93)])
    report = build_report([tmp_path / "in"], tmp_path / "out")
    page = report.index.read_text()
    assert not report.galleries and "Visual comparison" not in page and "#visual" not in page
    assert not (tmp_path / "out" / "crops").exists() and "crops/" not in page


def test_a_missing_crop_is_left_out_with_a_warning(tmp_path: Path) -> None:
    cases = {k: CASES[k] for k in ("jpeg-q10", "webp-q50")}
    path = write_with_crops(tmp_path / "in" / "q.json", cases)
    webp = json.loads(path.read_text())["cases"]["webp-q50"]["per_image"][0]["crop"]["decoded"]
    (path.parent / webp).unlink()
    with pytest.warns(ReportWarning, match="the crop of webp-q50"):
        report = build_report([tmp_path / "in"], tmp_path / "out")
    (gallery,) = report.galleries.values()
    assert [t.case for t in gallery.tiles] == [None, "jpeg-q10"]
    parser = _Refs()
    parser.feed(report.index.read_text())
    assert all((report.out_dir / r).is_file() for r in parser.refs if not r.startswith("#"))


def test_a_later_run_of_a_case_replaces_its_crop(tmp_path: Path) -> None:
    write_with_crops(tmp_path / "a" / "q1.json", {"jpeg-q10": CASES["jpeg-q10"]})
    later = WHEN + timedelta(hours=1)
    write_with_crops(tmp_path / "b" / "q2.json", {"jpeg-q10": ("jpeg", 12)}, when=later)
    report = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    (gallery,) = report.galleries.values()
    assert [t.source.parent.name for t in gallery.tiles[1:]] == ["q2"]


def test_the_shards_of_a_run_show_every_part_crop(tmp_path: Path) -> None:
    """Two shards of one run, downloaded into two folders (each with its crops): the loader
    joins them into one run and each crop is found beside its own file."""
    first = {k: CASES[k] for k in ("jpeg-q10", BASE)}
    write_with_crops(tmp_path / "shard-1" / "q.json", first, shard="1/2")
    write_with_crops(tmp_path / "shard-2" / "q.json", {INT8: CASES[INT8]}, shard="2/2")
    report = build_report([tmp_path / "shard-1", tmp_path / "shard-2"], tmp_path / "out")
    plain, ops = report.galleries.values()
    assert [t.case for t in plain.tiles] == [None, "jpeg-q10", BASE]
    assert [t.case for t in ops.tiles] == [None, BASE, INT8]
    assert ops.tiles[2].source.parent.parent.parent.name == "shard-2"


def test_the_suite_saves_each_case_crop(tmp_path: Path) -> None:
    """``pytest bench`` itself, one classic case on two bundled photos: the quality file names
    the first image's crop, and it equals that image decoded from the case's stream."""
    out = tmp_path / "q.json"
    env = {**os.environ, "IMGCOMP_PROGRESS": "0"}
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "bench", "-q", "-n", "0", "-p", "no:cacheprovider"),
            *("--dataset", "sample", "--images", "2", "--case", "jpeg-q75", "--benchmark-skip"),
            *("-k", "test_quality", "--quality-json", str(out)),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    case = json.loads(out.read_text())["cases"]["jpeg-q75"]
    assert "crop" in case["per_image"][0], "the suite saved no crop (bench/conftest.py, case_crops)"
    crop = case["per_image"][0]["crop"]
    from bench.cases import all_cases
    from imgcomp.data import load_dataset

    (jpeg,) = [c for c in all_cases("default") if c.id == "jpeg-q75"]
    codec = jpeg.build()
    item = next(iter(load_dataset("sample", download=False)))
    img = item.load()
    top, left, h, w = crop["box"]
    assert case["per_image"][0]["image"] == item.name
    expected = codec.decode(codec.encode(img))[top : top + h, left : left + w]
    np.testing.assert_array_equal(load_image(out.parent / crop["decoded"]), expected)
    np.testing.assert_array_equal(
        load_image(out.parent / crop["original"]), img[top : top + h, left : left + w]
    )
