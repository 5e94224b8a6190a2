"""Comparing activation patterns: what images of a group share, and what separates two classes.

Everything is per *unit*: a map of a conv/pool layer or a node of a dense layer. A point of a map
is "active" where its value exceeds ``threshold`` (0 suits ReLU layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mapscope.errors import ConfigError
from mapscope.metrics import effect_size


def as_maps(acts: np.ndarray) -> np.ndarray:
    """(N, C, H, W) stays; dense (N, U) becomes (N, U, 1, 1) so that one code path serves both."""
    return acts if acts.ndim == 4 else acts.reshape(len(acts), -1, 1, 1)


@dataclass
class GroupPattern:
    all_active: np.ndarray  # (C, H, W) bool: active in every image of the group
    any_active: np.ndarray  # (C, H, W) bool: active in at least one image of the group
    mean: np.ndarray  # (C, H, W) mean activation over the group
    agreement: np.ndarray  # (C,) points active in all / points active in any (Jaccard), 0 if none
    threshold: float  # a point is active above this value


def group_pattern(acts: np.ndarray, threshold: float = 0.0) -> GroupPattern:
    maps = as_maps(acts)
    if len(maps) == 0:
        raise ConfigError("a group needs at least one image.")
    active = maps > threshold
    all_active, any_active = active.all(axis=0), active.any(axis=0)
    n_any = any_active.sum(axis=(1, 2))
    agreement = np.divide(
        all_active.sum(axis=(1, 2)), n_any, out=np.zeros(len(n_any)), where=n_any > 0
    )
    return GroupPattern(all_active, any_active, maps.mean(axis=0), agreement, threshold)


def group_difference(a: GroupPattern, b: GroupPattern) -> dict[str, np.ndarray]:
    """Per map: mean activation of A minus B, and points active (above the groups' threshold)
    in every image of A but in no image of B."""
    if a.threshold != b.threshold:
        raise ConfigError(f"groups use different thresholds ({a.threshold} and {b.threshold}).")
    return {
        "mean_difference": a.mean - b.mean,
        "unit_difference": (a.mean - b.mean).mean(axis=(1, 2)),
        "only_a": a.all_active & ~b.any_active,
    }


@dataclass
class Separation:
    units: np.ndarray  # unit indices ranked by |effect size|, strongest first
    effect_size: np.ndarray  # Cohen's d of the unit's per-image mean, class a minus class b
    mean_a: np.ndarray  # (K,) mean over the images of class a of the per-image unit mean
    mean_b: np.ndarray


def unit_means(acts: np.ndarray) -> np.ndarray:
    """(N, K) each unit's mean over its map per image (a dense unit's value)."""
    return as_maps(acts).mean(axis=(2, 3))


def class_separation(
    per_image: np.ndarray, labels: np.ndarray, class_a: int, class_b: int
) -> Separation:
    """Rank units by how well their per-image mean (N, K) separates two classes (Cohen's d,
    ``metrics.effect_size``)."""
    in_a, in_b = labels == class_a, labels == class_b
    if in_a.sum() < 2 or in_b.sum() < 2:
        raise ConfigError(
            f"classes {class_a} and {class_b} need at least two images each in the split."
        )
    xa, xb = per_image[in_a], per_image[in_b]
    d = effect_size(xa, xb)
    order = np.argsort(-np.abs(d), kind="stable")
    return Separation(order, d, xa.mean(0, dtype=np.float64), xb.mean(0, dtype=np.float64))


def class_mean_maps(acts: np.ndarray, labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """(classes, C, H, W) the mean map of each class's images."""
    maps = as_maps(acts)
    return np.stack([maps[labels == c].mean(0) for c in classes])
