"""Sweeps: a metric against the swept options with its spread over seeds, and the MLP's
regularisation share over time."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure


def smoothed(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Moving average over ``window`` batches, at the batch numbers it is centred on."""
    if window <= 1 or len(values) < window:
        return np.arange(1, len(values) + 1), values
    means = np.convolve(values, np.ones(window) / window, mode="valid")
    return np.arange(len(means)) + (window + 1) / 2, means


def _numeric(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_points(rows: list[dict], varied: list[str], metric: str, higher_is_better: bool) -> Figure:
    """The sweep's metric against its first swept option (seeds as dots, their mean as a line
    with the standard deviation as error bars), one line per combination of the other swept
    options, so that a mean and its bar span seeds only; with only seeds swept, the metric per
    seed and their mean."""
    fig = new_figure(7.5, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    done = [r for r in rows if r.get(metric) is not None]
    others = [n for n in varied if n != "seed"]
    if not others:
        seeds = [r.get("seed", 0) for r in done]
        values = [r[metric] for r in done]
        ax.plot(seeds, values, "o", ms=8, label="one run per seed")
        if values:
            mean, std = float(np.mean(values)), float(np.std(values))
            ax.axhline(mean, color="C1", label=f"mean {mean:.4f}; band: +-1 std ({std:.4f})")
            ax.axhspan(mean - std, mean + std, color="C1", alpha=0.15)
        ax.set_xlabel("seed")
        ax.set_xticks(sorted(set(seeds)))
        ax.set_title(f"{metric} of {len(values)} runs that differ only in their seed", fontsize=10)
    else:
        x_name, line_names = others[0], others[1:]
        xs = list(dict.fromkeys(r[x_name] for r in done))
        position = {v: (v if _numeric(xs) else k) for k, v in enumerate(xs)}
        lines = list(dict.fromkeys(tuple(r.get(n) for n in line_names) for r in done))
        for k, line in enumerate(lines):
            chosen = [r for r in done if tuple(r.get(n) for n in line_names) == line]
            colour = f"C{k % 10}"
            ax.plot(
                [position[r[x_name]] for r in chosen],
                [r[metric] for r in chosen],
                ".",
                color=colour,
                alpha=0.5,
            )
            at = [x for x in xs if any(r[x_name] == x for r in chosen)]
            groups = [[r[metric] for r in chosen if r[x_name] == x] for x in at]
            label = ", ".join(f"{n}={v}" for n, v in zip(line_names, line, strict=True))
            ax.errorbar(
                [position[x] for x in at],
                [np.mean(g) for g in groups],
                yerr=[np.std(g) for g in groups],
                fmt="o-",
                color=colour,
                capsize=3,
                label=(label + " " if label else "") + "mean +- std over seeds"
                if "seed" in varied
                else label or None,
            )
        if not _numeric(xs):
            ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        ax.set_xlabel(x_name)
        ax.set_title(f"{metric} against {x_name}", fontsize=10)
    better = "higher is better" if higher_is_better else "lower is better"
    ax.set_ylabel(f"{metric} ({better})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_regularisation(param: str, batches: dict) -> Figure:
    """The MLP sweep's second picture: the share of the L1/L2 terms in each batch's cost
    (``batches``: value -> that run's per-batch records)."""
    fig = new_figure(7.5, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    window = 1
    for value, rows in batches.items():
        ratios = np.array([b["reg_ratio"] for b in rows], dtype=float)
        window = min(len(ratios) // 5, max(5, len(ratios) // 50)) or 1
        line = ax.plot(np.arange(1, len(ratios) + 1), ratios, lw=0.4, alpha=0.25)[0]
        ax.plot(*smoothed(ratios, window), lw=1.8, color=line.get_color(), label=f"{param}={value}")
    ax.set_xlabel("mini-batch")
    ax.set_ylabel("regularisation / batch cost")
    smoothing = f" (thick: moving mean over {window} batches)" if window > 1 else ""
    ax.set_title(f"share of regularisation in the batch cost{smoothing}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
