"""Atomic file output: a crash or Ctrl-C never leaves a half-written file behind.

Everything is written to a temporary file in the destination folder and then moved into place
with ``os.replace``, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mapscope.errors import ConfigError, RunError


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as a shell would. A ``~name`` for a
    user this machine does not know is a ConfigError naming the path (pathlib raises a bare
    RuntimeError there)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise ConfigError(
            f"{os.fspath(path)!r} starts with '~' followed by a user this machine does not know; "
            "give a full path, or ~/... for your own home folder."
        ) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the file the mode any new file of the user gets
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    current = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(current)
    return current


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    """What JSON cannot hold natively (numpy values were turned into Python ones by
    ``finite_json`` already)."""
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def finite_json(obj: Any) -> tuple[Any, dict[str, str]]:
    """``obj`` with every NaN or infinity replaced by None, and where each one was (a JSON
    path like ``history[3].val_loss``) with what it was: JSON has no such numbers."""
    found: dict[str, str] = {}

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            found[where or "."] = str(value)
            return None
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(obj, ""), found


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Strict JSON (``allow_nan=False``): a non-finite number becomes null, and an object gets
    a ``non_finite`` entry saying which values were nulled and what they were."""
    clean, found = finite_json(obj)
    if found and isinstance(clean, dict):
        clean["non_finite"] = found
    text = json.dumps(clean, indent=2, default=_json_default, allow_nan=False)
    return write_text(path, text + "\n")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Strict JSON: bare NaN or Infinity (which Python's json accepts) is refused."""
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_no_constants)


def write_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Save arrays uncompressed; loading uses ``allow_pickle=False`` so files cannot run code."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stubs: arrays by name
    return Path(path)


ARRAY_KINDS = {"float": "f", "int": "iu", "str": "U"}
NUMPY_MAGIC = b"\x93NUMPY"  # how an .npy array starts


def read_arrays(
    path: str | os.PathLike[str],
    expected: dict[str, tuple[str, int]],
    optional: tuple[str, ...] = (),
    what: str = "array file",
) -> dict[str, np.ndarray]:
    """The arrays of an npz, checked: ``expected`` maps each name to (kind, ndim), kind being
    ``float`` (finite numbers), ``int`` or ``str``; names in ``optional`` may be absent. Any
    damage (truncated, not a zip, pickled objects, wrong keys, types or values) is one RunError
    naming the file. ``allow_pickle=False``: loading never runs code."""
    path = Path(path)
    head = b""
    try:
        # the file opened here, so that it is closed also when numpy refuses it (np.load leaves
        # a damaged zip's file open)
        with open(path, "rb") as handle:
            head = handle.read(len(NUMPY_MAGIC))
            handle.seek(0)
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # one .npy array, or a text file
                raise RunError(f"{path}: not a readable {what} (a single array, not an npz).")
            with loaded as f:
                arrays = {name: f[name] for name in expected if name in f.files}
    except FileNotFoundError:
        raise RunError(f"{path}: file missing.") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        # numpy reads a file that is neither an npz nor an npy (a text file, say) as a pickle
        # and refuses it as one: only an archive, an array or a pickle is said to hold them
        pickled = "pickle" in str(exc) and head.startswith((b"PK", NUMPY_MAGIC, b"\x80"))
        reason = "holds pickled objects" if pickled else "truncated or not an npz"
        raise RunError(f"{path}: not a readable {what} ({reason}).") from None
    missing = [n for n in expected if n not in arrays and n not in optional]
    if missing:
        raise RunError(f"{path}: not a {what}: the arrays {missing} are missing.")
    for name, array in arrays.items():
        kind, ndim = expected[name]
        if array.dtype.kind not in ARRAY_KINDS[kind] or array.ndim != ndim:
            raise RunError(
                f"{path}: {name!r} must be a {ndim}-D {kind} array, got {array.ndim}-D "
                f"{array.dtype}."
            )
        if kind == "float" and not np.isfinite(array).all():
            raise RunError(f"{path}: {name!r} holds NaN or infinite values.")
    return arrays


def write_csv(path: str | os.PathLike[str], header: list[str], rows: list[list[Any]]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return write_text(path, "\n".join(lines) + "\n")
