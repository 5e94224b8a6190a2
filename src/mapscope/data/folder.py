"""A folder of images (CelebA's ``img_align_celeba``, your own photos) as a dataset.

Every file is decoded once, centre-cropped to a square, resized (default 64x64, RGB or grey)
and kept as one uint8 array in the user cache, keyed by the folder's file list, file sizes and
modification times and by the size and colour asked for: a changed folder is read again, an
unchanged one loads in a moment. Images in sub-folders take the sub-folder's name as their
class (the torchvision ``ImageFolder`` convention); a flat folder is one class. A file that is
not a readable image stops the read with one message listing every such file: nothing is
silently dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from mapscope.data.cache import user_cache_dir
from mapscope.errors import DataError, RunError
from mapscope.io import expand_user, read_arrays, write_npz

PREFIX = "folder:"
COLOURS = ("rgb", "grey")
# what PIL raises for a damaged or hostile image file, by format and by stage (open or decode):
# a truncated PNG header is a ValueError, a bad PNG chunk a SyntaxError
UNREADABLE_IMAGE = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)
SHOWN = 10  # unreadable files named in the message; the rest are counted


def folder_of(name: str) -> Path:
    return expand_user(name[len(PREFIX) :])


def list_files(root: Path) -> list[Path]:
    """Every regular file below ``root`` except hidden ones, in a fixed order."""
    if not root.is_dir():
        raise DataError(
            f"--dataset folder:{root}: not a folder; give a folder of JPEG/PNG images, like "
            "folder:data/img_align_celeba."
        )
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"--dataset folder:{root}: the folder holds no files.")
    return files


def folder_key(root: Path, files: list[Path], size: int, colour: str) -> str:
    """What the cached array depends on: the file list with sizes and times, and the shape."""
    listing = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    text = json.dumps({"files": listing, "size": size, "colour": colour})
    return hashlib.sha256(text.encode()).hexdigest()


def square(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to the largest square, then resize to ``size`` x ``size``."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)


def read_image(path: Path, size: int, colour: str) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("RGB" if colour == "rgb" else "L", (2 * size, 2 * size))  # fast JPEG scaling
        image = image.convert("RGB" if colour == "rgb" else "L")
        return np.asarray(square(image, size), dtype=np.uint8)


def read_folder(
    root: Path, size: int = 64, colour: str = "rgb"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(images uint8 (N, S, S) or (N, S, S, 3), labels, class names, key), from the cache
    when the folder is unchanged."""
    if colour not in COLOURS:
        raise DataError(f"colour {colour!r} unknown; choose one of {', '.join(COLOURS)}.")
    if not isinstance(size, int) or not 4 <= size <= 1024:
        raise DataError(f"image size must be a whole number in 4..1024, got {size!r}.")
    files = list_files(root)
    key = folder_key(root, files, size, colour)
    cached = user_cache_dir() / "folders" / f"{key}.npz"
    shape = (size, size, 3) if colour == "rgb" else (size, size)
    if cached.is_file():
        try:
            f = read_arrays(
                cached, {"x": ("int", len(shape) + 1), "y": ("int", 1), "names": ("str", 1)}
            )
            if f["x"].dtype == np.uint8 and f["x"].shape == (len(files), *shape):
                return f["x"], f["y"].astype(np.int64), tuple(str(n) for n in f["names"]), key
        except RunError:
            pass  # a damaged cache entry is read again from the images
    groups = [p.parent.relative_to(root).as_posix() for p in files]
    names = tuple(sorted(set(groups)))
    x = np.empty((len(files), *shape), dtype=np.uint8)
    bad: list[str] = []
    for i, path in enumerate(tqdm(files, desc=f"reading {root.name}", unit="image", disable=None)):
        try:
            x[i] = read_image(path, size, colour)
        except UNREADABLE_IMAGE as exc:
            bad.append(f"{path.relative_to(root)} ({type(exc).__name__})")
    if bad:
        more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise DataError(
            f"--dataset folder:{root}: {len(bad)} of {len(files)} files are not readable "
            f"images: {', '.join(bad[:SHOWN])}{more}. Move them out of the folder (JPEG, PNG, "
            "BMP, GIF and TIFF are read)."
        )
    if names == (".",):
        names = (root.name or "images",)
        y = np.zeros(len(files), dtype=np.int64)
    else:
        y = np.array([names.index(g) for g in groups], dtype=np.int64)
    with contextlib.suppress(OSError):  # an unwritable cache costs a re-read next time
        write_npz(cached, x=x, y=y, names=np.array(names))
    return x, y, names, key
