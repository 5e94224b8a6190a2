"""Pictures of raw samples: digits with their labels, WIFI rows as a table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure


def image_tiles(
    images: np.ndarray,
    titles: Sequence[str],
    per_row: int = 10,
    suptitle: str | None = None,
    cmap: str = "gray_r",
) -> Figure:
    """A grid of images, each with a short title (index, label, prediction ...)."""
    n = max(len(images), 1)
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    lines = max((t.count("\n") + 1 for t in titles), default=1)  # titles of several lines
    fig = new_figure(1.3 * cols, (1.25 + 0.15 * lines) * rows + (0.5 if suptitle else 0))
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i < len(images):
            ax.imshow(images[i], cmap=cmap, interpolation="nearest")
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
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
