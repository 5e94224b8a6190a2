"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

The whole file is decompressed once and viewed as a numpy array: no per-image Python loop.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from mapscope.errors import DataError

# The third byte of the magic number names the element type; MNIST uses only unsigned bytes.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return the array stored in an IDX file, checking magic, dimensions and length."""
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}); expected "
            "00 00 08 0N as in the MNIST files. Replace the file with an original copy "
            "(mapscope data fetch)."
        )
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes for {ndim} dimensions).")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected_bytes = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_end != expected_bytes:
        raise DataError(
            f"{path}: IDX body has {len(raw) - header_end} bytes but the header announces shape "
            f"{shape} ({expected_bytes} bytes); the file is truncated or corrupt."
        )
    if expected_shape is not None and shape != expected_shape:
        raise DataError(f"{path}: IDX shape {shape}, expected {expected_shape}.")
    return (
        np.frombuffer(raw, dtype=dtype, offset=header_end)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def write_idx(path: str | Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write an unsigned-byte IDX file; used by tests and by anyone exporting data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def _read_maybe_gzip(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"{path}: the gzip stream is truncated or corrupt ({exc}). Delete the file and "
            "run `mapscope data fetch` or copy an original file into place."
        ) from exc
