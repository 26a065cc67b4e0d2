"""imgcomp.data: specs, Kodak lookup, verification, download (no real network), sample, folder."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import platformdirs
import pytest
from PIL import Image

from imgcomp import data
from imgcomp.data import (
    IMAGE_SUFFIXES,
    KODAK_SHA256,
    KODAK_URL,
    Dataset,
    ImageItem,
    available_datasets,
    cache_dir,
    load_dataset,
)
from imgcomp.errors import ChecksumError, DatasetError

KODAK_NAMES = [f"kodim{i:02d}.png" for i in range(1, 25)]


def sha256(data_: bytes) -> str:
    return hashlib.sha256(data_).hexdigest()


class FakeServer:
    """Stands in for urllib.request.urlopen: serves bytes per file name, records requests."""

    def __init__(self, files: dict[str, bytes] | None = None, error: Exception | None = None):
        self.files = files or {}
        self.error = error
        self.requests: list[tuple[str, float | None]] = []

    def __call__(self, request, timeout=None):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        self.requests.append((url, timeout))
        if self.error is not None:
            raise self.error
        name = url.rsplit("/", 1)[-1]
        if name not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]
        return io.BytesIO(self.files[name])

    @property
    def names(self) -> list[str]:
        return [url.rsplit("/", 1)[-1] for url, _ in self.requests]


@pytest.fixture
def env(offline, monkeypatch):
    """Isolated cache, no IMGCOMP_KODAK_DIR, and a network that fails the test if touched."""
    monkeypatch.delenv("IMGCOMP_KODAK_DIR", raising=False)
    return offline


def tiny_png(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def fake_kodak(monkeypatch) -> dict[str, bytes]:
    """24 small distinct PNGs with their digests installed as the published ones."""
    files = {name: tiny_png(i) for i, name in enumerate(KODAK_NAMES)}
    monkeypatch.setattr(data, "KODAK_SHA256", {n: sha256(b) for n, b in files.items()})
    return files


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- the embedded digests ------------------------------------------------------------------------


def test_embedded_digests_cover_the_24_files():
    assert list(KODAK_SHA256) == KODAK_NAMES
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in KODAK_SHA256.values())
    assert len(set(KODAK_SHA256.values())) == 24


def test_embedded_digests_equal_the_published_sha256sums(kodak_dir):
    sums = kodak_dir / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(
            "set IMGCOMP_KODAK_DIR to a Kodak folder that also holds SHA256SUMS (the published "
            f"sha256 of each image, as in shared/data/kodak); not found: {sums}"
        )
    published = {}
    for line in sums.read_text().splitlines():
        digest, name = line.split()
        published[name.lstrip("*")] = digest
    assert published == KODAK_SHA256


# --- IMGCOMP_KODAK_DIR ---------------------------------------------------------------------------


def test_kodak_dir_with_all_valid_files(env, fake_kodak, monkeypatch):
    folder = write_files(env / "k", fake_kodak)
    monkeypatch.setenv("IMGCOMP_KODAK_DIR", str(folder))
    ds = load_dataset("kodak")
    assert ds.name == "kodak" and len(ds) == 24
    assert ds.names == tuple(n[:-4] for n in KODAK_NAMES)
    assert ds.paths == tuple(folder / n for n in KODAK_NAMES)
    item = ds[0]
    assert item.load().shape == (4, 6, 3)
    assert leftovers(env / "cache") == []  # nothing cached or downloaded


def test_kodak_dir_with_one_altered_file_is_refused(env, fake_kodak, monkeypatch):
    files = dict(fake_kodak)
    files["kodim07.png"] = files["kodim07.png"][:-1] + b"\x00"
    folder = write_files(env / "k", files)
    monkeypatch.setenv("IMGCOMP_KODAK_DIR", str(folder))
    with pytest.raises(ChecksumError) as info:
        load_dataset("kodak")
    msg = str(info.value)
    assert "kodim07.png" in msg
    assert data.KODAK_SHA256["kodim07.png"] in msg
    assert sha256(files["kodim07.png"]) in msg
    assert (folder / "kodim07.png").exists()  # the user's own file is left alone


def test_kodak_dir_missing_a_file_does_not_fall_through(env, fake_kodak, monkeypatch):
    files = {n: b for n, b in fake_kodak.items() if n != "kodim24.png"}
    monkeypatch.setenv("IMGCOMP_KODAK_DIR", str(write_files(env / "k", files)))
    write_files(env / "cache" / "kodak", fake_kodak)  # a complete cache must not be used instead
    with pytest.raises(DatasetError, match=r"kodim24\.png") as info:
        load_dataset("kodak")
    assert not isinstance(info.value, ChecksumError)


def test_kodak_dir_that_is_not_a_directory(env, monkeypatch):
    monkeypatch.setenv("IMGCOMP_KODAK_DIR", str(env / "absent"))
    with pytest.raises(DatasetError, match="IMGCOMP_KODAK_DIR"):
        load_dataset("kodak")


def test_real_kodak_dir_with_one_altered_file(env, kodak_dir, monkeypatch):
    folder = env / "k"
    folder.mkdir()
    for name in KODAK_NAMES:
        (folder / name).symlink_to(kodak_dir / name)
    (folder / "kodim13.png").unlink()
    content = bytearray((kodak_dir / "kodim13.png").read_bytes())
    content[-100] ^= 0xFF
    (folder / "kodim13.png").write_bytes(bytes(content))
    monkeypatch.setenv("IMGCOMP_KODAK_DIR", str(folder))
    with pytest.raises(ChecksumError, match=r"kodim13\.png") as info:
        load_dataset("kodak")
    assert KODAK_SHA256["kodim13.png"] in str(info.value)


# --- cache ---------------------------------------------------------------------------------------


def test_cache_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("IMGCOMP_CACHE_DIR", raising=False)
    assert cache_dir() == Path(platformdirs.user_cache_dir("imgcomp"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IMGCOMP_CACHE_DIR", "~/c")
    assert cache_dir() == tmp_path / "c"


def test_complete_cache_is_used_without_network(env, fake_kodak):
    folder = write_files(env / "cache" / "kodak", fake_kodak)
    ds = load_dataset("kodak")
    assert ds.paths == tuple(folder / n for n in KODAK_NAMES)


def test_corrupt_cached_file_is_deleted_and_downloaded_again(env, fake_kodak, monkeypatch):
    files = dict(fake_kodak)
    files["kodim03.png"] = b"garbage"
    folder = write_files(env / "cache" / "kodak", files)
    server = FakeServer(fake_kodak)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    with pytest.warns(UserWarning, match=r"kodim03\.png"):
        ds = load_dataset("kodak", progress=False)
    assert server.names == ["kodim03.png"]
    assert (folder / "kodim03.png").read_bytes() == fake_kodak["kodim03.png"]
    assert len(ds) == 24


def test_corrupt_cached_file_without_download_raises_and_is_deleted(env, fake_kodak):
    files = dict(fake_kodak)
    files["kodim03.png"] = b"garbage"
    folder = write_files(env / "cache" / "kodak", files)
    with pytest.warns(UserWarning), pytest.raises(ChecksumError, match=r"kodim03\.png"):
        load_dataset("kodak", download=False)
    assert not (folder / "kodim03.png").exists()


def test_no_local_copy_and_download_disabled(env, fake_kodak):
    with pytest.raises(DatasetError, match="download is disabled") as info:
        load_dataset("kodak", download=False)
    assert "IMGCOMP_KODAK_DIR" in str(info.value) and "sample" in str(info.value)


def test_verification_is_cached_per_process_and_notices_changes(env, fake_kodak):
    folder = write_files(env / "cache" / "kodak", fake_kodak)
    load_dataset("kodak")
    before = data._sha256_cached.cache_info()
    load_dataset("kodak")
    after = data._sha256_cached.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 24
    path = folder / "kodim05.png"
    path.write_bytes(path.read_bytes() + b"x")  # new size and mtime: hashed again
    with pytest.warns(UserWarning, match=r"kodim05\.png"), pytest.raises(ChecksumError):
        load_dataset("kodak", download=False)


# --- download ------------------------------------------------------------------------------------


def test_download_fills_empty_cache(env, fake_kodak, monkeypatch):
    server = FakeServer(fake_kodak)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    ds = load_dataset("kodak", progress=False)
    folder = env / "cache" / "kodak"
    assert leftovers(folder) == KODAK_NAMES  # no temp files left behind
    assert [u for u, _ in server.requests] == [KODAK_URL.format(name=n) for n in KODAK_NAMES]
    assert all(t is not None and 0 < t <= 120 for _, t in server.requests)
    assert all((folder / n).read_bytes() == b for n, b in fake_kodak.items())
    assert ds.paths == tuple(folder / n for n in KODAK_NAMES)


def test_download_only_missing_files(env, fake_kodak, monkeypatch):
    present = {n: b for n, b in fake_kodak.items() if n not in ("kodim02.png", "kodim20.png")}
    write_files(env / "cache" / "kodak", present)
    server = FakeServer(fake_kodak)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    load_dataset("kodak", progress=False)
    assert server.names == ["kodim02.png", "kodim20.png"]


def test_download_of_wrong_bytes_is_refused_and_leaves_nothing(env, fake_kodak, monkeypatch):
    served = dict(fake_kodak)
    served["kodim01.png"] = b"<html>moved</html>"
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(served))
    with pytest.raises(ChecksumError) as info:
        load_dataset("kodak", progress=False)
    msg = str(info.value)
    assert "kodim01.png" in msg
    assert data.KODAK_SHA256["kodim01.png"] in msg and sha256(b"<html>moved</html>") in msg
    assert leftovers(env / "cache" / "kodak") == []


@pytest.mark.parametrize(
    "error",
    [urllib.error.URLError("Name or service not known"), TimeoutError("timed out"), OSError(101)],
)
def test_network_failure_is_a_dataset_error_with_advice(env, fake_kodak, monkeypatch, error):
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(error=error))
    with pytest.raises(DatasetError) as info:
        load_dataset("kodak", progress=False)
    assert not isinstance(info.value, ChecksumError)
    assert "IMGCOMP_KODAK_DIR" in str(info.value) and "--dataset sample" in str(info.value)
    assert leftovers(env / "cache" / "kodak") == []


def test_http_error_is_a_dataset_error(env, fake_kodak, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer({}))  # every file 404s
    with pytest.raises(DatasetError, match="404"):
        load_dataset("kodak", progress=False)
    assert leftovers(env / "cache" / "kodak") == []


def test_download_with_real_files_and_real_digests(env, kodak_dir, monkeypatch):
    served = {n: (kodak_dir / n).read_bytes() for n in KODAK_NAMES}
    server = FakeServer(served)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    ds = load_dataset("kodak", progress=False)
    folder = env / "cache" / "kodak"
    assert leftovers(folder) == KODAK_NAMES
    for name in KODAK_NAMES:
        assert sha256((folder / name).read_bytes()) == KODAK_SHA256[name]
    assert ds[0].load().shape in ((512, 768, 3), (768, 512, 3))
    assert len(server.requests) == 24


def test_real_download_serving_a_different_kodak_image_is_refused(env, kodak_dir, monkeypatch):
    served = {n: (kodak_dir / n).read_bytes() for n in KODAK_NAMES}
    served["kodim02.png"] = served["kodim01.png"]  # a valid PNG, but the wrong one
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(served))
    with pytest.raises(ChecksumError, match=r"kodim02\.png"):
        load_dataset("kodak", progress=False)
    assert "kodim02.png" not in leftovers(env / "cache" / "kodak")


# --- real Kodak ----------------------------------------------------------------------------------


def test_real_kodak(kodak_dir, monkeypatch):
    monkeypatch.setenv("IMGCOMP_KODAK_DIR", str(kodak_dir))
    ds = load_dataset("kodak", download=False)
    assert len(ds) == 24 and ds.names[0] == "kodim01" and ds.names[-1] == "kodim24"
    for item in ds:
        img = item.load()
        assert img.dtype == np.uint8 and img.shape in ((512, 768, 3), (768, 512, 3)), item.name


# --- sample --------------------------------------------------------------------------------------


def test_sample_is_offline_colour_and_matches_skimage(env):
    import skimage.data

    ds = load_dataset("sample", download=False)
    assert ds.name == "sample" and len(ds) >= 3
    assert leftovers(env / "cache") == []
    reference = {
        "astronaut": skimage.data.astronaut,
        "chelsea": skimage.data.chelsea,
        "coffee": skimage.data.coffee,
        "motorcycle_left": lambda: skimage.data.stereo_motorcycle()[0],
    }
    for item in ds:
        img = item.load()
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert not (img[..., 0] == img[..., 1]).all()  # genuinely colour
        np.testing.assert_array_equal(img, reference[item.name]())


# --- folder --------------------------------------------------------------------------------------


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (10, 20, 30)).save(buf, format=fmt)
    return buf.getvalue()


def test_folder_filters_and_sorts(tmp_path):
    png = _image_bytes("PNG")
    for name in ["b.png", "a.JPG", "c.jpeg", "d.BMP", "e.tif", "f.TIFF", "g.webp", "h.ppm"]:
        (tmp_path / name).write_bytes(png)
    for name in ["notes.txt", "x.gif", "y.png.bak", ".hidden.png", "noext"]:
        (tmp_path / name).write_bytes(png)
    (tmp_path / "sub.png").mkdir()
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "z.png").write_bytes(png)
    ds = load_dataset(f"folder:{tmp_path}")
    assert [p.name for p in ds.paths] == [
        "a.JPG", "b.png", "c.jpeg", "d.BMP", "e.tif", "f.TIFF", "g.webp", "h.ppm",
    ]  # fmt: skip
    assert ds.names == ("a", "b", "c", "d", "e", "f", "g", "h")
    assert ds.name == tmp_path.name
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"} == IMAGE_SUFFIXES


def test_folder_images_load(tmp_path):
    (tmp_path / "p.png").write_bytes(_image_bytes("PNG"))
    (tmp_path / "q.bmp").write_bytes(_image_bytes("BMP"))
    (tmp_path / "r.ppm").write_bytes(_image_bytes("PPM"))
    for item in load_dataset(f"folder:{tmp_path}"):
        assert item.load().tolist() == [[[10, 20, 30]] * 3] * 2


def test_folder_relative_and_home_paths(tmp_path, monkeypatch):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_image_bytes("PNG"))
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("folder:imgs")
    assert ds.paths == (tmp_path / "imgs" / "a.png",) and ds.paths[0].is_absolute()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_dataset("folder:~/imgs").paths == ds.paths


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(f"folder:{tmp_path / 't.txt'}")
    with pytest.raises(DatasetError, match="needs a path"):
        load_dataset("folder:")


# --- spec parsing and Dataset --------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["kodac", "", "folder", "imagenet", "sample:x"])
def test_unknown_spec_lists_valid_forms(spec):
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    for form in available_datasets():
        assert form in str(info.value)


def test_available_datasets():
    assert available_datasets() == ["kodak", "sample", "folder:PATH"]


def test_dataset_sequence_protocol_and_subset(tmp_path):
    paths = tuple(tmp_path / f"im{i}.png" for i in range(5))
    ds = Dataset("toy", paths)
    assert len(ds) == 5
    assert ds[1] == ImageItem("im1", paths[1]) and ds[-1].name == "im4"
    assert [item.path for item in ds] == list(paths)
    with pytest.raises(IndexError):
        ds[5]
    sub = ds.subset(2)
    assert sub.paths == paths[:2] and sub.name == "toy[:2]"
    assert ds.subset(5) == ds and ds.subset(99) == ds
    for bad in (0, -1, 1.5, True):
        with pytest.raises(DatasetError):
            ds.subset(bad)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]


def test_dataset_names_disambiguate_shared_stems(tmp_path):
    ds = Dataset("x", (tmp_path / "a.png", tmp_path / "a.jpg", tmp_path / "b.png"))
    assert ds.names == ("a.png", "a.jpg", "b")


def test_empty_dataset_is_rejected():
    with pytest.raises(DatasetError):
        Dataset("empty", ())
