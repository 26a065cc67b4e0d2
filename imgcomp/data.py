"""Test-image datasets: Kodak (local or downloaded, sha256-verified), an offline sample, a folder.

``load_dataset("kodak")`` looks in ``$IMGCOMP_KODAK_DIR`` (which, when set, must hold all 24 valid
files: there is no silent fallback), then in ``cache_dir() / "kodak"``, and downloads whatever is
missing there. Every Kodak file is checked against the published sha256 digests in
``KODAK_SHA256``; a mismatching file is never returned. A corrupt *cached* file is deleted (with a
warning) and downloaded again; a corrupt file in ``$IMGCOMP_KODAK_DIR`` raises ``ChecksumError``.
Downloads go to a temporary file that is renamed into place only after its digest matched.

``"sample"`` is four natural colour photos that ship inside scikit-image's wheel (astronaut,
chelsea, coffee, motorcycle_left): it works offline and needs no cache.
``"folder:PATH"`` is every image file directly in PATH (see ``IMAGE_SUFFIXES``), sorted by name.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.resources
import os
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imgcomp.errors import ChecksumError, DatasetError
from imgcomp.fsutil import atomic_path
from imgcomp.images import load_image
from imgcomp.version import __version__

__all__ = [
    "IMAGE_SUFFIXES",
    "KODAK_PIXEL_SHA256",
    "KODAK_SHA256",
    "KODAK_URL",
    "Dataset",
    "ImageItem",
    "available_datasets",
    "cache_dir",
    "download_verified",
    "file_sha256",
    "load_dataset",
]

KODAK_URL = "http://r0k.us/graphics/kodak/kodak/{name}"
"""Canonical per-image URL (plain HTTP, hence the digest check)."""

KODAK_SHA256: dict[str, str] = {
    "kodim01.png": "a56e27cbf5f843c048b6af1d6e090760e9c92fadba88b7dee0205918a37523bd",
    "kodim02.png": "4f4b74a79237e311d72cad958237b5f7088d8bce1c82305ebefe1a70e3022dfd",
    "kodim03.png": "e25ca1ff2f0c0cb5fdfd5f9b0a0bb21ac4c3de3c84a67f35b09a85d3306249db",
    "kodim04.png": "e3b946107c5d3441c022f678d0c3caf1e224d81b1604ba840a4f88e562de61aa",
    "kodim05.png": "10349e963c5c813d327852f82c1795fa4148d69fedffc4c589bee458e3ac3d53",
    "kodim06.png": "363510303b715d4cbc384e1ce227e466b613a09e1b71ae985882bf8e7fbd9b18",
    "kodim07.png": "b77d3f006f42414bb242222e0482e750c0fb9e5ee8d4bed2f6f11c5605fe54a4",
    "kodim08.png": "ba23983c76b4832ee0e8af0592664756841a16779acd69f792e268fb6d13d6e7",
    "kodim09.png": "6a4361c2fc194feb4edaa9f9a4a0620fb9943e460ac7fdf037fb0f6dd6607a7d",
    "kodim10.png": "9dfb70f5867c29ff9ed6313683f19b3d867849e40fbc0c4c54a4a89df341cf23",
    "kodim11.png": "7936814b58b5387fce2e4e2488b4ec830dadd95fa9520f358ddb30990b50f2b6",
    "kodim12.png": "d78c37c2f04f23761ed2367dd77e2db584ddd4c3950833fecf89f199a8126980",
    "kodim13.png": "bc34a3ce58dea09dce1704c997171602de90cb34d0c8503a988b77f473d39b08",
    "kodim14.png": "55a94550ff18f3246c4074fd32b77b0c74447c26b6ad274d564d999c0450ba6e",
    "kodim15.png": "7538cbb80cb9103606c48b806eae57d56c885c7f90b9b3be70a41160f9cbb683",
    "kodim16.png": "a89c7268ccd4718ba424a99fc4643c572cf692ca6eae887185ceb4e9f11d2e54",
    "kodim17.png": "37afcc89fbdcb76d9518e04b2fc011027e2f4cd14b3b2f83cefd721641a47c5b",
    "kodim18.png": "1a9258c365988961d87a0598725b609139c303ad48a5aad6c503c3b1a87849aa",
    "kodim19.png": "b7450b264b1b0a411390d8931b112c27905a992520fc90569dc4b920aa32bbdc",
    "kodim20.png": "3b46c71e3b92a563820ba32936be8330c586c41f938efd94be938386aae4328a",
    "kodim21.png": "ac958597c82073f6bb65129c68f72b651db5b9efd82e11547d07350214bc268b",
    "kodim22.png": "1cee58eb1f2d9c7ebb254d208a03c783ce6cf2c4d8c2cf45e235dd23b4ce1b29",
    "kodim23.png": "e3111a2fd4da24af15d6459ef9eacfe54106b38e27b4a21821b75c3f5d2d5baf",
    "kodim24.png": "1071c68372cc5a01435c2c225a5cf7d4bb803846ec08bb6b3d6721b156d7cb96",
}
"""Published sha256 of each Kodak image, kodim01.png .. kodim24.png."""

KODAK_PIXEL_SHA256: dict[str, str] = {
    "kodim01.png": "a00210743353594464ac67e680a41710f484444ca5f9dfddeb570de25c428273",
    "kodim02.png": "ae5a495df4ec40e0941265440ccf98973915b4190ab803e37a23ca93dd43a07e",
    "kodim03.png": "234e61f585503f2a44400f5561131e8a512ef2c15328cd83d5cdbf10e2616cf2",
    "kodim04.png": "e88e788fca00e6c723bb66ff45edb8cb56091ee284dcb73e3909834f2c96eeb6",
    "kodim05.png": "ed3d1ee770909d3b27903b52ce19ee59a9bf24621a7bf1fb57b90677da880cb6",
    "kodim06.png": "7f45158999fa297d1cfbd292b3e2f3f5b27770701c3473155c211c3f512cc97f",
    "kodim07.png": "4e3664bf6fe865b49f15f7b554efa7dbecaf73ae0e8699f2e307bf07849f1264",
    "kodim08.png": "889c3740e4ed54ca53d11ae735a44d15fa24fe312b3bd1609a80618a4092c208",
    "kodim09.png": "f8453140e63a42301a6dbebb849a3cc40d34e4e59580eb1f372f7f5460df0dbe",
    "kodim10.png": "fabe11b5c4f028394e093a5b5907e5fabc8072da0d5334fb3a38547a7e1be842",
    "kodim11.png": "ab4dd9bf8431e717d33892b3ba03c63bfea3c7fa72c2610010de7df3c194c075",
    "kodim12.png": "f412db2168e599949aac26bd3264f111b23a684f30a21cfd320e9e95bc69bbae",
    "kodim13.png": "875703d56fb9396f478b5d7d3b18e2b77c17147a685c6dc2567e1c574aaf01e3",
    "kodim14.png": "2bd5029ee75ac1697542e5b05624e8afe186e3250abd7513d6a806b52084c2f0",
    "kodim15.png": "b5353e7511277009922ecbdebfc6418fec53aa1b2a08d44fc957a7540825697b",
    "kodim16.png": "ed21745fd32fce95cc2c6af7fc52b1b15e590c7a14ab18ab34bd65ecaf955ac7",
    "kodim17.png": "566bc866664e9b06dc86e2654051b454844efe17322dbf7e24156d8243f1943e",
    "kodim18.png": "3475af71066f3ca8206eb12cfc989ebe9c6e44820a96604e88ae018606e1f7bd",
    "kodim19.png": "7956408ef24222d37ac53f579bd24d5b2c3557b16c657e8b71c1b6ae9f18de1b",
    "kodim20.png": "666ce8f2db5566a123bb081e70618f6f4c4253df960f3b41bb9dcc3dd134f3cf",
    "kodim21.png": "2d6902daf7c4486b7c8c04d834091841a2b38c8f0c81cd7a963a6510b34a2a6a",
    "kodim22.png": "f430842120c108b67725ada96b8b7b2a914f6a0915eacd5595064c6c1a5d70a0",
    "kodim23.png": "81992a83592267e69125666f3e3e04c1819529b4c4c1e55fde0a6a741bac4219",
    "kodim24.png": "e3e3ccc3e795b82a3da66934409dfe98ce0f5aadc6d7767543c506453599bb98",
}
"""sha256 of each Kodak image's decoded pixels (uint8 H x W x 3, row-major): finds re-saved
copies."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})
"""File suffixes (matched case-insensitively) that ``folder:PATH`` picks up."""

