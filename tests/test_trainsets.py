"""imgcomp.trainsets: the offline bundled set, folders, published archives (no real network), and
the refusal of Kodak by name, by file digest and by pixels."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcomp import trainsets
from imgcomp.errors import ChecksumError, DatasetError
from imgcomp.ops.quant.calibration import calibration_images
from imgcomp.train.data import load_training_image
from imgcomp.trainsets import (
    ARCHIVES,
    BUNDLED,
    Archive,
    default_training_spec,
    load_training_set,
)


def png(seed: int, shape=(40, 56, 3)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


class Server:
    """Stands in for urllib.request.urlopen: one payload for every URL, requests recorded."""

    def __init__(self, payload: bytes | None = None, error: Exception | None = None):
        self.payload, self.error, self.urls = payload, error, []

    def __call__(self, request, timeout=None):
        self.urls.append(request.full_url)
        if self.error is not None:
            raise self.error
        return io.BytesIO(self.payload)


@pytest.fixture
def isolated(offline, monkeypatch):
    """Private cache, no IMGCOMP_TRAIN_DIR, a network that fails the test if touched."""
    monkeypatch.delenv("IMGCOMP_TRAIN_DIR", raising=False)
    return offline


@pytest.fixture
def fake_archive(monkeypatch):
    """A small zip registered as the published set "clic2020-valid" (its digest and size)."""
    payload = zip_bytes(
        {
            "valid/a.png": png(1),
            "valid/sub/b.png": png(2),
            "valid/readme.txt": b"not an image",
            "__MACOSX/valid/._a.png": b"resource fork",
        }
    )
    digest = hashlib.sha256(payload).hexdigest()
    archive = Archive("https://example.invalid/valid.zip", len(payload), digest, "test set")
    monkeypatch.setitem(ARCHIVES, "clic2020-valid", archive)
    return payload


# --- defaults and the bundled set ----------------------------------------------------------------


def test_default_is_the_bundled_set_offline(isolated) -> None:
    assert default_training_spec() == "bundled"
    ts = load_training_set()
    assert ts.name == "bundled"
    assert [p.name for p in ts.files] == [name for _, name, _ in BUNDLED]
    assert all(p.is_file() for p in ts.files)


def test_default_follows_imgcomp_train_dir(isolated, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "x.png").write_bytes(png(3))
    monkeypatch.setenv("IMGCOMP_TRAIN_DIR", str(folder))
    ts = load_training_set()
    assert ts.files == (folder / "x.png",)


def test_bundled_files_are_checked_against_their_digests(isolated, monkeypatch) -> None:
    package, name, _ = BUNDLED[0]
    monkeypatch.setattr(trainsets, "BUNDLED", ((package, name, "0" * 64), *BUNDLED[1:]))
    with pytest.raises(ChecksumError, match=name):
        load_training_set("bundled")


def test_bundled_set_shares_no_image_with_the_sample_dataset() -> None:
    from imgcomp.data import load_dataset

    sample = {p.name for p in load_dataset("sample").paths}
    bundled = {name for _, name, _ in BUNDLED}
    assert not sample & bundled
    assert "motorcycle_right.png" not in bundled  # the stereo twin of sample's motorcycle_left


def test_unknown_name_lists_the_choices(isolated) -> None:
    with pytest.raises(DatasetError, match="clic2020-valid"):
        load_training_set("bundeld")


def test_folder_fingerprint_is_the_checkpoint_one(isolated, tmp_path) -> None:
    folder = tmp_path / "imgs"
    (folder / "s").mkdir(parents=True)
    (folder / "a.png").write_bytes(png(4))
    (folder / "s" / "b.png").write_bytes(png(5))
    ts = load_training_set(f"folder:{folder}")
    assert ts.keys == ("a.png", "s/b.png")
    # the layout checkpoints have always stored: "<relative path>\t<size>\n" per file, hashed
    lines = "".join(f"{k}\t{(folder / k).stat().st_size}\n" for k in ts.keys)
    assert ts.fingerprint() == hashlib.sha256(lines.encode()).hexdigest()


# --- Kodak is refused -----------------------------------------------------------------------------


def test_kodak_by_name_is_refused(isolated, tmp_path) -> None:
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "kodim07.png").write_bytes(png(6))
    with pytest.raises(DatasetError, match="Kodak"):
        load_training_set(folder)


def test_renamed_kodak_copy_is_refused_by_digest(isolated, tmp_path, monkeypatch) -> None:
    content = png(7)
    monkeypatch.setattr(
        trainsets, "_KODAK_FILE_DIGESTS", frozenset({hashlib.sha256(content).hexdigest()})
    )
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "holiday.png").write_bytes(content)
    with pytest.raises(DatasetError, match="by sha256"):
        load_training_set(folder)


def test_resaved_kodak_pixels_are_refused(isolated, tmp_path, monkeypatch) -> None:
    arr = np.random.default_rng(8).integers(0, 256, (512, 768, 3), dtype=np.uint8)
    monkeypatch.setattr(
        trainsets, "_KODAK_PIXEL_DIGESTS", frozenset({hashlib.sha256(arr.tobytes()).hexdigest()})
    )
    folder = tmp_path / "k"
    folder.mkdir()
    Image.fromarray(arr).save(folder / "photo.bmp")  # another format, the same pixels
    with pytest.raises(DatasetError, match="pixels of a Kodak image"):
        load_training_image(folder / "photo.bmp")
    with pytest.raises(DatasetError, match="pixels of a Kodak image"):
        calibration_images(n=1, data_dir=folder)


def test_real_kodak_is_refused(kodak_dir) -> None:
    with pytest.raises(DatasetError, match="Kodak"):
        load_training_set(kodak_dir)


# --- published archives ---------------------------------------------------------------------------


def test_archive_is_downloaded_checked_extracted_once(isolated, fake_archive, monkeypatch) -> None:
    server = Server(fake_archive)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    ts = load_training_set("clic2020-valid", progress=False)
    assert ts.keys == ("valid/a.png", "valid/sub/b.png")  # no text file, no macOS resource fork
    assert server.urls == ["https://example.invalid/valid.zip"]
    folder = isolated / "cache" / "trainsets" / "clic2020-valid"
    assert (folder / "SHA256SUMS").is_file()
    assert not list(folder.parent.glob(".*"))  # no work folder left behind
    again = load_training_set("clic2020-valid")  # from the cache: no second request
    assert again.files == ts.files and len(server.urls) == 1


def test_archive_with_wrong_digest_is_refused_and_nothing_kept(
    isolated, fake_archive, monkeypatch
) -> None:
    flipped = fake_archive[:60] + bytes([fake_archive[60] ^ 1]) + fake_archive[61:]
    monkeypatch.setattr(urllib.request, "urlopen", Server(flipped))
    with pytest.raises(ChecksumError, match="refusing"):
        load_training_set("clic2020-valid", progress=False)
    parent = isolated / "cache" / "trainsets"
    assert sorted(p.name for p in parent.iterdir()) == []


def test_archive_larger_than_published_is_cut_off(isolated, fake_archive, monkeypatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", Server(fake_archive + b"x" * 10))
    with pytest.raises(DatasetError, match="more than"):
        load_training_set("clic2020-valid", progress=False)


def test_tampered_extracted_file_is_refused(isolated, fake_archive, monkeypatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", Server(fake_archive))
    ts = load_training_set("clic2020-valid", progress=False)
    ts.files[0].write_bytes(png(99))
    with pytest.raises(ChecksumError, match="recorded at extraction"):
        load_training_set("clic2020-valid")


def test_unsafe_member_path_is_refused(isolated, monkeypatch) -> None:
    payload = zip_bytes({"../evil.png": png(9)})
    archive = Archive("https://example.invalid/e.zip", len(payload), _sha(payload), "evil")
    monkeypatch.setitem(ARCHIVES, "clic2020-valid", archive)
    monkeypatch.setattr(urllib.request, "urlopen", Server(payload))
    with pytest.raises(DatasetError, match="unsafe member path"):
        load_training_set("clic2020-valid", progress=False)
    assert not (isolated / "cache" / "evil.png").exists()


def test_no_network_gives_the_offline_hint(isolated, fake_archive, monkeypatch) -> None:
    error = urllib.error.URLError("no route to host")
    monkeypatch.setattr(urllib.request, "urlopen", Server(error=error))
    with pytest.raises(DatasetError, match="bundled"):
        load_training_set("clic2020-valid", progress=False)


def test_download_disabled_says_so(isolated, fake_archive) -> None:
    with pytest.raises(DatasetError, match="download is disabled"):
        load_training_set("clic2020-valid", download=False)


def test_published_digests_are_well_formed() -> None:
    for name, archive in ARCHIVES.items():
        assert archive.url.startswith("https://data.vision.ee.ethz.ch/"), name
        assert len(archive.sha256) == 64 and int(archive.sha256, 16) >= 0
        assert archive.size > 10**8


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_paths_are_accepted_as_pathlike(isolated, tmp_path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(_jpeg())
    assert load_training_set(Path(folder)).keys == ("x.jpg",)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), 120, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()
