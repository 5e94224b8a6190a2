"""The dataset registry: name -> files, pinned SHA-256, mirrors, and a loader.

All samples of a dataset are held as one pool (for MNIST: the 60000 training images followed
by the 10000 test images). Splits are index arrays into that pool, which is what makes
"test image 1302" mean the same image in every session.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mapscope.data.cache import (
    DATA_ENV,
    data_dir,
    download_file,
    file_stamp,
    user_cache_dir,
    verify_file,
)
from mapscope.data.faces import FACE_SETS, read_faces
from mapscope.data.folder import PREFIX as FOLDER
from mapscope.data.folder import folder_of, read_folder
from mapscope.data.idx import read_idx
from mapscope.data.wifi import read_wifi
from mapscope.errors import ConfigError, DataError, RunError
from mapscope.io import read_arrays, write_npz


@dataclass(frozen=True)
class DataFile:
    relpath: str
    sha256: str
    mirrors: tuple[str, ...]
    normalize_newlines: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[DataFile, ...]
    class_names: tuple[str, ...]
    canonical_train: int | None  # None: no published split (WIFI); a seeded one is used
    licence: str


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_WIFI_MIRRORS = (
    "https://archive.ics.uci.edu/ml/machine-learning-databases/00422/wifi_localization.txt",
)
_IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _idx_files(
    folder: str, mirrors: tuple[str, ...], hashes: tuple[str, ...]
) -> tuple[DataFile, ...]:
    return tuple(
        DataFile(f"{folder}/{name}", sha, tuple(m + name for m in mirrors))
        for name, sha in zip(_IDX_NAMES, hashes, strict=True)
    )


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist",
        _idx_files(
            "mnist",
            _MNIST_MIRRORS,
            (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
        tuple(str(d) for d in range(10)),
        60000,
        "CC BY-SA 3.0, Yann LeCun and Corinna Cortes",
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        _idx_files(
            "fashion-mnist",
            _FASHION_MIRRORS,
            (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ),
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        60000,
        "MIT, Zalando SE",
    ),
    "wifi": DatasetSpec(
        "wifi",
        (
            DataFile(
                "wifi/wifi_localization.txt",
                "76121abf412b961f474e72baa8a802241f3032e85590c6680dd5280b1af8e0ab",
                _WIFI_MIRRORS,
                normalize_newlines=True,
            ),
        ),
        ("room 1", "room 2", "room 3", "room 4"),
        None,
        "CC BY 4.0, UCI Machine Learning Repository (data set 422)",
    ),
}


@dataclass
class Dataset:
    """All samples of one dataset as a pool, plus where they came from.

    ``x`` is uint8 (N, 28, 28) for MNIST and Fashion-MNIST, (N, S, S) or (N, S, S, 3) for
    image folders and face sets, and int16 (N, 7) for WIFI; ``y`` holds class indices 0..C-1
    (WIFI rooms 1..4 become 0..3; ``class_names`` keeps the room numbers).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    canonical_train: int | None
    root: Path
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        return self.x.ndim >= 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image as a network sees it."""
        channels = self.x.shape[3] if self.x.ndim == 4 else 1
        return (channels, self.x.shape[1], self.x.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def class_index(self, value: str | int, option: str = "class") -> int:
        """A class given by its name (``Shirt``, ``room 2``) or its number (``6``)."""
        names = self.class_names
        if isinstance(value, str) and value in names:
            return names.index(value)
        text = str(value).strip()
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
            return int(text)
        raise ConfigError(
            f"{option} {value!r} is not a class of {self.name}; classes are "
            f"{', '.join(names)} (or their numbers 0..{len(names) - 1})."
        )


IMAGE_SETS = ("mnist", "fashion-mnist", *FACE_SETS, f"{FOLDER}PATH")


def check_image_set(name: str) -> str | None:
    """None when ``name`` is a dataset of images, else what is wrong with it."""
    if name in IMAGE_SETS[:-1] or (name.startswith(FOLDER) and len(name) > len(FOLDER)):
        return None
    return f"dataset {name!r} is not a set of images; choose one of {', '.join(IMAGE_SETS)}"


def spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)} (autoencoders also "
            f"take {', '.join(FACE_SETS)} and {FOLDER}PATH)."
        )
    return DATASETS[name]


def locate(name: str, root: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Return the data folder and the missing files of a dataset (empty when complete)."""
    folder = data_dir(root)
    missing = [folder / f.relpath for f in spec(name).files if not (folder / f.relpath).is_file()]
    return folder, missing


