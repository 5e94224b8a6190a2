"""Clustering figures: error against K, confusions, purity, prototypes, elbow/silhouette, PCA."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mapscope.report.evaluation import plot_confusion
from mapscope.report.figures import new_figure


def plot_error_vs_clusters(result) -> Figure:
    """``result``: a ``ClassifySweep`` (table, comparison, mode, dataset)."""
    table = result.table
    ks = [r["clusters"] for r in table]
    fig = new_figure(12, 4)
    ax = fig.add_subplot(1, 2, 1)
    ax.errorbar(
        ks,
        [r["error"] for r in table],
        yerr=[r["error_std"] for r in table],
        fmt="o-",
        label=f"KMeans classifier ({result.mode} mode)",
    )
    styles = {"random_forest": "--", "knn": ":"}
    for name, values in result.comparison.items():
        ax.axhline(
            values["error"], ls=styles.get(name, "-."), color="gray", label=f"{name} (held-out)"
        )
    ax.set_xlabel("number of clusters")
    ax.set_ylabel("average error (wrong / total)")
    ax.set_title(f"{result.dataset}: error against number of clusters")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    ax.boxplot([r["purity"] for r in table], positions=range(len(ks)))
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("number of clusters")
    ax.set_ylabel("cluster purity (share of majority label)")
    ax.set_title("purity of the clusters")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_confusions(result) -> list[tuple[int, Figure]]:
    """Each K's confusion matrix (of the first repeat, which its title says when there are more)."""
    which = " (first repeat)" if result.repeats > 1 else ""
    return [
        (
            r["clusters"],
            plot_confusion(
                r["confusion"],
                result.class_names,
                f"KMeans, {r['clusters']} clusters{which}: "
                f"{int(r['evaluated'] - np.trace(r['confusion']))} wrong of {r['evaluated']}",
            ),
        )
        for r in result.table
    ]


