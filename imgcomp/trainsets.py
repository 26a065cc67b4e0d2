"""Training and calibration images: photos the ops and ``imgcomp train`` learn from, never Kodak.

``load_training_set(spec)`` resolves a spec to the image files:

- ``None`` (the default): ``$IMGCOMP_TRAIN_DIR`` when set (a folder, searched recursively),
  else ``"bundled"``. The default never touches the network.
- ``"bundled"``: two natural colour photos, a grey photo and two grey textures that ship inside
  the scikit-image and matplotlib wheels (see :data:`BUNDLED`), each checked against its sha256.
  None is a Kodak image or one of the ``sample`` evaluation photos (nor the other half of its
  stereo pair), so it serves int8 calibration and short recovery fine-tuning on a machine with no
  network. It is what the benchmark's committed baselines were made with. (The scientific
  images scikit-image also ships, space, retina and histology, made recovery worse.)
- a name of :data:`ARCHIVES` (e.g. ``"clic2020-valid"``): a published training or validation set,
  extracted into ``cache_dir() / "trainsets" / NAME``, downloaded from its canonical location the
  first time (progress bar; the archive's size and sha256 checked against the digests the
  TensorFlow Datasets catalogue publishes, a mismatch refused, nothing extracted). Extraction
  writes a ``SHA256SUMS`` of the extracted files; every later load checks the files against it.
- ``"folder:PATH"`` or a plain path: every image file under PATH, recursively.

Every spec is refused when it holds a Kodak image: by file name, by the file's sha256
(:data:`imgcomp.data.KODAK_SHA256`) and, for decoded images, by the pixels' sha256
(:func:`refuse_kodak_pixels`), so a re-saved copy is caught too. Kodak is the evaluation set.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgcomp.data import (
    IMAGE_SUFFIXES,
    KODAK_PIXEL_SHA256,
    KODAK_SHA256,
    cache_dir,
    download_verified,
    file_sha256,
)
from imgcomp.errors import ChecksumError, DatasetError

__all__ = [
    "ARCHIVES",
    "BUNDLED",
    "DEFAULT_SPEC",
    "TRAIN_DIR_ENV",
    "Archive",
    "TrainingSet",
    "available_training_sets",
    "default_training_spec",
    "list_image_files",
    "load_training_set",
    "refuse_kodak_pixels",
]

TRAIN_DIR_ENV = "IMGCOMP_TRAIN_DIR"
DEFAULT_SPEC = "bundled"
"""The offline set every default falls back to (and the benchmark's baselines use)."""


@dataclass(frozen=True)
class Archive:
    """A published image set as one zip at its canonical URL, with its byte size and sha256."""

    url: str
    size: int
    sha256: str
    description: str


#: Published sets, digests as recorded by TensorFlow Datasets' url_checksums (clic.txt, div2k.txt).
ARCHIVES: dict[str, Archive] = {
    "clic2020-valid": Archive(
        "https://data.vision.ee.ethz.ch/cvl/clic/professional_valid_2020.zip",
        134_834_429,
        "00be38092ade2ab5163b65f7f6523d46c7bca147007f559adbb02c0afc236b7d",
        "CLIC 2020 professional validation set (41 photos, 135 MB): calibration",
    ),
    "clic2020-train": Archive(
        "https://data.vision.ee.ethz.ch/cvl/clic/professional_train_2020.zip",
        2_003_385_131,
        "54a2a684b5cbd0db91770a8695efb774fed1f612194fee68bceaf6b1c48e5d5f",
        "CLIC 2020 professional training set (585 photos, 2.0 GB): training",
    ),
    "div2k-valid": Archive(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        448_993_893,
        "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
        "DIV2K validation HR (100 photos, 449 MB)",
    ),
    "div2k-train": Archive(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        3_530_603_713,
        "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
        "DIV2K training HR (800 photos, 3.5 GB): training",
    ),
}

#: The offline set: (package whose data folder holds it, file name, sha256).
BUNDLED: tuple[tuple[str, str, str], ...] = (
    ("skimage", "rocket.jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    (
        "matplotlib",
        "grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    ),
    ("skimage", "camera.png", "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
    ("skimage", "brick.png", "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf"),
    ("skimage", "gravel.png", "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12"),
)

_KODAK_NAME = re.compile(r"^kodim\d\d\.png$", re.IGNORECASE)
_KODAK_FILE_DIGESTS = frozenset(KODAK_SHA256.values())
_KODAK_PIXEL_DIGESTS = frozenset(KODAK_PIXEL_SHA256.values())
_SUMS = "SHA256SUMS"
_MAX_EXTRACT_RATIO = 4  # extracted images may total at most this times the archive (zip bombs)


@dataclass(frozen=True)
class TrainingSet:
    """Image files of a training set; ``keys`` name them stably (relative paths or file names)."""

    name: str
    files: tuple[Path, ...]
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        """sha256 over each file's key and size: the identity of a training set."""
        h = hashlib.sha256()
        for key, path in zip(self.keys, self.files, strict=True):
            h.update(f"{key}\t{path.stat().st_size}\n".encode())
        return h.hexdigest()


def available_training_sets() -> list[str]:
    """Spec forms :func:`load_training_set` accepts, for help text."""
    return [DEFAULT_SPEC, *ARCHIVES, "folder:PATH"]


def default_training_spec() -> str:
    """``$IMGCOMP_TRAIN_DIR`` when set, else the offline ``bundled`` set."""
    return os.environ.get(TRAIN_DIR_ENV) or DEFAULT_SPEC


def load_training_set(
    spec: str | os.PathLike[str] | None = None, *, download: bool = True, progress: bool = True
) -> TrainingSet:
    """Resolve a training-data spec (see the module doc) to its files, Kodak refused."""
    if spec is None:
        spec = default_training_spec()
    if isinstance(spec, os.PathLike):
        return _folder_set(Path(spec))
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"training data must be a name or a path, got {spec!r}")
    key = spec.strip()
    if key.lower() == DEFAULT_SPEC:
        return _bundled_set()
    if key.lower() in ARCHIVES:
        return _archive_set(key.lower(), download=download, progress=progress)
    if key[:7].lower() == "folder:":
        key = key[7:]
    path = Path(key).expanduser()
    if not path.exists() and os.sep not in key and "/" not in key:
        raise DatasetError(
            f"unknown training data {spec!r}: not a folder, and not one of "
            f"{', '.join(available_training_sets())}"
        )
    return _folder_set(path)


def list_image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden ones skipped), sorted by relative path,
    Kodak refused by name and by file digest."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"training data folder does not exist or is not a folder: {root}")
    try:
        files = [
            p
            for p in root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
            and p.is_file()
        ]
    except OSError as exc:
        raise DatasetError(f"cannot list training data folder {root}: {exc}") from exc
    if not files:
        raise DatasetError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    _refuse_kodak_files(str(root), files)
    return files


def refuse_kodak_pixels(img: np.ndarray, where: object) -> np.ndarray:
    """``img`` unchanged, or DatasetError when its pixels are a Kodak image's (any file format)."""
    if img.shape in ((512, 768, 3), (768, 512, 3)):
        digest = hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()
        if digest in _KODAK_PIXEL_DIGESTS:
            raise DatasetError(
                f"{where} holds the pixels of a Kodak image; Kodak is the evaluation set and "
                "must never be trained or calibrated on"
            )
    return img


def _refuse_kodak_files(where: str, files: list[Path]) -> None:
    named = [p.name for p in files if _KODAK_NAME.match(p.name)]
    copies = [p.name for p in files if not named and file_sha256(p) in _KODAK_FILE_DIGESTS]
    found = named or copies
    if found:
        how = "Kodak images" if named else "copies of Kodak images (by sha256)"
        raise DatasetError(
            f"{where} holds {how} ({', '.join(sorted(found)[:3])}...); Kodak is the evaluation "
            "set and must never be trained or calibrated on"
        )


def _folder_set(path: Path) -> TrainingSet:
    root = path.expanduser()
    files = list_image_files(root)
    keys = tuple(p.relative_to(root).as_posix() for p in files)
    return TrainingSet(str(root), tuple(files), keys)


# --- bundled ------------------------------------------------------------------------------------


def _package_data_dir(package: str) -> Path:
    try:
        if package == "matplotlib":
            import matplotlib

            return Path(matplotlib.get_data_path()) / "sample_data"
        return Path(str(importlib.resources.files(f"{package}.data")))
    except ModuleNotFoundError as exc:
        raise DatasetError(f"the bundled training set needs {package} (pip install it)") from exc


def _bundled_set() -> TrainingSet:
    files = []
    for package, name, digest in BUNDLED:
        path = _package_data_dir(package) / name
        if not path.is_file():
            raise DatasetError(
                f"{package} does not ship {name} (looked in {path.parent}); reinstall {package} "
                "or pass training data explicitly (a folder, or one of "
                f"{', '.join(ARCHIVES)})"
            )
        actual = file_sha256(path)
        if actual != digest:
            raise ChecksumError(
                f"{path}: sha256 {actual}, expected {digest}; this {package} ships another "
                f"{name} than the bundled training set was defined with; pass training data "
                "explicitly instead"
            )
        files.append(path)
    _refuse_kodak_files("the bundled training set", files)
    return TrainingSet(DEFAULT_SPEC, tuple(files), tuple(name for _, name, _ in BUNDLED))


# --- published archives -------------------------------------------------------------------------


def _archive_set(name: str, *, download: bool, progress: bool) -> TrainingSet:
    archive = ARCHIVES[name]
    folder = cache_dir() / "trainsets" / name
    if not (folder / _SUMS).is_file():
        if not download:
            raise DatasetError(
                f"training set {name} is not in the cache ({folder}) and download is disabled; "
                f"set {TRAIN_DIR_ENV} to a folder of training images or use {DEFAULT_SPEC!r}"
            )
        _fetch_archive(name, archive, folder, progress=progress)
    files = _verified_files(folder)
    _refuse_kodak_files(f"training set {name}", files)
    return TrainingSet(name, tuple(files), tuple(p.relative_to(folder).as_posix() for p in files))


def _verified_files(folder: Path) -> list[Path]:
    """The files listed in ``folder/SHA256SUMS``, each checked (a mismatch is refused)."""
    files = []
    for line in (folder / _SUMS).read_text().splitlines():
        digest, _, rel = line.partition("  ")
        path = folder / rel
        if not rel or ".." in Path(rel).parts or not path.is_file():
            raise DatasetError(
                f"{folder} is incomplete ({rel or line!r} missing); delete the folder to fetch "
                "the set again"
            )
        actual = file_sha256(path)
        if actual != digest:
            raise ChecksumError(
                f"{path}: sha256 {actual}, expected {digest} (recorded at extraction); delete "
                f"{folder} to fetch the set again"
            )
        files.append(path)
    if not files:
        raise DatasetError(f"{folder / _SUMS} lists no images; delete {folder} to fetch again")
    return files


def _fetch_archive(name: str, archive: Archive, folder: Path, *, progress: bool) -> None:
    """Download the zip (digest checked), extract its images, record their digests, then move
    the finished folder into place: an interrupted fetch leaves nothing that looks complete."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create cache folder {parent}: {exc}") from exc
    work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}."))
    try:
        zip_path = work / "archive.zip"
        download_verified(
            archive.url,
            zip_path,
            archive.sha256,
            max_bytes=archive.size,
            progress=progress,
            desc=f"Downloading {name}",
            hint=f"set {TRAIN_DIR_ENV} to a folder of training images or use {DEFAULT_SPEC!r} "
            "(offline)",
        )
        out = work / name
        _extract_images(zip_path, out, limit=_MAX_EXTRACT_RATIO * archive.size)
        zip_path.unlink()
        files = sorted(
            (p for p in out.rglob("*") if p.is_file()), key=lambda p: p.relative_to(out).as_posix()
        )
        if not files:
            raise DatasetError(f"{archive.url} holds no image files")
        sums = "".join(f"{file_sha256(p)}  {p.relative_to(out).as_posix()}\n" for p in files)
        (out / _SUMS).write_text(sums)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(out, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract_images(zip_path: Path, out: Path, limit: int) -> None:
    """Extract the image members of a zip under ``out``: no absolute or parent-relative paths,
    no hidden files, at most ``limit`` bytes in all."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [
                m
                for m in zf.infolist()
                if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
            ]
            total = 0
            for m in members:
                parts = Path(m.filename).parts
                if Path(m.filename).is_absolute() or ".." in parts or "\\" in m.filename:
                    raise DatasetError(f"{zip_path.name}: unsafe member path {m.filename!r}")
                if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                    continue
                total += m.file_size
                if total > limit:
                    raise DatasetError(f"{zip_path.name} unpacks to more than {limit} bytes")
                dest = out.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise DatasetError(f"cannot extract {zip_path.name}: {exc}") from exc
