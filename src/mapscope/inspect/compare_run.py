"""The two comparison workflows behind `mapscope compare`, writing JSON and PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapscope.errors import ConfigError
from mapscope.inspect.compare import class_separation, group_difference, group_pattern
from mapscope.inspect.session import Inspection
from mapscope.inspect.taps import layer_outputs
from mapscope.io import write_csv, write_json
from mapscope.report.activations import plot_activation_grid
from mapscope.report.compare import plot_group_agreement, plot_separation
from mapscope.report.figures import save_figure
from mapscope.report.samples import image_tiles
from mapscope.runs import provenance


def compare_groups(
    session: Inspection,
    layer: str,
    part: str,
    group_a: list[int],
    group_b: list[int] | None,
    threshold: float,
    out: Path,
) -> tuple[list[Path], str]:
    groups = {"A": group_a} if group_b is None else {"A": group_a, "B": group_b}
    patterns, written, result = (
        {},
        [],
        {
            "layer": layer,
            "split": part,
            "threshold": threshold,
            "groups": {},
            "provenance": provenance(session.bundle.dataset.checksums),
        },
    )
    for name, indices in groups.items():
        acts = session.activations(layer, part, indices)
        patterns[name] = group_pattern(acts, threshold)
        fig = plot_activation_grid(
            session.bundle.raw(part, indices), acts, session.titles(part, indices), layer
        )
        written.append(save_figure(fig, out / f"grids_{name}.png"))
        result["groups"][name] = {
            "indices": indices,
            "agreement_per_unit": patterns[name].agreement,
        }
    difference = group_difference(patterns["A"], patterns["B"]) if group_b else None
    if difference is not None:
        result["mean_difference_per_unit"] = difference["unit_difference"]
        ranked = np.argsort(-np.abs(difference["unit_difference"]))
        result["units_ranked_by_difference"] = ranked
    written.append(
        save_figure(plot_group_agreement(patterns, difference, layer), out / "agreement.png")
    )
    written.append(write_json(out / "compare.json", result))
    lines = [
        f"{name}: mean agreement {p.agreement.mean():.3f}; most shared units "
        f"{np.argsort(-p.agreement)[:8].tolist()}"
        for name, p in patterns.items()
    ]
    if difference is not None:
        lines.append(
            f"units differing most between A and B: {result['units_ranked_by_difference'][:8].tolist()}"
        )
    return written, "\n".join(lines)


def compare_classes(
    session: Inspection, layer: str, part: str, class_a: int, class_b: int, top: int, out: Path
) -> tuple[list[Path], str]:
    bundle, names = session.bundle, session.bundle.dataset.class_names
    for c in (class_a, class_b):
        if not 0 <= c < len(names):
            raise ConfigError(
                f"class {c} does not exist; classes are 0..{len(names) - 1} ({', '.join(names)})."
            )
    labels = bundle.labels(part)
    inputs = bundle.inputs(part, layout="nchw")
    output_layer = session.net.spec.layer_names[-1]
    taps = layer_outputs(
        session.net, inputs, list(dict.fromkeys([layer, output_layer]))
    )  # one pass
    acts = taps[layer]
    sep = class_separation(acts, labels, class_a, class_b)
    predicted = taps[output_layer].argmax(1)  # logits: same argmax as the probabilities
    rows = [
        {
            "rank": r + 1,
            "unit": int(u),
            "effect_size": float(sep.effect_size[u]),
            "mean_a": float(sep.mean_a[u]),
            "mean_b": float(sep.mean_b[u]),
        }
        for r, u in enumerate(sep.units)
    ]
    a_as_b = np.flatnonzero((labels == class_a) & (predicted == class_b))
    b_as_a = np.flatnonzero((labels == class_b) & (predicted == class_a))
    pair = (names[class_a], names[class_b])
    written = [
        write_json(
            out / "separation.json",
            {
                "layer": layer,
                "split": part,
                "class_a": pair[0],
                "class_b": pair[1],
                "effect_size": "Cohen's d of the per-image unit mean, a minus b",
                "provenance": provenance(bundle.dataset.checksums),
                "ranking": rows,
                "confused": {f"{pair[0]}_as_{pair[1]}": a_as_b, f"{pair[1]}_as_{pair[0]}": b_as_a},
            },
        ),
        write_csv(out / "separation.csv", list(rows[0]), [list(r.values()) for r in rows]),
        save_figure(plot_separation(sep, pair, layer, top), out / "separation.png"),
    ]
    confused = np.concatenate([a_as_b, b_as_a])
    if len(confused):
        titles = [f"#{i} a{names[labels[i]]} p{names[predicted[i]]}" for i in confused]
        fig = image_tiles(
            bundle.raw(part, confused),
            titles,
            suptitle=f"{pair[0]} predicted as {pair[1]} ({len(a_as_b)}) and {pair[1]} as {pair[0]} "
            f"({len(b_as_a)})",
        )
        written.append(save_figure(fig, out / "confused.png"))
    best = rows[:5]
    summary = "\n".join(
        [f"{layer}: units separating {pair[0]} from {pair[1]} best (Cohen's d):"]
        + [
            f"  unit {r['unit']:>4}: d = {r['effect_size']:+.2f}  (mean {r['mean_a']:.3f} vs "
            f"{r['mean_b']:.3f})"
            for r in best
        ]
        + [f"confused: {len(a_as_b)} {pair[0]} predicted as {pair[1]}, {len(b_as_a)} the other way"]
    )
    return written, summary
