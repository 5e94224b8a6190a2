"""`mapscope match` as Python functions: ``match_runs`` compares two or more trained networks
unit by unit and layer by layer and returns a ``RunMatch``; ``write_match`` writes its tables
and pictures.

    a, b = Inspection-s of two runs (``Run.open(d).inspection()``), or of any nn.Module
    result = match_runs([a, b], ["seed=0", "seed=1"])
    print(result.summary())

Every number stands beside two baselines computed the same way: the trained network against an
untrained one of the same architecture, and against the other run with its images shuffled
(what the best one-to-one matching finds in pure noise).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapscope.errors import ConfigError
from mapscope.inspect.inspection import Inspection
from mapscope.inspect.kernels import first_conv_kernels
from mapscope.inspect.match import (
    RELIABLE,
    LayerFeatures,
    UnitMatch,
    layer_features,
    linear_cka,
    unit_correlation,
    untrained_copy,
    weighted_layers,
)
from mapscope.inspect.oip.objectives import oip_target
from mapscope.inspect.oip.settings import OIPSettings
from mapscope.inspect.oip.strategies import run_oip
from mapscope.inspect.taps import find_layer
from mapscope.io import write_csv, write_json
from mapscope.progress import bar, stage
from mapscope.report.display import RichDisplay, short
from mapscope.report.figures import save_figure
from mapscope.report.match import (
    plot_cka,
    plot_common_units,
    plot_distributions,
    plot_pairs,
    plot_summary,
)
from mapscope.workflows.oip import reference_images

BASELINES = ("untrained", "shuffled")
SHOWN = 6  # best and worst matched pairs drawn per layer
COMMON_SHOWN = 8  # units learned by every run drawn per layer


@dataclass
class PairMatch:
    a: int  # indices into the runs
    b: int
    layers: dict[str, dict[str, UnitMatch]]  # layer -> {"trained", "untrained", "shuffled"}
    cka: np.ndarray  # (layers of A, layers of B)


@dataclass
class RunMatch(RichDisplay):
    labels: list[str]
    layers: list[str]
    cka_layers: list[list[str]]  # per run, the layers of the CKA map
    pairs: list[PairMatch]
    images: int
    sample: int
    positions: bool
    seconds: float
    oips: dict[tuple[int, str], dict[int, np.ndarray]] = field(default_factory=dict)
    kernels: dict[int, np.ndarray] = field(default_factory=dict)  # run -> first conv's kernels
    kernel_layer: str | None = None  # the layer those kernels belong to
    checksums: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for pair in self.pairs:
            for layer, matches in pair.layers.items():
                for against, match in matches.items():
                    rows.append(
                        {
                            "run_a": self.labels[pair.a],
                            "run_b": self.labels[pair.b],
                            "layer": layer,
                            "against": against,
                            **match.numbers(),
                        }
                    )
        return rows

    def per_layer(self) -> list[dict[str, Any]]:
        """Each layer's numbers averaged over every pair of runs, beside the baselines."""
        table = []
        for layer in self.layers:
            row: dict[str, Any] = {"layer": layer}
            numbers = {
                against: [p.layers[layer][against].numbers() for p in self.pairs]
                for against in ("trained", *BASELINES)
            }
            for against, per_pair in numbers.items():
                for key in ("mean", "reliable_share", "poor_share", "same_index_share"):
                    row[f"{against}_{key}"] = float(np.mean([n[key] for n in per_pair]))
            trained = numbers["trained"]
            row["units"] = trained[0]["units"]
            row["dead"] = float(np.mean([n["dead"] for n in trained]))
            row["same_index_chance"] = trained[0]["same_index_chance"]
            table.append(row)
        return table

    def common_units(self, layer: str) -> list[list[int]]:
        """Units of the first run matched above the reliable bar in every other run, each with
        its partner in every run ([unit in run 0, partner in run 1, ...]), most alike first."""
        firsts = [p for p in self.pairs if p.a == 0]
        if len(firsts) < 2:
            return []
        matches = [p.layers[layer]["trained"] for p in firsts]
        worst = np.min([m.matched for m in matches], axis=0)
        chosen = np.flatnonzero(np.nan_to_num(worst) > RELIABLE)
        chosen = chosen[np.argsort(-worst[chosen])]
        return [[int(u), *(int(m.partner[u]) for m in matches)] for u in chosen]

    def _card(self):
        rows = self.per_layer()
        header = list(rows[0]) if rows else []
        return (
            f"Do {len(self.labels)} runs learn the same units?",
            [
                ("runs", ", ".join(self.labels)),
                ("pairs", len(self.pairs)),
                ("test images", self.images),
            ],
            lambda: plot_summary(rows),
            (header, [[short(v) for v in row.values()] for row in rows]) if rows else None,
        )

    def summary(self) -> str:
        lines = [
            f"{len(self.labels)} runs, {len(self.pairs)} pair(s); dense units over {self.images} "
            "test images, "
            + (
                f"map units over every position of {self.sample} of them"
                if self.positions
                else f"map units by their means over the {self.images} images"
            )
            + f"; CKA and untrained baseline over {self.sample}; means over the pairs, of the "
            "units some image activates (dead: units no test image activates)",
            f"{'layer':<12} {'units':>5} {'dead':>5} {'matched r':>9} {'untrained':>9} {'shuffled':>9} "
            f"{'r>0.9':>6} {'r<0.5':>6} {'same order':>10} {'chance':>7}",
        ]
        for row in self.per_layer():
            lines.append(
                f"{row['layer']:<12} {row['units']:>5} {row['dead']:>5.1f} {row['trained_mean']:>9.3f} "
                f"{row['untrained_mean']:>9.3f} {row['shuffled_mean']:>9.3f} "
                f"{row['trained_reliable_share']:>6.0%} {row['trained_poor_share']:>6.0%} "
                f"{row['trained_same_index_share']:>10.0%} {row['same_index_chance']:>7.1%}"
            )
        if len(self.labels) >= 3:
            for layer in self.layers:
                common = len(self.common_units(layer))
                lines.append(
                    f"{layer}: {common} unit{'s' if common != 1 else ''} of {self.labels[0]} "
                    f"matched above {RELIABLE} in every other run"
                )
        lines.append(f"matched in {self.seconds:.1f} s")
        return "\n".join(lines)


