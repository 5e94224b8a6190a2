"""Helpers shared by the benchmark scripts (tables, data location)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def data_root() -> str:
    root = os.environ.get("MAPSCOPE_DATA")
    if not root:
        raise SystemExit("set MAPSCOPE_DATA to the folder with mnist/, fashion-mnist/, wifi/")
    return root


def cpu() -> str:
    """The CPU a figure comes from: its model name and widest vector extension (speed figures
    name their CPU; the same code runs differently on AVX-512 and AVX2-only machines)."""
    name, flags = platform.processor() or platform.machine(), set()
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    vector = next(
        (f for f in ("avx512_bf16", "avx512f", "avx2", "neon", "asimd") if f in flags), ""
    )
    limited = [f"{k}={os.environ[k]}" for k in LIMITS if os.environ.get(k)]
    if limited:  # the vector units a run was allowed, where they were narrowed (emulation)
        vector = f"{vector}, limited by {' '.join(limited)}"
    return f"{name} ({vector}, {os.cpu_count()} cores)" if vector else name


# variables that narrow the vector units oneDNN and ATen use: an AVX2-only CPU, emulated
LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


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
