"""Activation grids: the input image beside all maps (or dense nodes) of one layer."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure
from mapscope.report.grids import as_tiles, display_scale, mosaic


def plot_activation_grid(
    images: np.ndarray,
    activations: np.ndarray,
    titles: list[str],
    layer: str,
    cmap: str = "jet",
    standardize: bool = False,
    per_row: int = 8,
) -> Figure:
    """One row block per image: the input on the left, the layer's maps numbered on the right."""
    blocks = []
    for act in activations:
        tiles = display_scale(as_tiles(act), standardize)
        blocks.append(mosaic(tiles, per_row))
    tile_h, tile_w = as_tiles(activations[0]).shape[1:]
    grid_h, grid_w = blocks[0][0].shape
    scale = max(0.16, 5.0 / max(grid_w, 1))
    height = max(2.2, grid_h * scale + 0.6)
    fig = new_figure(2.4 + grid_w * scale + 0.8, height * len(images))
    spec = fig.add_gridspec(len(images), 2, width_ratios=[2.4, grid_w * scale + 0.8])
    gap_color = "white"
    for k, (image, (grid, corners), title) in enumerate(zip(images, blocks, titles, strict=True)):
        ax = fig.add_subplot(spec[k, 0])
        ax.imshow(image, cmap="gray")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        ax = fig.add_subplot(spec[k, 1])
        colormap = _cmap(cmap, gap_color)
        vmin, vmax = (0, 255) if standardize else (np.nanmin(grid), np.nanmax(grid))
        shown = ax.imshow(
            grid,
            cmap=colormap,
            vmin=vmin,
            vmax=vmax if vmax > vmin else vmin + 1,
            interpolation="nearest",
        )
        fontsize = 5 if tile_h < 6 else 6
        for number, (top, left) in enumerate(corners):
            ax.text(
                left - 0.4,
                top - 0.4,
                str(number),
                fontsize=fontsize,
                color="white",
                va="top",
                ha="left",
                bbox={"boxstyle": "square,pad=0.05", "fc": "black", "alpha": 0.45, "lw": 0},
            )
        kind = "maps" if activations[0].ndim == 3 else "nodes"
        ax.set_title(
            f"{layer}: {len(corners)} {kind} ({tile_h}x{tile_w}), {per_row} per row", fontsize=9
        )
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.025, pad=0.01)
    return fig


def _cmap(name: str, gap_color: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=gap_color)
