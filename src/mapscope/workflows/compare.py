"""The two comparisons behind `mapscope compare`, as results first and files second.

``compare_groups`` / ``compare_classes`` return a ``GroupComparison`` / ``ClassComparison``
(arrays and numbers); ``write_comparison(result, out)`` writes its JSON, CSV and PNG files;
``result.summary()`` is the console text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapscope.errors import ConfigError
from mapscope.inspect.compare import (
    GroupPattern,
    Separation,
    class_mean_maps,
    group_difference,
    group_pattern,
)
from mapscope.inspect.inspection import Inspection
from mapscope.inspect.taps import layer_outputs
from mapscope.inspect.unit_stats import statistics_and_scores
from mapscope.io import write_csv, write_json
from mapscope.report.activations import plot_activation_grid
from mapscope.report.compare import plot_group_agreement, plot_separation
from mapscope.report.display import RichDisplay
from mapscope.report.figures import save_figure
from mapscope.report.samples import image_tiles, prediction_caption
from mapscope.runs.folder import provenance


@dataclass
class Group:
    indices: list[int]
    activations: np.ndarray
    images: np.ndarray
    titles: list[str]
    pattern: GroupPattern


@dataclass
class GroupComparison(RichDisplay):
    layer: str
    split: str
    threshold: float
    groups: dict[str, Group]
    difference: dict[str, np.ndarray] | None
    checksums: dict[str, str] = field(default_factory=dict)

    def ranked_by_difference(self) -> np.ndarray | None:
        if self.difference is None:
            return None
        return np.argsort(-np.abs(self.difference["unit_difference"]))

    def summary(self) -> str:
        lines = [
            f"{name}: mean agreement {g.pattern.agreement.mean():.3f}; most shared units "
            f"{np.argsort(-g.pattern.agreement)[:8].tolist()}"
            for name, g in self.groups.items()
        ]
        ranked = self.ranked_by_difference()
        if ranked is not None:
            lines.append(f"units differing most between A and B: {ranked[:8].tolist()}")
        return "\n".join(lines)

    def _card(self):
        def draw():
            patterns = {name: g.pattern for name, g in self.groups.items()}
            return plot_group_agreement(patterns, self.difference, self.layer)

        return (
            f"{self.layer}: what groups of images share",
            [
                ("split", self.split),
                ("threshold", self.threshold),
                *((f"group {n}", f"{len(g.indices)} images") for n, g in self.groups.items()),
            ],
            draw,
            None,
        )


def compare_groups(
    inspection: Inspection,
    layer: str,
    part: str,
    group_a: list[int],
    group_b: list[int] | None = None,
    threshold: float = 0.0,
) -> GroupComparison:
    """What the images of a group share in ``layer``, and where two groups differ."""
    named = {"A": group_a} if group_b is None else {"A": group_a, "B": group_b}
    groups = {}
    for name, indices in named.items():
        acts = inspection.activations(layer, part, indices)
        groups[name] = Group(
            list(indices),
            acts,
            inspection.bundle.raw(part, indices),
            inspection.titles(part, indices),
            group_pattern(acts, threshold),
        )
    difference = (
        group_difference(groups["A"].pattern, groups["B"].pattern) if group_b is not None else None
    )
    return GroupComparison(
        layer, part, threshold, groups, difference, inspection.bundle.dataset.checksums
    )


@dataclass
class ClassComparison(RichDisplay):
    layer: str
    split: str
    class_names: tuple[str, str]
    separation: Separation
    mean_maps: np.ndarray  # (2, C, H, W) the class-mean maps of class a and class b
    a_as_b: np.ndarray  # positions of class a predicted as b
    b_as_a: np.ndarray
    confused_images: np.ndarray
    confused_titles: list[str]
    top: int
    checksums: dict[str, str] = field(default_factory=dict)

    def ranking(self) -> list[dict]:
        sep = self.separation
        return [
            {
                "rank": r + 1,
                "unit": int(u),
                "effect_size": float(sep.effect_size[u]),
                "mean_a": float(sep.mean_a[u]),
                "mean_b": float(sep.mean_b[u]),
            }
            for r, u in enumerate(sep.units)
        ]

    def summary(self) -> str:
        a, b = self.class_names
        return "\n".join(
            [f"{self.layer}: units separating {a} from {b} best (Cohen's d):"]
            + [
                f"  unit {r['unit']:>4}: d = {r['effect_size']:+.2f}  (mean {r['mean_a']:.3f} vs "
                f"{r['mean_b']:.3f})"
                for r in self.ranking()[:5]
            ]
            + [
                f"confused: {len(self.a_as_b)} {a} predicted as {b}, {len(self.b_as_a)} the other way"
            ]
        )

    def _card(self):
        a, b = self.class_names
        return (
            f"{self.layer}: {a} against {b}",
            [
                ("split", self.split),
                ("confused", f"{len(self.a_as_b)} {a} as {b}, {len(self.b_as_a)} {b} as {a}"),
                ("effect size", "Cohen's d of the per-image unit mean, a minus b"),
            ],
            lambda: plot_separation(
                self.separation, self.mean_maps, self.class_names, self.layer, self.top
            ),
            (
                ["rank", "unit", "d", f"mean {a}", f"mean {b}"],
                [
                    (
                        r["rank"],
                        r["unit"],
                        f"{r['effect_size']:+.2f}",
                        f"{r['mean_a']:.3f}",
                        f"{r['mean_b']:.3f}",
                    )
                    for r in self.ranking()[:8]
                ],
            ),
        )


def compare_classes(
    inspection: Inspection,
    layer: str,
    part: str,
    class_a: int | str,
    class_b: int | str,
    top: int = 16,
) -> ClassComparison:
    """Units of ``layer`` ranked by how well they separate two classes (given by number or
    name), and the images the network confuses between them (one forward pass taps the layer
    and the logits)."""
    bundle, names = inspection.bundle, inspection.bundle.dataset.class_names
    class_a, class_b = (bundle.dataset.class_index(c, "--classes") for c in (class_a, class_b))
    if top < 1:
        raise ConfigError(f"top must be >= 1, got {top}.")
    labels = bundle.labels(part)
    inputs = inspection.inputs(part)
    # the same streamed pass as the atlas, so both report the same per-image means and d
    stats, scores = statistics_and_scores(inspection.net, inputs, [layer])
    assert scores is not None  # the pass ran to the outputs (scores=True)
    sep = stats[layer].separation(labels, class_a, class_b)
    pair = np.flatnonzero((labels == class_a) | (labels == class_b))
    maps = layer_outputs(inspection.net, inputs[pair], [layer])[layer]
    mean_maps = class_mean_maps(maps, labels[pair], (class_a, class_b))
    # a network whose output is not class scores (an autoencoder's is an image) confuses nothing
    classifier = scores.ndim == 2 and scores.shape[1] == len(names)
    predicted = scores.argmax(1) if classifier else labels
    a_as_b = np.flatnonzero((labels == class_a) & (predicted == class_b))
    b_as_a = np.flatnonzero((labels == class_b) & (predicted == class_a))
    confused = np.concatenate([a_as_b, b_as_a])
    titles = [prediction_caption(i, names[predicted[i]], names[labels[i]]) for i in confused]
    images = bundle.raw(part, confused) if len(confused) else np.zeros((0,))
    return ClassComparison(
        layer,
        part,
        (names[class_a], names[class_b]),
        sep,
        mean_maps,
        a_as_b,
        b_as_a,
        images,
        titles,
        top,
        bundle.dataset.checksums,
    )


def write_comparison(result: GroupComparison | ClassComparison, out: str | Path) -> list[Path]:
    if isinstance(result, ClassComparison):
        return _write_classes(result, Path(out))
    return _write_groups(result, Path(out))


def _write_groups(result: GroupComparison, out: Path) -> list[Path]:
    written = []
    # one colour scale for both groups' grids, so that rows and groups can be compared
    low = min(float(np.min(g.activations)) for g in result.groups.values())
    high = max(float(np.max(g.activations)) for g in result.groups.values())
    members = {}
    for name, group in result.groups.items():
        members[name] = f"{result.split} " + ", ".join(map(str, group.indices))
        fig = plot_activation_grid(
            group.images, group.activations, group.titles, result.layer, shared_scale=(low, high)
        )
        written.append(save_figure(fig, out / f"grids_{name}.png"))
    patterns = {name: g.pattern for name, g in result.groups.items()}
    fig = plot_group_agreement(patterns, result.difference, result.layer, members=members)
    written.append(save_figure(fig, out / "agreement.png"))
    saved = {
        "layer": result.layer,
        "split": result.split,
        "threshold": result.threshold,
        "groups": {
            name: {"indices": g.indices, "agreement_per_unit": g.pattern.agreement}
            for name, g in result.groups.items()
        },
        "provenance": provenance(result.checksums),
    }
    if result.difference is not None:
        saved["mean_difference_per_unit"] = result.difference["unit_difference"]
        saved["units_ranked_by_difference"] = result.ranked_by_difference()
    written.append(write_json(out / "compare.json", saved))
    return written


def _write_classes(result: ClassComparison, out: Path) -> list[Path]:
    a, b = result.class_names
    rows = result.ranking()
    written = [
        write_json(
            out / "separation.json",
            {
                "layer": result.layer,
                "split": result.split,
                "class_a": a,
                "class_b": b,
                "effect_size": "Cohen's d of the per-image unit mean, a minus b",
                "provenance": provenance(result.checksums),
                "ranking": rows,
                "confused": {f"{a}_as_{b}": result.a_as_b, f"{b}_as_{a}": result.b_as_a},
            },
        ),
        write_csv(out / "separation.csv", list(rows[0]), [list(r.values()) for r in rows]),
        save_figure(
            plot_separation(
                result.separation, result.mean_maps, result.class_names, result.layer, result.top
            ),
            out / "separation.png",
        ),
    ]
    if len(result.confused_titles):
        fig = image_tiles(
            result.confused_images,
            result.confused_titles,
            suptitle=f"{a} predicted as {b} ({len(result.a_as_b)}) and {b} as {a} "
            f"({len(result.b_as_a)})",
        )
        written.append(save_figure(fig, out / "confused.png"))
    return written
