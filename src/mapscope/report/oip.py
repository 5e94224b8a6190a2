"""OIP pictures: all OIPs of a layer (plain and contrast-enhanced) and the evolution of one."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from mapscope.report.figures import new_figure


def enhance(image: np.ndarray) -> np.ndarray:
    """Contrast stretch between the 2nd and 98th percentile: faint structure becomes visible."""
    low, high = np.percentile(image, [2, 98])
    return np.clip((image - low) / (high - low if high > low else 1.0), 0, 1)


def shown(image: np.ndarray) -> np.ndarray:
    """A colour (H, W, 3) search image stretched to [0, 1] for imshow; grey ones as they are."""
    if image.ndim == 2:
        return image
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low if high > low else 1.0)


def plot_oips(result, reference: dict, per_row: int = 8, name: str | None = None) -> Figure:
    """Plain OIPs on the left, contrast-enhanced on the right, each titled with its map number
    (and, right, its activation against the test images'), large enough to read; ``name`` is
    the layer's name in the title (default ``result.layer``). A unit grown from a test image
    (no noise woke it) is starred."""
    n = len(result.units)
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    starred = bool((result.start_image >= 0).any())
    title_room = 0.95 if starred else 0.7  # a second line of title for the stars' key
    height = 1.3 * rows + 0.2 + title_room
    fig = new_figure(1.1 * cols * 2 + 0.4, height)
    spec = fig.add_gridspec(
        rows,
        2 * cols + 1,
        width_ratios=[1] * cols + [0.15] + [1] * cols,
        top=1 - title_room / height,  # the title just above the first row
        bottom=0.2 / height,
    )
    for k, unit in enumerate(result.units):
        r, c = divmod(k, cols)
        for panel, offset in (("plain", 0), ("enhanced", cols + 1)):
            ax = fig.add_subplot(spec[r, c + offset])
            ax.set_xticks([])
            ax.set_yticks([])
            if result.dead[k]:
                ax.imshow(np.full(result.images[k].shape, np.nan))  # keeps the tile's aspect
                ax.text(
                    0.5,
                    0.5,
                    "dead",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="red",
                    transform=ax.transAxes,
                )
            else:
                image = result.images[k]
                ax.imshow(
                    shown(image) if panel == "plain" else enhance(image),
                    cmap="gray" if panel == "plain" else "magma",
                )
            p99 = reference["p99"][k]
            # a unit that real images leave at or below zero has no meaningful ratio
            ratio = f"{result.final_activation[k] / p99:.0f}x" if p99 > 1e-3 else "-"
            star = "*" if result.start_image[k] >= 0 else ""
            title = f"{unit}{star}" if panel == "plain" else f"{unit}{star}: {ratio}"
            ax.set_title(title, fontsize=9, pad=2)
    fig.suptitle(
        f"OIPs of {name or result.layer}"
        + (f", node {result.node}" if result.node else "")
        + ": left plain, right contrast-enhanced (title: activation / 99th percentile of test "
        "images; - where that percentile is not above 0)"
        + (
            "\n* grown from the test image that drives it most: no noise start woke it"
            if starred
            else ""
        ),
        fontsize=11,
        y=1 - 0.25 / height,
    )
    return fig


def describe_rise(trace: np.ndarray) -> str:
    """What the curve shows, in words: by which steps the objective made half and 90 % of its
    total rise (the caption follows the data, whatever shape it has)."""
    trace = np.asarray(trace, dtype=float)
    finite = trace[np.isfinite(trace)]
    if len(finite) < 2 or finite[-1] <= finite[0]:
        return "the objective did not rise"
    gained = (np.maximum.accumulate(finite) - finite[0]) / (finite.max() - finite[0])
    half = int(np.argmax(gained >= 0.5)) + 1
    most = int(np.argmax(gained >= 0.9)) + 1
    return f"half of the rise by step {half}, 90 % by step {most} of {len(finite)}"


def plot_evolution(
    frames: dict[int, np.ndarray], trace: np.ndarray, layer: str, unit: int
) -> Figure:
    fig = new_figure(1.4 * len(frames) + 0.5, 4.2)
    spec = fig.add_gridspec(2, len(frames), height_ratios=[1, 1.3])
    for k, (step, image) in enumerate(frames.items()):
        ax = fig.add_subplot(spec[0, k])
        ax.imshow(shown(image), cmap="gray")
        ax.set_title(f"step {step}", fontsize=7)
        ax.set_axis_off()
    ax = fig.add_subplot(spec[1, :])
    ax.plot(range(1, len(trace) + 1), trace)
    ax.set_xscale("log")
    ax.set_xlabel("step (log scale)")
    ax.set_ylabel("objective")
    ax.set_title(f"{layer}, unit {unit}: {describe_rise(trace)}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
