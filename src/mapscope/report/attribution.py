"""Attribution maps beside their images: one row per image, one column per method."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def plot_attributions(
    images: np.ndarray,
    maps: dict[str, np.ndarray],
    titles: list[str],
    names: dict[str, str],
    signed: set[str],
) -> Figure:
    """``images`` (N, H, W[, 3]) as stored; ``maps`` {method: (N, H, W)}; ``names`` each
    method's title; red helps the score, blue (the ``signed`` methods) hurts it."""
    n, columns = len(images), 1 + len(maps)
    fig = Figure(figsize=(2.1 * columns, 2.2 * n), layout="constrained")
    axes = np.asarray(fig.subplots(n, columns, squeeze=False))
    for row in range(n):
        ax = axes[row, 0]
        ax.imshow(images[row], cmap="gray" if images[row].ndim == 2 else None)
        ax.set_title(titles[row], fontsize=8)
        for col, (method, values) in enumerate(maps.items(), start=1):
            ax = axes[row, col]
            grey = images[row] if images[row].ndim == 2 else images[row].mean(-1)
            ax.imshow(grey, cmap="gray", alpha=0.5)
            value = values[row]
            if method in signed:
                bound = max(float(np.abs(value).max()), 1e-12)
                ax.imshow(value, cmap="RdBu_r", vmin=-bound, vmax=bound, alpha=0.75)
            else:
                ax.imshow(value, cmap="inferno", alpha=0.75)
            if not np.any(value):  # Grad-CAM, say, when no map of its layer speaks for the class
                ax.text(
                    0.5,
                    0.5,
                    "zero everywhere",
                    ha="center",
                    va="center",
                    fontsize=8,
                    transform=ax.transAxes,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
                )
            if row == 0:
                ax.set_title(names[method], fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
