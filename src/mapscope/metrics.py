"""Pure classification maths: the confusion matrix (rows: actual, columns: predicted), the
per-class numbers built on it, and which samples are right or wrong for one class.

Per class: TP (right predictions of the class), FP (other classes predicted as it), FN (the
class predicted as something else), AN (all actual members, TP + FN). Recall is TP/AN (what a
per-class "accuracy" would be, so no such column is kept); precision is TP/(TP+FP), F1 their
harmonic mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mapscope.errors import ConfigError


def effect_size(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's d of each column, group ``a`` minus group ``b``: the difference of the means over
    the pooled standard deviation (each group's variance with ddof=1, weighted by its size);
    0 where both groups are constant. Every d that mapscope shows comes from here."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        raise ConfigError(f"an effect size needs two values per group, got {na} and {nb}.")
    pooled = np.sqrt(
        ((na - 1) * a.var(axis=0, ddof=1) + (nb - 1) * b.var(axis=0, ddof=1)) / (na + nb - 2)
    )
    difference = a.mean(0) - b.mean(0)
    return np.divide(difference, pooled, out=np.zeros(pooled.shape), where=pooled > 1e-12)


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    actual, predicted = np.asarray(actual), np.asarray(predicted)
    if actual.shape != predicted.shape:
        raise ConfigError(
            f"actual {actual.shape} and predicted {predicted.shape} labels differ in shape."
        )
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (actual, predicted), 1)
    return matrix


def most_confused(matrix: np.ndarray, most: int) -> list[tuple[int, int, int]]:
    """The ``most`` largest off-diagonal cells as (actual, predicted, count), largest first; ties
    in row-major order (smaller actual class, then smaller predicted class). Empty cells are
    never listed."""
    off = np.asarray(matrix).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[: max(most, 0)]
    cells = [np.unravel_index(k, off.shape) for k in order]
    return [(int(a), int(b), int(off[a, b])) for a, b in cells if off[a, b] > 0]


@dataclass(frozen=True)
class ClassReport:
    name: str
    tp: int
    fp: int
    fn: int
    an: int
    precision: float
    recall: float  # TP / AN
    f1: float


def per_class(matrix: np.ndarray, class_names: list[str] | tuple[str, ...]) -> list[ClassReport]:
    reports = []
    for k, name in enumerate(class_names):
        tp = int(matrix[k, k])
        fp = int(matrix[:, k].sum() - tp)
        fn = int(matrix[k, :].sum() - tp)
        an = tp + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / an if an else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        reports.append(ClassReport(str(name), tp, fp, fn, an, precision, recall, f1))
    return reports


def format_reports(reports: list[ClassReport], total_accuracy: float) -> str:
    lines = [
        f"{'class':<14}{'precision':>10}{'recall':>8}{'F1':>8}{'TP':>7}{'FP':>6}{'FN':>6}{'AN':>7}"
    ]
    for r in reports:
        lines.append(
            f"{r.name:<14}{r.precision:>10.4f}{r.recall:>8.4f}{r.f1:>8.4f}"
            f"{r.tp:>7}{r.fp:>6}{r.fn:>6}{r.an:>7}"
        )
    lines.append(
        "TP: the class predicted right; FP: other classes taken for it; FN: it taken for "
        "another; AN: all its images (TP + FN); recall = TP/AN, precision = TP/(TP + FP)"
    )
    lines.append(f"overall accuracy {total_accuracy:.4f}")
    return "\n".join(lines)


def gallery_indices(
    actual: np.ndarray, predicted: np.ndarray, cls: int, limit: int = 50
) -> dict[str, list[int]]:
    """Split-positions of the first ``limit`` true positives, false positives, false negatives."""
    tp = np.flatnonzero((actual == cls) & (predicted == cls))
    fp = np.flatnonzero((actual != cls) & (predicted == cls))
    fn = np.flatnonzero((actual == cls) & (predicted != cls))
    return {
        "true_positives": tp[:limit].tolist(),
        "false_positives": fp[:limit].tolist(),
        "false_negatives": fn[:limit].tolist(),
        "counts": {
            "true_positives": len(tp),
            "false_positives": len(fp),
            "false_negatives": len(fn),
        },
    }


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N, K) squared Euclidean distances from samples to centroids as one matrix product
    (|x|^2 - 2 x.c + |c|^2); tiny negatives from rounding are clipped to 0."""
    squared = (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None]
    return np.maximum(squared, 0)