def plot_prototypes(
    centroids: np.ndarray, labels: np.ndarray, purity: np.ndarray, class_names, per_row=10
) -> Figure:
    n = len(centroids)
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    fig = new_figure(1.2 * cols, 1.35 * rows + 0.4)
    order = np.lexsort((-purity, labels))
    for slot, k in enumerate(order):
        ax = fig.add_subplot(rows, cols, slot + 1)
        ax.imshow(centroids[k].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{class_names[labels[k]]} ({purity[k]:.0%})", fontsize=7)
        ax.set_axis_off()
    fig.suptitle("cluster centroids as prototypes: label (purity)", fontsize=9)
    return fig


def plot_k_analysis(rows: list[dict], suggestion: dict, title: str) -> Figure:
    ks = [r["k"] for r in rows]
    suggested = {"inertia": suggestion["elbow"], "silhouette": suggestion["silhouette"]}
    fig = new_figure(14, 3.8)
    for i, (key, label) in enumerate(
        (
            ("inertia", "inertia (elbow)"),
            ("silhouette", "average silhouette"),
            ("fit_seconds", "fit time [s]"),
        ),
        start=1,
    ):
        ax = fig.add_subplot(1, 3, i)
        ax.plot(ks, [r[key] for r in rows], "o-")
        chosen = suggested.get(key)
        if chosen is not None:
            ax.axvline(chosen, color="tab:red", ls="--", label=f"suggested k = {chosen}")
            ax.legend(fontsize=8)
        ax.set_xlabel("k")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_pca(
    result: dict,
    x: np.ndarray,
    labels: np.ndarray,
    clusters: np.ndarray,
    feature_names: list[str],
    pairs: list[tuple[int, int]],
    class_names,
    image_shape: tuple[int, int] | None = None,
) -> Figure:
    """Explained variance, the loadings (for images: each component drawn as an image), and
    scatter plots coloured by label, by cluster and by both, with a legend of the classes."""
    ratio = result["explained_variance_ratio"]
    proj = result["projection"]
    n_panels = 2 + 3 * (1 + len(pairs))
    cols = 3
    rows = math.ceil(n_panels / cols)
    fig = new_figure(15, 4.3 * rows)
    ax = fig.add_subplot(rows, cols, 1)
    ax.bar(range(1, len(ratio) + 1), ratio, label="per component")
    ax.plot(range(1, len(ratio) + 1), np.cumsum(ratio), "o-", color="tab:red", label="cumulative")
    ax.set_xlabel("component")
    ax.set_title("explained variance ratio")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(rows, cols, 2)
    shown = min(3, len(result["components"]))
    loadings = result["components"][:shown]
    limit = np.abs(loadings).max()
    if image_shape is not None:  # each component as the image of its pixel weights
        h, w = image_shape
        gap = np.full((h, 2), np.nan)
        strip = np.hstack([p for c in loadings for p in (c.reshape(h, w), gap)][:-1])
        image = ax.imshow(strip, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks([w / 2 - 0.5 + i * (w + 2) for i in range(shown)])
        ax.set_xticklabels([f"PC{i + 1}" for i in range(shown)])
        ax.set_yticks([])
    else:
        image = ax.imshow(loadings, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_yticks(range(shown), [f"PC{i + 1}" for i in range(shown)])
        if len(feature_names) <= 20:
            ax.set_xticks(
                range(len(feature_names)), feature_names, rotation=45, ha="right", fontsize=8
            )
    ax.set_title("loadings of the first components")
    fig.colorbar(image, ax=ax, label="loading", shrink=0.5 if image_shape is not None else 1.0)
    views = [("PC1", "PC2", proj[:, 0], proj[:, 1])] + [
        (feature_names[a], feature_names[b], x[:, a].astype(float), x[:, b].astype(float))
        for a, b in pairs
    ]
    slot = 3
    span = max(np.ptp(proj[:, 0]), 1e-9)
    for xname, yname, xs, ys in views:
        offset = 0.006 * max(np.ptp(xs), 1e-9) if xname != "PC1" else 0.006 * span
        disagree = clusters != labels
        for mode in ("label", "cluster", "both"):
            ax = fig.add_subplot(rows, cols, slot)
            slot += 1
            colour = {"cmap": "tab10", "vmin": 0, "vmax": 9}  # class c: tab10(c / 9)
            if mode == "label":
                ax.scatter(xs, ys, c=labels, s=6, alpha=0.7, **colour)
            elif mode == "cluster":
                ax.scatter(xs, ys, c=clusters, s=6, alpha=0.7, **colour)
            else:
                # all points faint by label; where the cluster disagrees, a cross in the cluster's
                # colour, shifted a little so that both colours stay visible
                ax.scatter(xs, ys, c=labels, s=6, alpha=0.25, **colour)
                ax.scatter(
                    xs[disagree] + offset,
                    ys[disagree] + offset,
                    c=clusters[disagree],
                    s=28,
                    marker="x",
                    linewidths=1.2,
                    **colour,
                )
            title = {
                "label": "coloured by label",
                "cluster": "coloured by KMeans cluster (its majority label's colour)",
                "both": f"label (faint dots); {int(disagree.sum())} points whose cluster disagrees (crosses)",
            }[mode]
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(xname)
            ax.set_ylabel(yname)
            ax.grid(alpha=0.3)
            if mode == "label" and xname == "PC1":
                _class_legend(ax, class_names, np.unique(labels))
    fig.tight_layout()
    return fig


def _class_legend(ax, class_names, present) -> None:
    """Which colour is which class (clusters take their majority class's colour)."""
    colours = matplotlib.colormaps["tab10"]
    handles = [
        Line2D([], [], marker="o", ls="", color=colours(int(c) / 9), label=str(class_names[c]))
        for c in present
    ]
    ax.legend(handles=handles, fontsize=7, loc="best", title="class", title_fontsize=7)


def plot_feature_sweep(rows: list[dict]) -> Figure:
    """One panel per measured quantity; the MLP's accuracy only when MLPs were trained."""
    ks = [r["k"] for r in rows]
    panels = [
        (key, label)
        for key, label in (
            ("inertia", "inertia"),
            ("silhouette", "average silhouette (sampled)"),
            ("fit_seconds", "MiniBatchKMeans fit time [s]"),
            ("test_accuracy", "MLP test accuracy on K features"),
        )
        if any(r.get(key) is not None for r in rows)
    ]
    fig = new_figure(3.75 * len(panels), 3.8)
    for i, (key, label) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        ax.plot(ks, [r.get(key, np.nan) for r in rows], "o-")
        ax.set_xlabel("K")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
