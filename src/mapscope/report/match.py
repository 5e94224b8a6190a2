"""Pictures of a run match: per-layer numbers beside their baselines, distributions of the
matched correlations, the CKA map, matched units side by side, and units every run learned.

Drawing only: each function takes a result of ``workflows/match.py`` (duck-typed) or plain
rows and returns a matplotlib Figure.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure
from mapscope.report.oip import enhance

AGAINST = {
    "trained": "trained vs trained",
    "untrained": "vs untrained",
    "shuffled": "images shuffled",
}
COLOURS = {"trained": "C0", "untrained": "C7", "shuffled": "C3"}


def _grouped_bars(ax, layers: list[str], bars: list[tuple[list[float], str, str]]) -> None:
    """Three bars per layer, side by side (values, colour, legend label)."""
    x = np.arange(len(layers))
    for k, (values, colour, label) in enumerate(bars):
        ax.bar(x + (k - 1) * 0.27, values, 0.27, color=colour, label=label)
    ax.set_xticks(x, layers, rotation=20)
    ax.set_ylim(0, 1.32)  # room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.grid(axis="y", alpha=0.3)


def plot_summary(per_layer: list[dict]) -> Figure:
    """Left: mean matched correlation per layer, runs against each other and the baselines.
    Right: the share of reliably learned units (r > 0.9) and of units in the same order."""
    fig = new_figure(13, 4.6)
    layers = [row["layer"] for row in per_layer]
    ax = fig.add_subplot(1, 2, 1)
    _grouped_bars(
        ax,
        layers,
        [([row[f"{a}_mean"] for row in per_layer], COLOURS[a], AGAINST[a]) for a in AGAINST],
    )
    ax.set_ylabel("mean correlation of matched units")
    ax.set_title("how alike are the matched units? (mean over pairs of runs)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax = fig.add_subplot(1, 2, 2)
    shares = [
        ("trained_reliable_share", "C0", "r > 0.9 (learned reliably)"),
        ("untrained_reliable_share", "C7", "r > 0.9 vs untrained"),
        ("trained_same_index_share", "C2", "matched to the same index"),
    ]
    _grouped_bars(ax, layers, [([row[k] for row in per_layer], c, label) for k, c, label in shares])
    ax.scatter(
        np.arange(len(layers)) + 0.27,
        [row["same_index_chance"] for row in per_layer],
        marker="_",
        s=300,
        color="k",
        zorder=3,
        label="same index by chance (1/units)",
    )
    ax.set_ylabel("share of the layer's units")
    ax.set_title("reliably learned units, and the same order?", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    fig.tight_layout()
    return fig


def plot_distributions(result) -> Figure:
    """Histogram per layer of every matched unit's correlation, pooled over pairs."""
    layers = result.layers
    columns = min(3, len(layers))
    rows = -(-len(layers) // columns)
    fig = new_figure(4.3 * columns, 3.2 * rows)
    bins = np.linspace(-0.2, 1, 25)
    for k, layer in enumerate(layers):
        ax = fig.add_subplot(rows, columns, k + 1)
        for against in AGAINST:
            values = np.concatenate([p.layers[layer][against].matched for p in result.pairs])
            values = values[~np.isnan(values)]
            ax.hist(
                np.clip(values, bins[0], bins[-1]),
                bins,
                histtype="step" if against != "trained" else "stepfilled",
                alpha=0.6 if against == "trained" else 1,
                lw=1.5,
                color=COLOURS[against],
                label=AGAINST[against],
            )
        ax.axvline(0.9, color="k", lw=0.8, ls=":")
        ax.set_title(f"{layer}: matched correlations", fontsize=10)
        ax.set_xlabel("r of a unit with its match (dotted: 0.9)")
        ax.set_ylabel("units")
        if k == 0:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _heatmap(
    ax,
    values: np.ndarray,
    rows: list[str],
    columns: list[str],
    names: tuple[str, str],
    title: str,
    fig,
) -> None:
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    ax.set_ylabel(f"layers of {names[0]}", fontsize=9)
    ax.set_xlabel(f"layers of {names[1]}", fontsize=9)
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(
                j,
                i,
                f"{values[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="k" if values[i, j] > 0.6 else "w",
            )
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="linear CKA")


