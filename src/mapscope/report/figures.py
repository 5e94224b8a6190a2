"""Small helpers every plot module shares: making a Figure and saving it atomically.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so no global figure
state exists and the same functions work in scripts, tests and notebooks (a Figure displays
itself in Jupyter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from mapscope.io import atomic_path


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    _show_figures_in_notebooks()
    return fig


def _show_figures_in_notebooks() -> None:
    """In a Jupyter kernel, let a ``Figure`` left as a cell's value show as a picture.

    mapscope draws without pyplot, so matplotlib's inline backend, which registers that
    formatter, may never have been loaded; without it a notebook prints "<Figure size ...>"."""
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    formatter = shell.display_formatter.formatters["image/png"]
    if Figure not in formatter.type_printers:
        from mapscope.report.display import figure_png

        formatter.for_type(Figure, lambda fig: figure_png(fig, dpi=100, close=False))


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
    kind = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        if not (trim and kind == "png" and _save_trimmed_png(fig, tmp, dpi)):
            fig.savefig(tmp, format=kind, dpi=dpi, bbox_inches="tight" if trim else None)
    return path


def _save_trimmed_png(fig: Figure, path: Path, dpi: int, pad_inches: float = 0.1) -> bool:
    """What ``savefig(bbox_inches="tight")`` writes, drawn once instead of twice: the figure is
    rendered, then cut to the same tight box (labels measured by that one drawing). False when
    the box reaches outside the canvas (a legend put outside): matplotlib then enlarges it."""
    if fig.dpi != dpi or not isinstance(fig.canvas, FigureCanvasAgg):
        return False
    canvas = fig.canvas
    canvas.draw()
    box = fig.get_tightbbox(canvas.get_renderer()).padded(pad_inches)
    pixels = np.asarray(canvas.buffer_rgba())
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = (float(v) * dpi for v in box.extents)
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return False
    top, bottom = round(height - y1), round(height - y0)
    crop = pixels[top:bottom, round(x0) : round(x1)]
    Image.fromarray(crop).save(path, format="png")
    return True