def _check_same_images(inspections: list[Inspection], labels: list[str]) -> None:
    first = inspections[0].bundle
    for inspection, label in zip(inspections[1:], labels[1:], strict=True):
        bundle = inspection.bundle
        if bundle.dataset.name != first.dataset.name or not np.array_equal(
            bundle.split.test, first.split.test
        ):
            raise ConfigError(
                f"{label} was tested on other images than {labels[0]} (dataset "
                f"{bundle.dataset.name} vs {first.dataset.name}, or a --resplit split); units "
                "can only be matched over the same images."
            )


def choose_layers(inspections: list[Inspection], layers: list[str] | None) -> list[str]:
    """The layers to match: ``layers`` (present in every run), else every layer with weights
    that every run has."""
    if layers:
        for inspection in inspections:
            for name in layers:
                find_layer(inspection.net, name)
        return list(layers)
    common = weighted_layers(inspections[0].net)
    for inspection in inspections[1:]:
        theirs = set(weighted_layers(inspection.net))
        common = [n for n in common if n in theirs]
    if not common:
        raise ConfigError("the runs share no layer names; give --layers to choose them.")
    return common


def match_runs(
    inspections: list[Inspection],
    labels: list[str],
    layers: list[str] | None = None,
    images: int | None = None,
    sample: int = 1000,
    positions: bool = True,
    oips: bool = True,
    seed: int = 0,
    oip: OIPSettings | None = None,
) -> RunMatch:
    """Match the units of every pair of ``inspections`` in ``layers`` over the first ``images``
    test images (default: all; map units over every spatial position of the first ``sample``
    of them, unless not ``positions``), CKA between every pair of layers and the untrained
    baseline over the ``sample``, and (``oips``) the OIPs of the units the pictures show, searched
    with ``oip`` (default ``OIPSettings(seed=seed)``)."""
    if len(inspections) < 2:
        raise ConfigError("give at least two runs to match.")
    if sample < 2 or (images is not None and images < 2):
        raise ConfigError("--images and --sample must be at least 2.")
    _check_same_images(inspections, labels)
    layers = choose_layers(inspections, layers)
    n = (
        len(inspections[0].bundle.split.test)
        if images is None
        else min(images, len(inspections[0].bundle.split.test))
    )
    indices = np.arange(n)
    began = time.perf_counter()
    cka_layers = [weighted_layers(s.net) for s in inspections]
    trained, untrained = [], []
    for k, inspection in enumerate(bar(inspections, "forward passes", unit="run")):
        inputs = inspection.inputs("test", indices)
        wanted = list(dict.fromkeys([*layers, *cka_layers[k]]))
        trained.append(layer_features(inspection.net, inputs, wanted, sample, positions))
        # the baseline's own forward pass only over the sample: a fifth of a run's cost
        fresh = untrained_copy(inspection.net, seed + 1000 + k)
        untrained.append(
            layer_features(fresh, inputs[:sample], layers, sample, positions, gram=False)
        )
    k_sample = min(sample, n)
    rng = np.random.default_rng(seed)
    shuffle, shuffle_sample = rng.permutation(n), rng.permutation(k_sample)
    pairs = []
    for a, b in itertools.combinations(range(len(inspections)), 2):
        per_layer = {}
        for layer in layers:
            fa, fb = trained[a][layer], trained[b][layer]
            per_layer[layer] = {
                "trained": UnitMatch.of(unit_correlation(fa, fb)),
                "untrained": UnitMatch.of(unit_correlation(fa.head(k_sample), untrained[b][layer])),
                "shuffled": UnitMatch.of(
                    unit_correlation(fa, _shuffled(fb, shuffle, shuffle_sample))
                ),
            }
        cka = np.array(
            [
                [linear_cka(_gram(trained[a][la]), _gram(trained[b][lb])) for lb in cka_layers[b]]
                for la in cka_layers[a]
            ]
        )
        pairs.append(PairMatch(a, b, per_layer, cka))
    seconds = time.perf_counter() - began
    result = RunMatch(
        labels,
        layers,
        cka_layers,
        pairs,
        n,
        min(sample, n),
        positions,
        seconds,
        checksums=inspections[0].bundle.dataset.checksums,
    )
    for k, s in enumerate(inspections):
        found = first_conv_kernels(s.net, x=torch.from_numpy(s.inputs("test", [0])))
        if found is not None:
            result.kernel_layer, result.kernels[k] = found
    if oips:
        with stage("OIPs of the units shown"):
            result.oips = _shown_oips(result, inspections, oip or OIPSettings(seed=seed))
    return result