_SAMPLE_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png")
_DOWNLOAD_TIMEOUT_S = 30.0
_MAX_DOWNLOAD_BYTES = 16 * 2**20  # each Kodak PNG is < 1 MiB; stop a runaway response early
_NO_NETWORK_HINT = (
    "set IMGCOMP_KODAK_DIR to a folder holding kodim01.png..kodim24.png, or use --dataset sample"
)


@dataclass(frozen=True)
class ImageItem:
    """One image of a dataset: its name (file stem, e.g. "kodim01") and path; pixels load lazily."""

    name: str
    path: Path

    def load(self) -> np.ndarray:
        """Read the image as a uint8 H x W x 3 RGB array (imgcomp.images.load_image)."""
        return load_image(self.path)


@dataclass(frozen=True)
class Dataset:
    """A named, ordered, non-empty tuple of image files; iterating yields ImageItem."""

    name: str
    paths: tuple[Path, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        if not self.paths:
            raise DatasetError(f"dataset {self.name!r} has no images")

    @property
    def names(self) -> tuple[str, ...]:
        """Item names: file stems, or full file names where two files share a stem."""
        stems = [p.stem for p in self.paths]
        return tuple(p.name if stems.count(p.stem) > 1 else p.stem for p in self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[ImageItem]:
        return (ImageItem(n, p) for n, p in zip(self.names, self.paths, strict=True))

    def __getitem__(self, index: int) -> ImageItem:
        return ImageItem(self.names[index], self.paths[index])

    def subset(self, n: int) -> Dataset:
        """The first n images (all of them when n >= len); named e.g. "kodak[:4]" when smaller."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DatasetError(f"subset size must be an integer >= 1, got {n!r}")
        if n >= len(self):
            return self
        return Dataset(f"{self.name}[:{n}]", self.paths[:n])


def available_datasets() -> list[str]:
    """The dataset spec forms load_dataset accepts, for help text."""
    return ["kodak", "sample", "folder:PATH"]


def cache_dir() -> Path:
    """Where downloaded data lives: $IMGCOMP_CACHE_DIR, else the user cache dir for "imgcomp"."""
    env = os.environ.get("IMGCOMP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs  # only needed to locate the default cache

    return Path(platformdirs.user_cache_dir("imgcomp"))


def load_dataset(spec: str, *, download: bool = True, progress: bool = True) -> Dataset:
    """Resolve "kodak", "sample" or "folder:PATH" to a Dataset (download: may fetch Kodak)."""
    if not isinstance(spec, str):
        raise DatasetError(f"dataset spec must be a string, got {type(spec).__name__}")
    key = spec.strip()
    if key.lower() == "kodak":
        return _load_kodak(download=download, progress=progress)
    if key.lower() == "sample":
        return _load_sample()
    if key[:7].lower() == "folder:":
        return _load_folder(key[7:])
    raise DatasetError(
        f"unknown dataset {spec!r}; valid forms: {', '.join(available_datasets())} "
        "(PATH: a folder of images, e.g. folder:~/photos)"
    )


# --- folder -------------------------------------------------------------------------------------


def _load_folder(raw: str) -> Dataset:
    if not raw.strip():
        raise DatasetError("folder: needs a path, e.g. folder:~/photos")
    folder = Path(raw.strip()).expanduser().absolute()
    if not folder.exists():
        raise DatasetError(f"dataset folder does not exist: {folder}")
    if not folder.is_dir():
        raise DatasetError(f"dataset folder is not a directory: {folder}")
    try:
        paths = sorted(
            (
                p
                for p in folder.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
            ),
            key=lambda p: p.name,
        )
    except OSError as e:
        raise DatasetError(f"cannot list dataset folder {folder}: {e}") from e
    if not paths:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DatasetError(f"no image files ({kinds}) directly in {folder}")
    return Dataset(folder.name or str(folder), tuple(paths))


# --- sample -------------------------------------------------------------------------------------


def _load_sample() -> Dataset:
    try:
        root = Path(str(importlib.resources.files("skimage.data")))
    except ModuleNotFoundError as e:
        raise DatasetError(
            "the sample dataset needs scikit-image (pip install scikit-image)"
        ) from e
    paths = tuple(root / name for name in _SAMPLE_FILES)
    for p in paths:
        if not p.is_file():
            raise DatasetError(
                f"scikit-image's bundled sample image {p.name} is missing from {root}; "
                "reinstall scikit-image or use --dataset folder:PATH"
            )
    return Dataset("sample", paths)


# --- kodak --------------------------------------------------------------------------------------


def _load_kodak(*, download: bool, progress: bool) -> Dataset:
    names = tuple(KODAK_SHA256)
    env = os.environ.get("IMGCOMP_KODAK_DIR")
    if env:
        folder = Path(env).expanduser().absolute()
        if not folder.is_dir():
            raise DatasetError(f"IMGCOMP_KODAK_DIR={env} is not a directory")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise DatasetError(
                f"IMGCOMP_KODAK_DIR={folder} lacks {len(missing)} of the 24 Kodak files "
                f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); it must hold "
                "kodim01.png..kodim24.png, or unset it to use the download cache"
            )
        for n in names:
            _check_digest(folder / n, KODAK_SHA256[n])
        return Dataset("kodak", tuple(folder / n for n in names))

    folder = cache_dir() / "kodak"
    missing, corrupt = [], []
    for n in names:
        path = folder / n
        if not path.is_file():
            missing.append(n)
            continue
        try:
            _check_digest(path, KODAK_SHA256[n])
        except ChecksumError as e:
            corrupt.append(e)
            missing.append(n)
            path.unlink(missing_ok=True)
            warnings.warn(f"{e}; deleted the cached copy", stacklevel=3)
    if missing:
        if not download:
            if corrupt:
                raise ChecksumError(f"{corrupt[0]}; deleted it, and download is disabled")
            raise DatasetError(
                f"Kodak is not available locally ({len(missing)} of 24 files missing from "
                f"{folder}) and download is disabled; {_NO_NETWORK_HINT}"
            )
        _download_kodak(missing, folder, progress=progress)
    return Dataset("kodak", tuple(folder / n for n in names))


def _download_kodak(names: list[str], folder: Path, *, progress: bool) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create cache folder {folder}: {e}") from e
    with tqdm(total=len(names), desc="Downloading Kodak", unit="img", disable=not progress) as bar:
        for n in names:
            _download(KODAK_URL.format(name=n), folder / n, KODAK_SHA256[n])
            bar.update(1)


def _download(url: str, dest: Path, expected: str) -> None:
    """One Kodak file into dest (see :func:`download_verified`)."""
    download_verified(url, dest, expected, max_bytes=_MAX_DOWNLOAD_BYTES, progress=False)


def download_verified(
    url: str,
    dest: Path,
    expected: str,
    *,
    max_bytes: int,
    progress: bool = True,
    desc: str | None = None,
    hint: str = _NO_NETWORK_HINT,
) -> None:
    """Fetch url into dest atomically (:func:`imgcomp.fsutil.atomic_path`), at most ``max_bytes``,
    sha256 checked against ``expected`` (ChecksumError otherwise) before the rename; ``hint``
    ends the message of a failed download (what to do without a network)."""
    digest = hashlib.sha256()
    size = 0
    with atomic_path(dest, suffix=".part") as tmp:
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=max_bytes,
                desc=desc or dest.name,
                unit="B",
                unit_scale=True,
                disable=not progress,
            ) as bar,
        ):
            request = urllib.request.Request(url, headers={"User-Agent": f"imgcomp/{__version__}"})
            try:
                with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                    while chunk := response.read(1 << 16):
                        size += len(chunk)
                        if size > max_bytes:
                            raise DatasetError(f"{url} sent more than {max_bytes} bytes")
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise DatasetError(f"could not download {url}: {e}; {hint}") from e
        actual = digest.hexdigest()
        if actual != expected:  # raised inside atomic_path: the download is removed
            raise ChecksumError(
                f"downloaded {dest.name} from {url} has sha256 {actual}, expected {expected}; "
                "refusing to use it"
            )


def _check_digest(path: Path, expected: str) -> None:
    """ChecksumError naming path, expected and actual digest unless the file's sha256 matches."""
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumError(f"{path}: sha256 {actual}, expected {expected}")


def file_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per process for each (path, size, mtime)."""
    try:
        st = path.stat()
        return _sha256_cached(str(path.absolute()), st.st_size, st.st_mtime_ns)
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from e


@functools.lru_cache(maxsize=512)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
