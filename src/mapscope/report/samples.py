"""Pictures of raw samples: digits with their labels, WIFI rows as a table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure


def prediction_caption(index: int, predicted: str, actual: str) -> str:
    """The caption of a test image shown for what it was taken for: its number in the split,
    then the predicted and the true class (evaluate's galleries, compare's confusions)."""
    return f"#{index}\npred {predicted}\ntrue {actual}"


def image_tiles(
    images: np.ndarray,
    titles: Sequence[str],
    per_row: int = 10,
    suptitle: str | None = None,
    cmap: str = "gray_r",
    signed: bool = False,
) -> Figure:
    """A grid of images, each with a short title (index, label, prediction ...) above it.
    ``signed``: each image's scale is centred on zero (for weights, with a diverging ``cmap``
    such as ``"RdBu_r"``), so that the middle colour means 0 in every image.

    One axes spanning the figure, measured in inches, holds every image at its own place: a
    hundred-image gallery draws in a fraction of a second, where an axes per image and a
    tight layout took seconds. Each image keeps its own grey scale, as ``imshow`` gives it."""
    n = max(len(images), 1)
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    lines = max((t.count("\n") + 1 for t in titles), default=1)  # titles of several lines
    cell_w, cell_h = 1.3, 1.25 + 0.15 * lines
    head = 0.5 if suptitle else 0.0
    width, height = cell_w * cols, cell_h * rows + head
    fig = new_figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    side = 1.05  # the box an image is fitted into, in inches
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        h, w = image.shape[:2]
        scale = side / max(h, w)
        x0 = col * cell_w + (cell_w - w * scale) / 2
        y0 = height - head - (row + 1) * cell_h + 0.08
        bound = (float(np.abs(image).max()) or 1.0) if signed else None
        ax.imshow(
            image,
            cmap=cmap,
            vmin=None if bound is None else -bound,
            vmax=bound,
            interpolation="nearest",
            extent=(x0, x0 + w * scale, y0, y0 + h * scale),
            aspect="auto",
        )
        if i < len(titles):
            ax.text(
                col * cell_w + cell_w / 2,
                y0 + h * scale + 0.05,
                titles[i],
                ha="center",
                va="bottom",
                fontsize=8,
                linespacing=1.1,
            )
    ax.set_xlim(0, width)  # after the images: each imshow sets the limits to its own extent
    ax.set_ylim(0, height)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, y=1 - 0.12 / height)
    return fig


def table_figure(header: Sequence[str], rows: Sequence[Sequence[object]], title: str) -> Figure:
    fig = new_figure(max(6.0, 0.9 * len(header)), 0.5 + 0.3 * (len(rows) + 1))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    table = ax.table(
        cellText=[[str(v) for v in r] for r in rows], colLabels=list(header), loc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    ax.set_title(title, fontsize=10)
    return fig
