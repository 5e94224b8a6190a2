"""Figures for pattern comparison: group agreement and class separation."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mapscope.report.figures import new_figure
from mapscope.report.grids import mosaic


def plot_group_agreement(
    patterns: Mapping[str, object],
    difference: dict | None,
    layer: str,
    per_row: int = 8,
    members: dict[str, str] | None = None,
) -> Figure:
    """Per group: the points active in all of its images (black on white, said in the title:
    a yes/no mask needs no colour scale), and the group mean; then mean A minus mean B. Maps are framed in grey,
    numbered above (with the group's agreement in brackets). ``members`` names the images of
    each group, for the titles."""
    members = members or {}
    panels = []
    for name, pattern in patterns.items():
        who = f"group {name} ({members[name]})" if name in members else f"group {name}"
        panels.append(
            (
                f"{who}: points active in every image (black)",
                pattern.all_active.astype(float),
                "mask",
                pattern.agreement,
            )
        )
        panels.append((f"{who}: mean activation", pattern.mean, "viridis", None))
    if difference is not None:
        panels.append(
            (
                "mean A - mean B (red: stronger in A, blue: stronger in B)",
                difference["mean_difference"],
                "RdBu_r",
                None,
            )
        )
    tiles = panels[0][1]
    gap = max(2, tiles.shape[1] // 4)  # room for the numbers above each map
    grid_rows = -(-len(tiles) // per_row)
    aspect = (
        grid_rows * (tiles.shape[1] + gap) / (min(per_row, len(tiles)) * (tiles.shape[2] + gap))
    )
    rows = -(-len(panels) // 2)  # two panels side by side: a group's mask and its mean
    fig = new_figure(16, rows * (7.2 * aspect + 0.9))
    for k, (title, maps, cmap, agreement) in enumerate(panels, start=1):
        ax = fig.add_subplot(rows, 2, k)
        grid, corners = mosaic(maps, per_row, gap)
        if cmap == "mask":
            colours = ListedColormap(["white", "black"]).with_extremes(bad="0.8")
            ax.imshow(grid, cmap=colours, vmin=0, vmax=1, interpolation="nearest")
        else:
            limit = float(np.nanmax(np.abs(grid))) or 1.0
            low = -limit if cmap == "RdBu_r" else float(np.nanmin(grid))
            colours = matplotlib.colormaps[cmap].with_extremes(bad="0.8")
            shown = ax.imshow(grid, cmap=colours, vmin=low, vmax=limit, interpolation="nearest")
            label = "mean A - mean B" if cmap == "RdBu_r" else "mean activation"
            fig.colorbar(shown, ax=ax, fraction=0.02, pad=0.01, label=label)
        for m, (top, left) in enumerate(corners):
            label = f"{m}" if agreement is None else f"{m} ({agreement[m]:.2f})"
            ax.text(left, top - 0.2, label, fontsize=6, color="black", va="bottom")
        ax.set_title(f"{layer}: {title}", fontsize=9, pad=10)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_separation(
    sep, mean_maps: np.ndarray, names: tuple[str, str], layer: str, top: int = 16
) -> Figure:
    """Bar chart of the strongest effect sizes, and below each bar the class-mean maps of that
    unit (``mean_maps``: (2, C, H, W), class a then b): the bars and the map columns share one
    grid, so a unit's number labels both; one colour scale for the two class means, one for
    their difference."""
    mean_a, mean_b = mean_maps
    units = sep.units[:top]
    n = len(units)
    fig = new_figure(1.0 + 0.8 * n, 6.4)
    spec = fig.add_gridspec(
        4, n + 1, height_ratios=[2.4, 1, 1, 1], width_ratios=[1] * n + [0.25], hspace=0.35
    )
    ax = fig.add_subplot(spec[0, :n])
    colors = ["tab:red" if sep.effect_size[u] > 0 else "tab:blue" for u in units]
    ax.bar(range(n), sep.effect_size[units], color=colors, width=0.7)
    ax.set_xlim(-0.5, n - 0.5)  # bar i sits over map column i
    ax.set_xticks(range(n), [str(u) for u in units], fontsize=8)
    ax.set_ylabel("Cohen's d")
    ax.set_title(
        f"{layer}: the {n} units that separate {names[0]} (d > 0, red) from {names[1]} "
        f"(d < 0, blue) best; unit numbers under the bars",
        fontsize=10,
    )
    ax.grid(alpha=0.3, axis="y")
    spatial = mean_a.shape[1] > 1 or mean_a.shape[2] > 1
    means = np.stack([mean_a[units], mean_b[units]])
    shared = float(np.abs(means).max()) or 1.0
    difference = mean_a - mean_b
    limit = float(np.abs(difference[units]).max()) or 1.0
    rows = [
        (f"mean of {names[0]}", mean_a, "viridis", 0.0, shared),
        (f"mean of {names[1]}", mean_b, "viridis", 0.0, shared),
        (f"{names[0]} - {names[1]}", difference, "RdBu_r", -limit, limit),
    ]
    for r, (label, maps, cmap, low, high) in enumerate(rows, start=1):
        # one axes per row, each map in its column (an axes per map took most of the time)
        ax = fig.add_subplot(spec[r, :n])
        image = _map_row(ax, [maps[u] for u in units], cmap, low, high, fig)
        ax.set_ylabel(label if spatial else f"{label}\n(node)", fontsize=8)
        if r == 2:  # the two class means share one scale
            bar = fig.colorbar(image, cax=fig.add_subplot(spec[1:3, n]), label="mean activation")
        elif r == 3:
            bar = fig.colorbar(image, cax=fig.add_subplot(spec[3, n]), label="difference")
        if r > 1:
            bar.ax.locator_params(nbins=3)
    return fig


def _map_row(ax, maps: list[np.ndarray], cmap: str, low: float, high: float, fig: Figure):
    """Map ``i`` framed in column ``i`` of ``ax`` (x from -0.5 to n - 0.5, as the bars above),
    its pixels square; returns the last image, for a colour bar."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    box = ax.get_position()
    width, height = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
    half = height * len(maps) / width / 2  # data units per inch are the same on both axes
    image = None
    for c, m in enumerate(maps):
        h, w = m.shape
        size = 0.82 / max(h, w)  # the longer side of a map: 0.82 of its column
        x0, y0 = c - w * size / 2, -h * size / 2
        extent = (x0, x0 + w * size, y0, y0 + h * size)
        image = ax.imshow(m, cmap=cmap, vmin=low, vmax=high, extent=extent, interpolation="nearest")
        ax.add_patch(Rectangle((x0, y0), w * size, h * size, fill=False, lw=0.6, ec="0.35"))
    ax.set_xlim(-0.5, len(maps) - 0.5)  # after the images: each imshow sets its own limits
    ax.set_ylim(-half, half)
    ax.set_aspect("auto")
    return image
