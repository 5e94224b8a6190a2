"""The MLP parameter sweep: accuracy against the value, and the regularisation share over time."""

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


def plot_sweep(param: str, rows: list[dict], histories: dict) -> Figure:
    fig = new_figure(13, 4.2)
    ax = fig.add_subplot(1, 2, 1)
    values = [r[param] for r in rows]
    ax.plot(values, [r["train_accuracy"] for r in rows], "o-", label="train")
    ax.plot(values, [r["test_accuracy"] for r in rows], "s-", label="test")
    ax.set_xlabel(param)
    ax.set_ylabel("accuracy (last epoch)")
    ax.set_title(f"accuracy against {param}")
    ax.grid(alpha=0.3)
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    window = 1
    for value, history in histories.items():
        ratios = np.array([b["reg_ratio"] for b in history["batch"]], dtype=float)
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
