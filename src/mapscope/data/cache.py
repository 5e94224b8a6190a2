"""Where dataset files live, whether they are genuine, and how to fetch them.

Search order for the data folder: an explicit argument, then ``$MAPSCOPE_DATA``, then the user
cache folder (``$XDG_CACHE_HOME/mapscope`` or ``~/.cache/mapscope``). Hashing 36 MB takes a
noticeable fraction of a second, so a successful check is remembered in ``verified.json`` of
the user cache, keyed by path, size, inode, modification time and status-change time: any
change to the file invalidates it, even a same-size edit whose mtime was set back (``touch``
can restore an mtime, but every write moves the ctime, which no user tool can set).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mapscope.errors import DataError, MapscopeError
from mapscope.io import atomic_path, expand_user, write_json
from mapscope.schema import value_of

DATA_ENV = "MAPSCOPE_DATA"
CACHE_ENV = "MAPSCOPE_CACHE"


def user_cache_dir() -> Path:
    """The per-user cache folder; ``$MAPSCOPE_CACHE`` overrides it (tests use this)."""
    if os.environ.get(CACHE_ENV):
        return expand_user(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return expand_user(base) / "mapscope"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``mnist/``, ``fashion-mnist/`` and ``wifi/``."""
    if explicit is not None:
        return expand_user(explicit)
    if os.environ.get(DATA_ENV):
        return expand_user(os.environ[DATA_ENV])
    return user_cache_dir()


def sha256_file(path: Path, normalize_newlines: bool = False) -> str:
    digest = hashlib.sha256()
    if normalize_newlines:
        digest.update(path.read_bytes().replace(b"\r\n", b"\n"))
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: Path) -> str:
    """What changes when a file is replaced or edited: size, inode, and both timestamps."""
    st = path.stat()
    return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


@dataclass(frozen=True)
class VerifiedRecord:
    """The schema of one entry of ``verified.json``: a file's stamp when its hash matched."""

    stamp: str
    sha256: str


def _load_verified() -> dict[str, dict[str, str]]:
    """The remembered checks; a damaged cache (not JSON, or not of ``VerifiedRecord``s) only
    costs a re-hash, so it is read as empty and written afresh."""
    path = user_cache_dir() / "verified.json"
    try:
        return value_of(dict[str, VerifiedRecord], json.loads(path.read_text()), "", str(path))
    except (OSError, ValueError, MapscopeError):
        return {}


def verify_file(path: Path, expected_sha256: str, normalize_newlines: bool = False) -> str:
    """Check ``path`` against its pinned hash; raise DataError naming the file when it differs."""
    key = str(path.resolve())
    record = _load_verified().get(key)
    if (
        record
        and record.get("stamp") == file_stamp(path)
        and record.get("sha256") == expected_sha256
    ):
        return expected_sha256
    actual = sha256_file(path, normalize_newlines)
    if actual != expected_sha256:
        raise DataError(
            f"{path}: SHA-256 {actual} does not match the pinned {expected_sha256}. The file is "
            "corrupt or not the published original; delete it and run `mapscope data fetch`, "
            "or copy an original file into place."
        )
    verified = _load_verified()
    verified[key] = {"stamp": file_stamp(path), "sha256": actual}
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        write_json(user_cache_dir() / "verified.json", verified)
    return actual


Opener = Callable[[str], "urllib.response.addinfourl"]


def download_file(
    urls: list[str],
    target: Path,
    expected_sha256: str,
    normalize_newlines: bool = False,
    opener: Opener | None = None,
) -> Path:
    """Try each mirror in turn; keep the file only when its hash matches (atomic rename)."""
    opener = opener or (lambda url: urllib.request.urlopen(url, timeout=60))  # noqa: S310
    errors = []
    for url in urls:
        try:
            with atomic_path(target) as tmp:
                with opener(url) as response, open(tmp, "wb") as out:
                    for block in iter(lambda r=response: r.read(1 << 20), b""):
                        out.write(block)
                actual = sha256_file(tmp, normalize_newlines)
                if actual != expected_sha256:
                    raise DataError(f"{url}: downloaded file has SHA-256 {actual}")
                if normalize_newlines:
                    tmp.write_bytes(tmp.read_bytes().replace(b"\r\n", b"\n"))
            return target
        except (OSError, urllib.error.URLError, DataError) as exc:
            errors.append(f"  {url}: {exc}")
    raise DataError(
        f"could not download {target.name}; every mirror failed:\n" + "\n".join(errors) + "\n"
        f"Copy the file by hand to {target} (or set {DATA_ENV} to a folder that has it)."
    )
