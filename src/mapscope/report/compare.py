"""Figures for pattern comparison: group agreement and class separation."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure
from mapscope.report.grids import mosaic


def plot_group_agreement(
    patterns: dict[str, object], difference: dict | None, layer: str, per_row: int = 8
) -> Figure:
    """Per group: the points active in all of its images, and the group mean; then A minus B."""
    panels = []
    for name, pattern in patterns.items():
        panels.append(
            (
                f"{name}: points active in all images (agreement per map in brackets)",
                pattern.all_active.astype(float),
                "Greys",
                pattern.agreement,
            )
        )
        panels.append((f"{name}: mean activation", pattern.mean, "jet", None))
    if difference is not None:
        panels.append(
            (
                "mean A - mean B (red: stronger in A, blue: stronger in B)",
                difference["mean_difference"],
                "bwr",
                None,
            )
        )
    fig = new_figure(11, 4.2 * len(panels))
    for k, (title, maps, cmap, agreement) in enumerate(panels, start=1):
        ax = fig.add_subplot(len(panels), 1, k)
        grid, corners = mosaic(maps, per_row)
        if cmap == "bwr":
            limit = float(np.nanmax(np.abs(grid))) or 1.0
            shown = ax.imshow(grid, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
        else:
            shown = ax.imshow(grid, cmap=cmap, interpolation="nearest")
        for m, (top, left) in enumerate(corners):
            label = f"{m}" if agreement is None else f"{m} ({agreement[m]:.2f})"
            ax.text(left, top, label, fontsize=5, color="magenta", va="top")
        ax.set_title(f"{layer}: {title}", fontsize=9)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.02)
    fig.tight_layout()
    return fig


def plot_separation(sep, names: tuple[str, str], layer: str, top: int = 16) -> Figure:
    """Bar chart of the strongest effect sizes, and the class-mean maps of the top units."""
    units = sep.units[:top]
    fig = new_figure(14, 3.2 + 3 * 14 / max(top, 1))
    spec = fig.add_gridspec(4, top, height_ratios=[2.2, 1, 1, 1])
    ax = fig.add_subplot(spec[0, :])
    colors = ["tab:red" if sep.effect_size[u] > 0 else "tab:blue" for u in units]
    ax.bar(range(len(units)), sep.effect_size[units], color=colors)
    ax.set_xticks(range(len(units)), [str(u) for u in units])
    ax.set_ylabel("Cohen's d")
    ax.set_xlabel(f"{layer} unit (ranked by |d|)")
    ax.set_title(f"{layer}: units separating {names[0]} (d > 0) from {names[1]} (d < 0)")
    ax.grid(alpha=0.3, axis="y")
    spatial = sep.class_mean_a.shape[1] > 1 or sep.class_mean_a.shape[2] > 1
    rows = [
        (names[0], sep.class_mean_a),
        (names[1], sep.class_mean_b),
        (f"{names[0]} - {names[1]}", sep.class_mean_a - sep.class_mean_b),
    ]
    for r, (label, maps) in enumerate(rows, start=1):
        shared = (
            float(max(np.abs(sep.class_mean_a[units]).max(), np.abs(sep.class_mean_b[units]).max()))
            or 1.0
        )
        for c, u in enumerate(units):
            ax = fig.add_subplot(spec[r, c])
            if r == 3:
                ax.imshow(maps[u], cmap="bwr", vmin=-shared, vmax=shared)
            else:
                ax.imshow(maps[u], cmap="jet", vmin=0, vmax=shared)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label if spatial else f"{label}\n(node mean)", fontsize=8)
            if r == 1:
                ax.set_title(f"{u}", fontsize=8)
    return fig
