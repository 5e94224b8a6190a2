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


def fixed_layout(
    fig: Figure,
    left: float,
    bottom: float,
    right: float = 0.985,
    top: float = 0.9,
    wspace: float = 0.22,
    hspace: float = 0.35,
) -> Figure:
    """Margins set by hand for a figure drawn often (training curves after every epoch): a
    tight layout measures every label first and doubled the drawing time of the curves.
    Save such a figure with ``save_figure(..., trim=False)``."""
    fig.subplots_adjust(
        left=left, bottom=bottom, right=right, top=top, wspace=wspace, hspace=hspace
    )
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100, trim: bool = True) -> Path:
    """Write ``fig`` atomically; ``trim`` cuts the canvas to what is drawn (and measures every
    label to do so; figures with a ``fixed_layout`` leave it out)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp,
            format=path.suffix.lstrip(".") or "png",
            dpi=dpi,
            bbox_inches="tight" if trim else None,
        )
    return path
