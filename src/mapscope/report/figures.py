"""Small helpers every plot module shares: making a Figure and saving it atomically.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so no global figure
state exists and the same functions work in scripts, tests and notebooks (a Figure displays
itself in Jupyter).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mapscope.io import atomic_path


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return path
