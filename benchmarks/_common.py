"""Helpers shared by the benchmark scripts (tables, data location)."""

from __future__ import annotations

import os


def data_root() -> str:
    root = os.environ.get("MAPSCOPE_DATA")
    if not root:
        raise SystemExit("set MAPSCOPE_DATA to the folder with mnist/, fashion-mnist/, wifi/")
    return root


def table(header: list[str], rows: list[list[object]]) -> str:
    cells = [header] + [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def time_to(history: list[tuple[float, float]], target: float) -> str:
    """First cumulative training time at which accuracy reached ``target`` (or 'not reached')."""
    for seconds, accuracy in history:
        if accuracy >= target:
            return f"{seconds:.1f}"
    return "not reached"
