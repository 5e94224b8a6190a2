"""The MLP parameter sweep: accuracy against the value, and the regularisation share over time."""

from __future__ import annotations

from matplotlib.figure import Figure

from mapscope.report.figures import new_figure


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
    for value, history in histories.items():
        ratios = [b["reg_ratio"] for b in history["batch"]]
        ax.plot(range(1, len(ratios) + 1), ratios, lw=0.7, label=f"{param}={value}")
    ax.set_xlabel("mini-batch")
    ax.set_ylabel("regularisation / batch cost")
    ax.set_title("share of regularisation in the batch cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