def _gram(features: LayerFeatures) -> np.ndarray:
    if features.gram is None:
        raise ValueError("these layer features were computed without their Gram matrix")
    return features.gram


def _shuffled(
    features: LayerFeatures, order: np.ndarray, sample_order: np.ndarray
) -> LayerFeatures:
    """The features with the images in another order (positions stay with their image)."""
    spots = None if features.positions is None else features.positions[sample_order]
    return LayerFeatures(features.units[order], spots, features.gram)


def shown_units(result: RunMatch, layer: str) -> list[tuple[int, int, float]]:
    """(unit of run A, unit of run B, r) of the first pair: the best and the worst matches
    among units that some test image activates in both runs, as the numbers are (a dead
    unit's r is 0 by construction, and its OIP only its start image)."""
    match = result.pairs[0].layers[layer]["trained"]
    units = np.flatnonzero(match.both_alive)
    order = units[np.argsort(-match.matched[units], kind="stable")]
    picked = list(order[:SHOWN]) + [u for u in order[::-1][:SHOWN] if u not in order[:SHOWN]]
    return [(int(u), int(match.partner[u]), float(match.matched[u])) for u in picked]


def _shown_oips(result: RunMatch, inspections: list[Inspection], settings: OIPSettings):
    needed: dict[tuple[int, str], set[int]] = {}
    pair = result.pairs[0]
    for layer in result.layers:
        for ua, ub, _ in shown_units(result, layer):
            needed.setdefault((pair.a, layer), set()).add(ua)
            needed.setdefault((pair.b, layer), set()).add(ub)
        for units in result.common_units(layer)[:COMMON_SHOWN]:
            for run, unit in enumerate(units):
                needed.setdefault((run, layer), set()).add(unit)
    # as the oip command does: a unit no noise wakes starts from the test image that drives it
    # most (each run's images prepared once, for all its layers)
    images = {run: reference_images(inspections[run]) for run in {run for run, _ in needed}}
    found: dict[tuple[int, str], dict[int, np.ndarray]] = {}
    for (run, layer), wanted in bar(list(needed.items()), "OIP searches", unit="layer"):
        chosen = sorted(wanted)
        shape = inspections[run].bundle.dataset.image_shape
        net = inspections[run].net
        target = oip_target(net, layer)
        search = run_oip(net, target, chosen, None, settings, input_shape=shape, images=images[run])
        found[(run, layer)] = dict(zip(chosen, search.images, strict=True))
    return found


