"""The annotated confusion heatmap and per-class galleries."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure


def plot_confusion(matrix: np.ndarray, class_names, title: str = "confusion matrix") -> Figure:
    """Rows actual, columns predicted. Diagonal: % of the actual class and TP/AN; off-diagonal:
    % of the actual class and the count; empty cells stay blank."""
    n = len(class_names)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    size = max(6.0, 0.75 * n + 2)
    fig = new_figure(size, size)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.where(matrix > 0, np.sqrt(share), np.nan), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if matrix[i, j] == 0:
                continue
            if i == j:
                text = f"{100 * share[i, j]:.1f}%\n{matrix[i, j]}/{totals[i, 0]}"
            else:
                text = f"{100 * share[i, j]:.1f}%\n{matrix[i, j]}"
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(n), [str(c) for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    return fig
