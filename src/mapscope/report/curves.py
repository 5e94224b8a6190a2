"""Training curves: CNN per epoch; MLP per mini-batch and per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mapscope.report.figures import fixed_layout, new_figure, save_figure


def epoch_axis(ax, epochs: Sequence[int]) -> None:
    """Whole-number epoch ticks, with room around the first and last epoch (a one-epoch run
    shows its point at 1 on a 0.5-1.5 axis, not on 0.96-1.04)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.set_xlabel("epoch")


def train_label(adds: str = "") -> str:
    """The training curve's legend, for every model the trainer trains: its figures are means
    over each pass's steps, taken while the weights still moved (on moved images where ``shift``
    is set), so after one pass they trail validation's, which is measured at the end."""
    return f"train (mean over the pass{adds})"


def what_training_adds(label_smoothing: float = 0.0, l1: float = 0.0, l2: float = 0.0) -> str:
    """What a training loss adds to the plain loss that validation reports ("label smoothing
    0.1, L2 penalty"), for the curves' legend; "" for nothing."""
    terms = [f"label smoothing {label_smoothing:g}"] if label_smoothing else []
    terms += [f"{name} penalty" for name, value in (("L1", l1), ("L2", l2)) if value]
    return ", ".join(terms)


def plot_cnn_history(history: Sequence[dict[str, float]], minimised: str = "") -> Figure:
    """Loss, accuracy and learning rate per epoch. ``minimised`` names what the training loss
    adds to the plain cross-entropy that validation reports ("label smoothing 0.1"), so that a
    training loss far above the validation loss reads as what it is."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure(13, 3.6)
    panels = [("loss", "val_loss", "loss"), ("accuracy", "val_accuracy", "accuracy")]
    for i, (train_key, val_key, title) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, i)
        adds = f",\nwith {minimised}" if minimised and train_key == "loss" else ""
        ax.plot(epochs, [h[train_key] for h in history], "o-", label=train_label(adds))
        ax.plot(epochs, [h[val_key] for h in history], "s-", label="validation (test split)")
        epoch_axis(ax, epochs)
        ax.set_title(title, y=1.0)  # a fixed place: no measuring of the axis below
        ax.grid(alpha=0.3)
        ax.legend()
    ax = fig.add_subplot(1, 3, 3)
    ax.plot(epochs, [h["lr"] for h in history], "o-", color="tab:green")
    epoch_axis(ax, epochs)
    ax.set_title("learning rate (end of epoch)", y=1.0)
    ax.grid(alpha=0.3)
    return fixed_layout(fig, left=0.05, bottom=0.15)


def live_plot(path: str | Path | None = None):
    """A training callback that redraws the curves after every epoch: in Jupyter below the
    cell; elsewhere (a script, a terminal) into ``path`` if given, else it does nothing, so
    the same code runs in both. IPython is only needed in a notebook.

    Use as ``train(..., callbacks=[live_plot()])``.
    """
    display = _notebook_display()

    def callback(history):
        figure = (
            plot_cnn_history(history)
            if history[-1].get("accuracy") is not None
            else plot_ae_history(history)
        )
        if display is not None:
            display(figure)
        elif path is not None:
            save_figure(figure, path, trim=False)

    return callback


def _notebook_display():
    """IPython's ``display`` (clearing the previous picture) when running in a notebook."""
    try:
        from IPython import get_ipython
        from IPython.display import clear_output, display
    except ImportError:
        return None
    if type(get_ipython()).__name__ != "ZMQInteractiveShell":  # a terminal IPython, or none
        return None

    def show(figure):
        clear_output(wait=True)
        display(figure)

    return show


def plot_mlp_history(
    history: Sequence[dict], batches: Sequence[dict], minimised: str = ""
) -> Figure:
    """Batch costs, averaged error, regularisation share; loss and accuracy per epoch.
    ``minimised``: what the training loss adds to the test loss ("L2 penalty"), which the
    legend says (the default MLP's penalty is over half its training loss)."""
    fig = new_figure(14, 7)
    steps = range(1, len(batches) + 1)
    panels = [
        ("cost", "cost per mini-batch"),
        ("error", "averaged error per mini-batch"),
        ("reg_ratio", "regularisation / cost per mini-batch"),
    ]
    for i, (key, title) in enumerate(panels, start=1):
        ax = fig.add_subplot(2, 3, i)
        ax.plot(steps, [b[key] for b in batches], lw=0.6)
        ax.set_xlabel("mini-batch")
        ax.set_title(title, y=1.0)  # a fixed place: no measuring of the axis below
        ax.grid(alpha=0.3)
    e = [h["epoch"] for h in history]
    ax = fig.add_subplot(2, 3, 4)
    adds = f",\nwith {minimised}" if minimised else ""
    ax.plot(e, [h["loss"] for h in history], "o-", ms=3, label=train_label(adds))
    ax.plot(e, [h["val_loss"] for h in history], "s-", ms=3, label="test")
    ax.set_title("loss per image", y=1.0)
    epoch_axis(ax, e)
    ax.legend()
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(2, 3, 5)
    ax.plot(e, [h["accuracy"] for h in history], label="train")
    ax.plot(e, [h["val_accuracy"] for h in history], label="test")
    ax.set_title("accuracy per epoch", y=1.0)
    epoch_axis(ax, e)
    ax.legend()
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(2, 3, 6)
    ax.plot(e, [h["lr"] for h in history], color="tab:green")
    ax.set_title("learning rate", y=1.0)
    epoch_axis(ax, e)
    ax.grid(alpha=0.3)
    return fixed_layout(fig, left=0.05, bottom=0.08, top=0.95, hspace=0.4)


def plot_ae_history(history: Sequence[dict[str, float]]) -> Figure:
    """Reconstruction loss of the training and the test images, and the learning rate."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure(10, 3.6)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(epochs, [h["loss"] for h in history], "o-", label=train_label())
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation (test split)")
    epoch_axis(ax, epochs)
    ax.set_title("reconstruction loss per pixel", y=1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(epochs, [h["lr"] for h in history], "o-", color="tab:green")
    epoch_axis(ax, epochs)
    ax.set_title("learning rate (end of epoch)", y=1.0)
    ax.grid(alpha=0.3)
    return fixed_layout(fig, left=0.07, bottom=0.15, wspace=0.25)