def verify(name: str, root: str | Path | None = None) -> dict[str, str]:
    """Check every file of a dataset; returns relpath -> sha256."""
    folder, missing = locate(name, root)
    if missing:
        raise DataError(
            f"dataset {name!r}: missing {', '.join(str(m) for m in missing)}. Looked in {folder} "
            f"(explicit --data-dir, else ${DATA_ENV}, else {user_cache_dir()}). Run "
            f"`mapscope data fetch {name}` when online, or point {DATA_ENV} at a folder holding "
            f"{name}/ with the original files."
        )
    return {
        f.relpath: verify_file(folder / f.relpath, f.sha256, f.normalize_newlines)
        for f in spec(name).files
    }


def fetch(name: str, root: str | Path | None = None) -> dict[str, str]:
    """Download whatever files of a dataset are missing, then verify all of them."""
    folder, missing = locate(name, root)
    by_path = {folder / f.relpath: f for f in spec(name).files}
    for path in missing:
        entry = by_path[path]
        download_file(list(entry.mirrors), path, entry.sha256, entry.normalize_newlines)
    return verify(name, folder)


IDX_SHAPES = ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))


@functools.lru_cache(maxsize=2)
def _read_idx_set(
    files: tuple[tuple[str, Any], ...], checksums: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of an MNIST-format set (train files, then test files), read once per
    process for each version of the files (their size and modification time) and handed out
    read-only, so that every command and test of one process shares one copy.

    Unpacking the gzipped files takes about half a second, which every command that reads the
    set paid; the unpacked arrays are kept in the user cache, named by the SHA-256 of the
    verified originals, so a cached entry holds exactly what unpacking them gives."""
    cached = user_cache_dir() / "decoded" / f"{_set_key(checksums)}.npz"
    arrays = _read_decoded(cached)
    if arrays is None:
        x_train, y_train, x_test, y_test = (
            read_idx(Path(path), shape) for (path, _), shape in zip(files, IDX_SHAPES, strict=True)
        )
        arrays = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
        with contextlib.suppress(OSError):  # an unwritable cache costs the unpacking next time
            write_npz(cached, x=arrays[0], y=arrays[1])
    x, y = arrays[0], arrays[1].astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _set_key(checksums: tuple[str, ...]) -> str:
    return hashlib.sha256(("idx-set-1:" + ",".join(checksums)).encode()).hexdigest()[:32]


def _read_decoded(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A cached set's (images, labels), or None where there is none or it is damaged (it is then
    unpacked again and written afresh)."""
    try:
        f = read_arrays(path, {"x": ("int", 3), "y": ("int", 1)}, what="cached dataset")
    except RunError:
        return None
    n = IDX_SHAPES[0][0] + IDX_SHAPES[2][0]
    if f["x"].dtype != np.uint8 or f["x"].shape != (n, *IDX_SHAPES[0][1:]) or f["y"].shape != (n,):
        return None
    return f["x"], f["y"]


def load_dataset(
    name: str, root: str | Path | None = None, image_size: int = 64, colour: str = "grey"
) -> Dataset:
    """Verify and read a dataset into memory. Image folders (``folder:PATH``) and the face sets
    are cropped and resized to ``image_size`` in ``colour`` (rgb or grey)."""
    if name.startswith(FOLDER) or name in FACE_SETS:
        return _load_images(name, data_dir(root), image_size, colour)
    info = spec(name)
    checksums = verify(name, root)
    folder = data_dir(root)
    if name == "wifi":
        signals, rooms = read_wifi(folder / info.files[0].relpath)
        return Dataset(name, signals, rooms - 1, info.class_names, None, folder, checksums)
    paths = [folder / f.relpath for f in info.files]
    x, y = _read_idx_set(
        tuple((str(p), file_stamp(p)) for p in paths),
        tuple(checksums[f.relpath] for f in info.files),
    )
    if y.max() >= len(info.class_names):
        raise DataError(f"{paths[1]}: label {y.max()} outside 0..{len(info.class_names) - 1}.")
    return Dataset(name, x, y, info.class_names, info.canonical_train, folder, checksums)


def _load_images(name: str, root: Path, size: int, colour: str) -> Dataset:
    if name.startswith(FOLDER):
        folder = folder_of(name).resolve()
        x, y, names, key = read_folder(folder, size, colour)
        name = f"{FOLDER}{folder}"
    else:
        x, y, names, key = read_faces(name, root, size, colour)
    return Dataset(name, x, y, names, None, root, {name: key})