def write_match(result: RunMatch, out: str | Path) -> list[Path]:
    """match.json (everything), match.csv (a row per pair, layer and baseline), layers.csv
    (per layer, mean over pairs), and the pictures."""
    out = Path(out)
    rows, per_layer = result.rows(), result.per_layer()
    written = [
        write_json(
            out / "match.json",
            {
                "runs": result.labels,
                "layers": result.layers,
                "images": result.images,
                "sample_images": result.sample,
                "positions": result.positions,
                "seconds": result.seconds,
                "per_layer": per_layer,
                "pairs": rows,
                "cka": [
                    {
                        "run_a": result.labels[p.a],
                        "run_b": result.labels[p.b],
                        "layers_a": result.cka_layers[p.a],
                        "layers_b": result.cka_layers[p.b],
                        "cka": p.cka.round(4).tolist(),
                    }
                    for p in result.pairs
                ],
                "matching": [
                    {
                        "run_a": result.labels[p.a],
                        "run_b": result.labels[p.b],
                        "layer": layer,
                        "partner": m["trained"].partner.tolist(),
                        "r": np.round(m["trained"].matched, 4).tolist(),
                    }
                    for p in result.pairs
                    for layer, m in p.layers.items()
                ],
                "common_units": {layer: result.common_units(layer) for layer in result.layers},
                "data_checksums": result.checksums,
            },
        ),
        write_csv(out / "match.csv", list(rows[0]), [list(r.values()) for r in rows]),
        write_csv(out / "layers.csv", list(per_layer[0]), [list(r.values()) for r in per_layer]),
        save_figure(plot_summary(per_layer), out / "summary.png"),
        save_figure(plot_distributions(result), out / "distributions.png"),
        save_figure(plot_cka(result), out / "cka.png"),
    ]
    for layer in result.layers:
        shown = shown_units(result, layer)
        pair = result.pairs[0]
        figure = plot_pairs(result, layer, shown, pair.a, pair.b)
        written.append(save_figure(figure, out / f"pairs_{layer}.png"))
        common = result.common_units(layer)
        if len(result.labels) >= 3:
            figure = plot_common_units(result, layer, common[:COMMON_SHOWN], len(common))
            written.append(save_figure(figure, out / f"common_{layer}.png"))
    return written