def plot_cka(result) -> Figure:
    """Linear CKA between every layer of the first two runs (and the mean over all pairs when
    there are more runs of one architecture): the bright diagonal finds corresponding layers."""
    first = result.pairs[0]
    same_layers = all(layers == result.cka_layers[0] for layers in result.cka_layers)
    panels = 2 if len(result.pairs) > 1 and same_layers else 1
    fig = new_figure(6 * panels, 5)
    a, b = result.labels[first.a], result.labels[first.b]
    ax = fig.add_subplot(1, panels, 1)
    _heatmap(
        ax,
        first.cka,
        result.cka_layers[first.a],
        result.cka_layers[first.b],
        (a, b),
        f"linear CKA, {a} against {b}",
        fig,
    )
    if panels == 2:
        ax = fig.add_subplot(1, 2, 2)
        mean = np.mean([p.cka for p in result.pairs], axis=0)
        names = result.cka_layers[0]
        _heatmap(
            ax,
            mean,
            names,
            names,
            ("run A", "run B"),
            f"mean over {len(result.pairs)} pairs of runs",
            fig,
        )
    fig.tight_layout()
    return fig


def _show(ax, image: np.ndarray | None, note: str = "") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if image is None:
        ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=7, transform=ax.transAxes)
        return
    ax.imshow(enhance(image), cmap="gray")


def plot_pairs(result, layer: str, shown: list[tuple[int, int, float]], a: int, b: int) -> Figure:
    """The best (top rows) and worst (bottom rows) matched units of runs a and b in ``layer``,
    each as its OIP, and for the first conv layer its kernel, side by side."""
    kernels = layer == result.kernel_layer and a in result.kernels and b in result.kernels
    per_unit = 4 if kernels else 2
    best = shown[: min(6, len(shown))]
    worst = shown[len(best) :]
    columns = max(len(best), len(worst), 1)
    groups = [(g, name) for g, name in ((best, "best"), (worst, "worst")) if g]
    fig = new_figure(1.6 * columns + 1.2, 1.75 * per_unit * len(groups) + 0.6)
    grid = fig.add_gridspec(per_unit * len(groups), columns)
    labels = [result.labels[a], result.labels[b]]
    oips = [result.oips.get((a, layer), {}), result.oips.get((b, layer), {})]
    for g, (group, name) in enumerate(groups):
        for c, (ua, ub, r) in enumerate(group):
            top = g * per_unit
            for side, (run, unit) in enumerate(((a, ua), (b, ub))):
                ax = fig.add_subplot(grid[top + side, c])
                _show(ax, oips[side].get(unit), "no OIP\n(--no-oips)")
                if side == 0:
                    ax.set_title(f"{name}: r = {r:.2f}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{labels[side]}\nOIP", fontsize=7)
                ax.set_xlabel(f"unit {unit}", fontsize=7, labelpad=1)
                if kernels:
                    ax = fig.add_subplot(grid[top + 2 + side, c])
                    kernel = result.kernels[run][unit]
                    bound = float(np.abs(kernel).max()) or 1.0  # white is 0, as in the atlas
                    ax.imshow(kernel, cmap="RdBu_r", vmin=-bound, vmax=bound)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if c == 0:
                        ax.set_ylabel(f"{labels[side]}\nkernel", fontsize=7)
    fig.suptitle(
        f"{layer}: matched units of {labels[0]} and {labels[1]}, the {len(best)} most and "
        f"{len(worst)} least alike\n(r: correlation over the test images; units that no test "
        "image activates are left out)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_common_units(result, layer: str, units: list[list[int]], total: int) -> Figure:
    """Units that every run learned (matched above 0.9 in all): a row per unit, a column per
    run, each the OIP of that run's matched unit."""
    runs = len(result.labels)
    rows = max(len(units), 1)
    fig = new_figure(1.5 * runs + 1.0, 1.6 * rows + 0.8)
    if not units:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"{layer}: no unit of {result.labels[0]} is matched above 0.9 in every other run",
            ha="center",
            va="center",
            fontsize=9,
        )
        return fig
    for i, row in enumerate(units):
        for run, unit in enumerate(row):
            ax = fig.add_subplot(rows, runs, i * runs + run + 1)
            _show(ax, result.oips.get((run, layer), {}).get(unit), "no OIP")
            ax.set_xlabel(f"unit {unit}", fontsize=7, labelpad=1)
            if i == 0:
                ax.set_title(result.labels[run], fontsize=8)
    fig.suptitle(
        f"{layer}: {total} unit{'s' if total != 1 else ''} learned by all {runs} runs "
        "(r > 0.9 with the first run's unit); "
        f"{len(units)} shown",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
