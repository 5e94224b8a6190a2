"""Figures of the autoencoder: reconstructions, the latent space, generated images.

Arrays in, Figures out. Images are (N, C, H, W) pixels in [0, 1]; ``cmap`` is how a grey image
is drawn (``gray_r``: ink dark on white, as MNIST digits are shown; ``gray`` for photographs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from mapscope.report.figures import new_figure


def to_display(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W) for grey, (N, H, W, 3) for colour, clipped to [0, 1]."""
    images = np.clip(images, 0, 1)
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def _show(ax, image: np.ndarray, cmap: str) -> None:
    ax.imshow(
        image, cmap=cmap if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_xticks([])
    ax.set_yticks([])


def mosaic(images: np.ndarray, per_row: int, gap: int = 1) -> np.ndarray:
    """Display images (N, H, W[, 3]) in one array, rows of ``per_row``, white gaps."""
    n, h, w = images.shape[:3]
    rows, cols = math.ceil(n / per_row), min(per_row, n)
    out = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, *images.shape[3:]))
    for k in range(n):
        r, c = divmod(k, per_row)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[k]
    return out


def plot_reconstructions(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    titles: Sequence[str],
    errors: np.ndarray,
    cmap: str = "gray_r",
) -> Figure:
    """Originals (top row) above their reconstructions, each with its per-pixel error."""
    n = len(originals)
    cols = min(n, 10)
    rows = math.ceil(n / cols)
    fig = new_figure(1.5 * cols, 3.3 * rows)
    left, right = to_display(originals), to_display(reconstructions)
    for k in range(n):
        r, c = divmod(k, cols)
        top = fig.add_subplot(2 * rows, cols, 2 * r * cols + c + 1)
        _show(top, left[k], cmap)
        top.set_title(titles[k], fontsize=8)
        bottom = fig.add_subplot(2 * rows, cols, (2 * r + 1) * cols + c + 1)
        _show(bottom, right[k], cmap)
        bottom.set_title(f"error {errors[k]:.4f}", fontsize=8)
        if c == 0:
            top.set_ylabel("original", fontsize=8)
            bottom.set_ylabel("reconstruction", fontsize=8)
    fig.suptitle(
        "originals and their reconstructions (error: mean squared error per pixel)", fontsize=10
    )
    fig.tight_layout()
    return fig


def plot_image_grid(
    images: np.ndarray, title: str, per_row: int = 10, cmap: str = "gray_r"
) -> Figure:
    shown = to_display(images)
    rows = math.ceil(len(shown) / per_row)
    fig = new_figure(0.75 * min(per_row, len(shown)) + 0.4, 0.75 * rows + 0.6)
    ax = fig.add_subplot(1, 1, 1)
    _show(ax, mosaic(shown, per_row), cmap)
    ax.set_title(title, fontsize=10)
    return fig


