"""Activation grids: the input image beside all maps (or dense nodes) of one layer."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure
from mapscope.report.grids import display_scale, mosaic


def plot_activation_grid(
    images: np.ndarray,
    activations: np.ndarray,
    titles: list[str],
    layer: str,
    cmap: str = "viridis",
    standardize: bool = False,
    per_row: int = 8,
    shared_scale: tuple[float, float] | None = None,
) -> Figure:
    """One row block per image: the input on the left, the layer's maps numbered on the right
    (a dense layer's nodes as a bar chart). Colours: one scale per image by default,
    ``shared_scale`` (low, high) for all images of the figure; the title says which."""
    if activations[0].ndim == 1:
        return _plot_nodes(images, activations, titles, layer, shared_scale)
    tile_h, tile_w = activations[0].shape[1:]
    gap = max(2, tile_h // 4)  # room above each map for its number
    blocks = [mosaic(display_scale(act, standardize), per_row, gap) for act in activations]
    grid_h, grid_w = blocks[0][0].shape
    width = 9.0
    height = max(2.0, width * grid_h / grid_w)
    side = min(3.0, height)  # the input, drawn about as large as a few rows of maps
    fig = new_figure(side + width + 1.0, (height + 0.5) * len(images))
    spec = fig.add_gridspec(len(images), 2, width_ratios=[side, width + 1.0], wspace=0.05)
    if standardize:
        scale_note, low, high = (
            "each map standardized (mean 128, 64 per SD; constant maps 0)",
            0,
            255,
        )
        label = "standardized activation"
    elif shared_scale is not None:
        scale_note, (low, high) = "one colour scale for all images", shared_scale
        label = "activation"
    else:
        scale_note, low, high = "one colour scale per input image", None, None
        label = "activation"
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    for k, (image, (grid, corners), title) in enumerate(zip(images, blocks, titles, strict=True)):
        ax = fig.add_subplot(spec[k, 0])
        ax.imshow(image, cmap="gray")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        ax.set_anchor("N")  # at the top, beside the first rows of maps
        ax = fig.add_subplot(spec[k, 1])
        vmin = np.nanmin(grid) if low is None else low
        vmax = np.nanmax(grid) if high is None else high
        shown = ax.imshow(
            grid,
            cmap=colormap,
            vmin=vmin,
            vmax=vmax if vmax > vmin else vmin + 1,
            interpolation="nearest",
        )
        for number, (top, left) in enumerate(corners):
            ax.text(left, top - 0.2, str(number), fontsize=7, color="black", va="bottom")
        ax.set_title(f"{layer}: {len(corners)} maps ({tile_h}x{tile_w}); {scale_note}", fontsize=9)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.03, pad=0.01, label=label)
    return fig


def _plot_nodes(images, activations, titles, layer, shared_scale) -> Figure:
    """A dense layer: each node's activation as a bar, numbered along the x axis."""
    n = activations.shape[1]
    fig = new_figure(2.6 + max(6.0, 0.09 * n), 2.6 * len(images))
    spec = fig.add_gridspec(
        len(images), 2, width_ratios=[2.2, max(6.0, 0.09 * n)], wspace=0.15, hspace=0.6
    )
    low, high = shared_scale or (None, None)
    for k, (image, acts, title) in enumerate(zip(images, activations, titles, strict=True)):
        ax = fig.add_subplot(spec[k, 0])
        ax.imshow(image, cmap="gray")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        ax = fig.add_subplot(spec[k, 1])
        ax.bar(np.arange(n), acts, width=0.8, color="tab:blue")
        ax.set_xlim(-0.5, n - 0.5)
        if low is not None:
            ax.set_ylim(min(low, 0), high * 1.05 if high > 0 else 1)
        ax.set_xlabel("node")
        ax.set_ylabel("activation")
        ax.set_title(f"{layer}: {n} nodes", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    return fig
