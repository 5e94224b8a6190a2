"""Reader for the UCI Wireless Indoor Localization file (2000 rows, 7 signals, a room 1..4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mapscope.errors import DataError

N_SIGNALS = 7


SIGNAL_RANGE = (-32768, 32767)  # what the int16 signal column can hold


def _whole(text: str, path: Path, number: int, column: int) -> int:
    """One field as a whole number in range, or a DataError naming the line and column."""
    name = f"WLAN-{column}" if column < N_SIGNALS else "room"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise DataError(f"{path}, line {number}: {name} is {text!r}; expected a whole number.")
    low, high = SIGNAL_RANGE if column < N_SIGNALS else (1, 4)
    if not low <= value <= high:
        raise DataError(f"{path}, line {number}: {name} is {text}; expected {low}..{high}.")
    return int(value)


def read_wifi(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (signals int16 (N, 7), rooms int64 (N,)); tabs or spaces, CRLF or LF accepted."""
    path = Path(path)
    text = path.read_bytes().decode("ascii", errors="replace")
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != N_SIGNALS + 1:
            raise DataError(
                f"{path}, line {number}: {len(fields)} fields, expected {N_SIGNALS + 1} "
                "(7 signal strengths and a room number) separated by tabs or spaces."
            )
        rows.append([_whole(f, path, number, k) for k, f in enumerate(fields)])
    if not rows:
        raise DataError(f"{path}: no data rows found.")
    table = np.asarray(rows, dtype=np.int64)
    rooms = table[:, -1]
    if rooms.min() < 1 or rooms.max() > 4:
        raise DataError(f"{path}: room labels must be 1..4, found {rooms.min()}..{rooms.max()}.")
    return table[:, :N_SIGNALS].astype(np.int16), rooms