def plot_strips(
    rows: Sequence[np.ndarray], labels: Sequence[str], title: str, cmap: str = "gray_r"
) -> Figure:
    """Rows of images (an interpolation, traversals), each row labelled on the left."""
    cols = max(len(r) for r in rows)
    fig = new_figure(0.9 * cols + 1.6, 0.95 * len(rows) + 0.6)
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        shown = to_display(row)
        for j in range(len(shown)):
            ax = fig.add_subplot(len(rows), cols, i * cols + j + 1)
            _show(ax, shown[j], cmap)
            if j == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_components(codes: np.ndarray, ks_distance: np.ndarray, per_row: int = 8) -> Figure:
    """Each latent component's histogram with the normal of the same mean and spread over it."""
    d = codes.shape[1]
    cols = min(per_row, d)
    rows = math.ceil(d / cols)
    panel = max(2.2, 8.0 / cols)  # inches across: a 2-d code gets two wide panels, not stamps
    width = panel * cols
    fig = new_figure(width, 1.9 * min(panel / 2.2, 1.5) * rows + 0.6)
    for i in range(d):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = codes[:, i]
        ax.hist(values, bins=50, density=True, color="tab:blue", alpha=0.6)
        mean, std = values.mean(), values.std()
        if std > 0:
            grid = np.linspace(values.min(), values.max(), 200)
            ax.plot(grid, stats.norm.pdf(grid, mean, std), color="tab:red", lw=1)
        ax.set_title(f"z{i}: KS {ks_distance[i]:.3f}", fontsize=8 if cols >= 4 else 9)
        ax.tick_params(labelsize=6 if cols >= 4 else 8)
        ax.locator_params(axis="x", nbins=4)
        ax.set_yticks([])
    fig.suptitle(
        "latent components of the training images: histogram, fitted normal (red), and the"
        + ("\n" if width < 10 else " ")
        + "Kolmogorov-Smirnov distance between them",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def plot_radii(radii: dict[str, np.ndarray], latent: int) -> Figure:
    """Distributions of |z| for the encoded data and each sampler: the thin-shell picture."""
    fig = new_figure(8, 4)
    ax = fig.add_subplot(1, 1, 1)
    labels = {name: f"{name} (median {np.median(r):.3g})" for name, r in radii.items()}
    _outlines(ax, radii, labels, 0.999)
    ax.set_xlabel("|z| (Euclidean norm of the latent vector)")
    ax.set_ylabel("density")
    ax.set_title(
        f"where the vectors lie: radius of the encoded training images and of each sampler ({latent} dimensions)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_nearest(nearest: dict[str, np.ndarray], threshold: float) -> Figure:
    """Distance from each source's vectors to the nearest encoded training image."""
    fig = new_figure(8, 4)
    ax = fig.add_subplot(1, 1, 1)
    labels = {
        name: f"{'test images (real)' if name == 'test' else name}: "
        f"{np.mean(d > threshold):.0%} beyond"
        for name, d in nearest.items()
    }
    _outlines(ax, nearest, labels, 0.995)
    ax.axvline(threshold, color="black", ls="--", lw=1)
    ax.text(
        threshold,
        ax.get_ylim()[1] * 0.95,
        "  99 % of real test codes lie closer",
        fontsize=7,
        va="top",
    )
    ax.set_xlabel("distance to the nearest encoded training image")
    ax.set_ylabel("density")
    ax.set_title(
        "fragmentation: how much of what a sampler draws falls into empty space", fontsize=9
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _outlines(ax, series: dict[str, np.ndarray], labels: dict[str, str], top: float) -> None:
    """Density outlines of several distributions on shared bins up to their ``top`` quantile."""
    bins = np.linspace(0, max(np.quantile(v, top) for v in series.values()), 80)
    for name, values in series.items():
        ax.hist(values, bins=bins, density=True, histtype="step", lw=1.6, label=labels[name])


def _outlines(ax, series: dict[str, np.ndarray], labels: dict[str, str], top: float) -> None:
    """Density outlines of several distributions on shared bins up to their ``top`` quantile."""
    bins = np.linspace(0, max(np.quantile(v, top) for v in series.values()), 80)
    for name, values in series.items():
        ax.hist(values, bins=bins, density=True, histtype="step", lw=1.6, label=labels[name])


def plot_correlation(correlation: np.ndarray) -> Figure:
    d = len(correlation)
    fig = new_figure(min(2 + 0.35 * d, 12), min(1.6 + 0.35 * d, 11))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(correlation, cmap="RdBu_r", vmin=-1, vmax=1)
    ticks = range(0, d, max(1, d // 16))
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    ax.set_xlabel("component")
    ax.set_ylabel("component")
    ax.set_title("correlation between latent components (training images)", fontsize=9)
    fig.colorbar(image, ax=ax, label="Pearson correlation")
    return fig


def plot_pca(
    ratio: np.ndarray, points: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> Figure:
    """Explained variance per principal axis, and the codes on the first two axes."""
    fig = new_figure(12, 4.8)
    ax = fig.add_subplot(1, 2, 1)
    axes = np.arange(1, len(ratio) + 1)
    ax.bar(axes, ratio, color="tab:blue", label="per axis")
    ax.plot(axes, np.cumsum(ratio), "o-", color="tab:orange", ms=3, label="cumulative")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # axes 1, 2, ...: no 1.25
    ax.set_xlabel("principal axis")
    ax.set_ylabel("share of the variance")
    ax.set_title("PCA of the codes: how elongated the cloud is", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    _scatter_by_class(
        ax,
        points[:, 0],
        points[:, 1] if points.shape[1] > 1 else np.zeros(len(points)),
        labels,
        class_names,
    )
    ax.set_xlabel("PCA axis 1")
    ax.set_ylabel("PCA axis 2")
    ax.set_title("training codes on the first two principal axes", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pairs(
    codes: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    pairs: Sequence[tuple[int, int]],
) -> Figure:
    fig = new_figure(4.2 * len(pairs), 4.2)
    for k, (i, j) in enumerate(pairs, start=1):
        ax = fig.add_subplot(1, len(pairs), k)
        _scatter_by_class(ax, codes[:, i], codes[:, j], labels, class_names, legend=k == len(pairs))
        ax.set_xlabel(f"z{i}")
        ax.set_ylabel(f"z{j}")
    fig.suptitle("training codes projected on pairs of latent components", fontsize=9)
    fig.tight_layout()
    return fig


def plot_manifold(
    images: np.ndarray,
    extent: tuple[float, float, float, float],
    codes: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    cmap: str = "gray_r",
) -> Figure:
    """A 2-D latent space: the codes (left) and what the decoder draws over that region."""
    fig = new_figure(13, 6.2)
    ax = fig.add_subplot(1, 2, 1)
    _scatter_by_class(ax, codes[:, 0], codes[:, 1], labels, class_names)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_title("codes of the training images", fontsize=9)
    ax = fig.add_subplot(1, 2, 2)
    side = int(round(math.sqrt(len(images))))
    shown = to_display(images)
    # row 0 of the grid is the top of the picture: the largest z1
    grid = mosaic(
        shown.reshape(side, side, *shown.shape[1:])[::-1].reshape(shown.shape), side, gap=0
    )
    ax.imshow(
        grid, cmap=cmap if grid.ndim == 2 else None, vmin=0, vmax=1, extent=extent, aspect="auto"
    )
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_title("the decoder over the same region", fontsize=9)
    fig.tight_layout()
    return fig


def plot_judgements(rows: Sequence[dict], class_names: Sequence[str]) -> Figure:
    """Per source: the class histogram the judge assigns, with confidence and Fréchet distance."""
    fig = new_figure(2.4 * len(rows) + 1, 3.4)
    for k, row in enumerate(rows, start=1):
        ax = fig.add_subplot(1, len(rows), k)
        counts = np.array(list(row["class_histogram"].values()), dtype=float)
        ax.bar(range(len(counts)), counts / max(counts.sum(), 1), color="tab:blue")
        ax.set_xticks(range(len(counts)))
        ax.set_xticklabels([str(c)[:6] for c in class_names], rotation=90, fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_title(
            f"{row['source']}\nconf {row['mean_top_probability']:.2f}  FD {row['frechet_distance']:.3g}",
            fontsize=8,
        )
        if k == 1:
            ax.set_ylabel("share of images, by the judge's class")
    fig.tight_layout()
    return fig


def _scatter_by_class(ax, x, y, labels, class_names, legend: bool = True) -> None:
    if len(class_names) <= 1:
        ax.scatter(x, y, s=2, alpha=0.4)
        return
    cmap = "tab10" if len(class_names) <= 10 else "tab20"
    colours = matplotlib.colormaps[cmap]
    for c, name in enumerate(class_names):
        chosen = labels == c
        if chosen.any():
            ax.scatter(
                x[chosen], y[chosen], s=2, alpha=0.5, color=colours(c % colours.N), label=str(name)
            )
    if legend and len(class_names) <= 20:
        ax.legend(fontsize=7, markerscale=4, loc="best")
