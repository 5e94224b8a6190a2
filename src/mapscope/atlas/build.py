"""Everything the atlas shows, computed before a single file is written.

``build_atlas(run, ...)`` returns an ``Atlas``: per layer the statistics of every unit over the
split (one streamed forward pass for all layers), every unit's OIP (one batched search per
layer), receptive fields, kernels and connections; per chosen image its prediction and its
attributions. The expensive arrays (statistics, OIPs, attributions, predictions) are cached
under the site folder, keyed by the model's weights, the data and the options, so a rebuild
with the same arguments only renders (``site.write_atlas``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mapscope.data.cache import sha256_file
from mapscope.errors import ConfigError
from mapscope.inspect.attribution import METHODS, attribute, check_methods, last_map_layer
from mapscope.inspect.inspection import Inspection
from mapscope.inspect.kernels import first_conv_kernels
from mapscope.inspect.oip.objectives import oip_target
from mapscope.inspect.oip.settings import OIPSettings
from mapscope.inspect.oip.strategies import pictures, run_oip
from mapscope.inspect.receptive import Field, receptive_fields
from mapscope.inspect.summary import layer_kind, parameters_of
from mapscope.inspect.taps import find_layer, layer_names, layer_outputs
from mapscope.inspect.unit_stats import UnitStatistics, statistics_and_scores, unit_statistics
from mapscope.io import write_npz
from mapscope.metrics import confusion_matrix
from mapscope.progress import bar
from mapscope.runs import Run
from mapscope.runs.folder import provenance

CACHE = ".cache"  # inside the site folder


@dataclass
class LayerData:
    name: str
    stats: UnitStatistics
    field: Field | None
    oip: dict[str, np.ndarray] | None  # images, start, final, dead, snapshot_S: (K, H, W)
    kernels: np.ndarray | None = None  # (K, kh, kw) for the first conv layer
    incoming: list[list[tuple[str, int, float]]] | None = None  # per unit: (layer, unit, weight)
    outgoing: list[list[tuple[str, int, float]]] | None = None
    top: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))  # (K, k)
    top_maps: np.ndarray | None = None  # (K, k, h, w) the unit's map on each top image


@dataclass
class Atlas:
    """A model's atlas as arrays and numbers; ``site.write_atlas`` turns it into pages."""

    run_path: Path
    kind: str
    dataset: str
    class_names: tuple[str, ...]
    split: str
    raw: np.ndarray  # (N, H, W) or (N, H, W, 3) images of the split, as stored
    labels: np.ndarray
    probabilities: np.ndarray | None  # (N, classes); None for a network that does not classify
    layers: dict[str, LayerData]
    summary: list[dict[str, Any]]
    history: list[dict[str, Any]]
    images: dict[int, dict[str, Any]]  # position -> probabilities, attributions, top units
    attribution_layer: str | None
    classes: list[dict[str, Any]]  # per class: its confuser, its top units, what separates them
    provenance: dict[str, Any]
    seconds: dict[str, float]
    cached: bool = False

    @property
    def classifier(self) -> bool:
        return self.probabilities is not None

    @property
    def predicted(self) -> np.ndarray | None:
        return self.probabilities.argmax(1) if self.classifier else None

    @property
    def accuracy(self) -> float | None:
        return float((self.predicted == self.labels).mean()) if self.classifier else None

    def confusion(self) -> np.ndarray:
        """Rows actual, columns predicted; without class scores (an autoencoder) every image
        counts as recognised."""
        predicted = self.predicted if self.classifier else self.labels
        return confusion_matrix(self.labels, predicted, len(self.class_names))

    def summary_text(self) -> str:
        units = sum(d.stats.units for d in self.layers.values())
        dead = sum(int(d.stats.dead.sum()) for d in self.layers.values())
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        scored = f"accuracy {self.accuracy:.4f}" if self.classifier else "no class scores"
        return (
            f"atlas of {self.run_path}: {len(self.layers)} layers, {units} units ({dead} dead), "
            f"{len(self.images)} image pages; {scored} on {self.split}"
            f"{' (from the cache)' if self.cached else ''}; {parts}"
        )


def _weights_digest(net: nn.Module) -> str:
    """A module's weights as one digest (a user's module has no weights file to hash)."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _cache_key(run: Run | None, inspection: Inspection, options: dict[str, Any]) -> str:
    if run is not None:
        files = run.files
        weights = [sha256_file(files[r]) for r in ("model", "weights") if r in files]
    else:
        weights = [_weights_digest(inspection.net)]
    text = json.dumps(
        {
            "config": inspection.config,
            "weights": weights,
            "options": options,
            "version": 1,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_cache(path: Path, names: list[str], classifier: bool) -> dict[str, np.ndarray] | None:
    """The cached arrays of an earlier build with the same key, or None when there are none or
    they are damaged (then everything is computed again). Never unpickles."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {name: f[name] for name in f.files}
    except Exception:  # a damaged cache is no error of the user's: compute again
        return None
    needed = [f"{k}/{n}" for n in names for k in ("mean", "peak", "where")]
    needed += ["probabilities"] if classifier else []
    needed += [f"oip/{n}/images" for n in names]
    return stored if all(k in stored for k in needed) else None


def _linear(module: nn.Module) -> nn.Linear | None:
    found = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return found[0] if len(found) == 1 else None


def _connections(layers: dict[str, LayerData], net: nn.Module, n_best: int = 8) -> None:
    """Strongest incoming and outgoing weights of dense units; an input coming from a flattened
    map counts as that map (summed over its positions)."""
    names = list(layers)
    for i, name in enumerate(names):
        data = layers[name]
        linear = _linear(find_layer(net, name))
        if data.stats.is_map or linear is None or i == 0:
            continue
        previous = layers[names[i - 1]]
        weight = linear.weight.detach().float().cpu().numpy()  # (out, in)
        if weight.shape[1] == int(np.prod(previous.stats.shape)) and previous.stats.is_map:
            # inputs from a map flattened channels-first: a map's weights summed over positions
            weight = weight.reshape(weight.shape[0], previous.stats.shape[0], -1).sum(2)
        if weight.shape[1] != previous.stats.units:
            continue
        incoming = []
        for unit in range(weight.shape[0]):
            best = np.argsort(-np.abs(weight[unit]))[:n_best]
            incoming.append([(previous.name, int(j), float(weight[unit, j])) for j in best])
        data.incoming = incoming
        previous.outgoing = [
            [
                (name, int(u), float(weight[u, j]))
                for u in np.argsort(-np.abs(weight[:, j]))[:n_best]
            ]
            for j in range(weight.shape[1])
        ]


def _top_maps(net, inputs, data: LayerData) -> np.ndarray | None:
    """(K, k, h, w): each unit's map on each of its own top images (map layers only)."""
    if not data.stats.is_map:
        return None
    images = np.unique(data.top)
    outputs = layer_outputs(net, inputs[images], [data.name])[data.name]
    where = np.searchsorted(images, data.top)  # (K, k) rows of ``outputs``
    units = np.arange(data.stats.units)[:, None]
    return outputs[where, units]


def _oips(net, layer, settings: OIPSettings, input_shape) -> dict[str, np.ndarray]:
    steps = settings.steps
    snapshot_steps = tuple(int(s) for s in np.unique(np.geomspace(1, steps, 6).astype(int)))
    r = run_oip(net, oip_target(net, layer), None, None, settings, snapshot_steps, input_shape)
    out = {
        "images": r.images,
        "start": r.start_images,
        "final": r.final_activation,
        "dead": r.dead,
    }
    out.update({f"snapshot_{s}": pictures(v) for s, v in r.snapshots.items()})
    return out


def default_layers(
    net: nn.Module, all_layers: list[str], probe: dict[str, UnitStatistics], classifier: bool
) -> list[str]:
    """Every layer but Flatten; for a network that does not classify (an autoencoder), only
    the layers up to its narrowest one (the encoder, ending in the code)."""
    names = [n for n in all_layers if not isinstance(find_layer(net, n), nn.Flatten)]
    if classifier:
        return names
    sizes = [int(np.prod(probe[n].shape)) for n in names]
    return names[: int(np.argmin(sizes)) + 1]


def _attributions(inspection, inputs, pages, probabilities, method, all_layers, gradcam_layer):
    """(pages, H, W) attributions of ``method`` for the predicted class, 16 images at a time."""
    bundle = inspection.bundle
    blank = bundle.prepare(np.zeros_like(bundle.raw("test", [0])), "nchw")
    maps = [
        attribute(
            inspection.net,
            inputs[chunk],
            probabilities[chunk].argmax(1),
            method,
            blank,
            bundle.dataset.image_shape,
            all_layers,
            gradcam_layer,
        ).maps
        for chunk in (pages[i : i + 16] for i in range(0, len(pages), 16))
    ]
    return np.concatenate(maps) if maps else np.zeros((0, *bundle.dataset.image_shape[1:]))


def class_profiles(
    layers: dict[str, LayerData], labels: np.ndarray, matrix: np.ndarray, best: int = 5
) -> list[dict[str, Any]]:
    """Per class: the class it is most often taken for (``confuser``), each layer's units most
    above their split mean on its images (z-scores), and the units that separate it from its
    confuser best either way (Cohen's d, the numbers of ``mapscope compare --classes``)."""
    profiles = []
    for t in range(len(matrix)):
        off = matrix[t].copy()
        off[t] = 0
        confuser = int(off.argmax()) if off.max() > 0 else None
        comparable = confuser is not None and min(matrix[t].sum(), matrix[confuser].sum()) >= 2
        top_units, separation = [], []
        for name, data in layers.items():
            z = data.stats.class_z_scores(labels, t)
            top_units.append((name, np.argsort(-z)[:8].tolist()))
            if comparable:
                d = data.stats.separation(labels, t, confuser).effect_size
                order = np.argsort(-d)
                plus = [(int(u), float(d[u])) for u in order[:best] if d[u] > 0]
                minus = [(int(u), float(d[u])) for u in order[::-1][:best] if d[u] < 0]
                separation.append((name, plus, minus))
        profiles.append(
            {
                "confuser": confuser,
                "confused_count": int(off.max()),
                "top_units": top_units,
                "separation": separation,
            }
        )
    return profiles


def chosen_images(
    labels: np.ndarray, predicted: np.ndarray, top_output: np.ndarray, extra: list[int], most: int
) -> list[int]:
    """Images that get a page: the user's, the first image of each confusion (largest cells
    first, at most ``most``), and the best example of each output unit."""
    confused = []
    wrong = np.flatnonzero(labels != predicted)
    pairs, counts = np.unique(
        np.stack([labels[wrong], predicted[wrong]], 1), axis=0, return_counts=True
    )
    for k in np.argsort(-counts, kind="stable")[:most]:
        a, b = pairs[k]
        confused.append(int(wrong[(labels[wrong] == a) & (predicted[wrong] == b)][0]))
    return list(dict.fromkeys([*extra, *confused, *top_output[:, 0].tolist()]))


def build_atlas(
    model: Run | Inspection | str | Path,
    layers: list[str] | None = None,
    examples: int = 9,
    split: str = "test",
    images: list[int] | None = None,
    confused: int = 20,
    oip_steps: int = 300,
    methods: list[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Atlas:
    """Compute the atlas of a neural run, or of any module given as an ``Inspection``
    (``Inspection.from_module``): ``layers`` (default all but Flatten) over ``split``."""
    if split not in ("train", "test"):
        raise ConfigError(f"--split must be train or test, got {split!r}.")
    if not 1 <= examples <= 100:
        raise ConfigError(f"--examples must be between 1 and 100, got {examples}.")
    if oip_steps < 1:
        raise ConfigError(f"--oip-steps must be >= 1, got {oip_steps}.")
    oip_settings = OIPSettings(steps=oip_steps, seed=seed, device=device).validate()
    if confused < 0:
        raise ConfigError(f"--confused must be >= 0, got {confused}.")
    methods = check_methods(list(METHODS) if methods is None else list(methods))
    if isinstance(model, Inspection):
        run, inspection, net = None, model, model.net
    else:
        run = model if isinstance(model, Run) else Run.open(model)
        inspection, net = None, run.module()  # a KMeans run is refused here, before its data
    all_layers = layer_names(net)
    for name in layers or []:  # before the data is read: a typo costs nothing
        find_layer(net, name)
    if inspection is None:
        inspection = Inspection(net, run.bundle(data_root), str(run.path), run.config)
    bundle = inspection.bundle
    if not bundle.dataset.is_image:
        raise ConfigError(
            f"the atlas needs an image dataset; {inspection.source} was trained on tables."
        )
    n = len(bundle.split.indices(split))
    extra = [int(i) for i in images or []]
    bad = [i for i in extra if not 0 <= i < n]
    if bad:
        raise ConfigError(f"--images {bad} outside the {split} split (0..{n - 1}).")
    inputs = inspection.inputs(split)
    all_layers = layer_names(net, torch.from_numpy(inputs[:1]))  # in the order they run
    n_classes = len(bundle.dataset.class_names)
    probe = unit_statistics(net, inputs[:2], all_layers)
    with torch.no_grad():
        classifier = tuple(net(torch.from_numpy(inputs[:2])).shape[1:]) == (n_classes,)
    names = layers or default_layers(net, all_layers, probe, classifier)
    if not classifier:
        methods, confused = [], 0  # no class scores to explain (an autoencoder)
    options = {
        "layers": names,
        "examples": examples,
        "split": split,
        "images": extra,
        "confused": confused,
        "oip_steps": oip_steps,
        "methods": methods,
        "seed": seed,
        "data": bundle.dataset.checksums,
    }
    image_shape = bundle.dataset.image_shape
    key = _cache_key(run, inspection, options)
    cache = Path(cache_dir) / f"atlas-{key}.npz" if cache_dir else None
    stored = _read_cache(cache, names, classifier) if cache is not None else None
    seconds: dict[str, float] = {}

    began = time.perf_counter()
    if stored is None:
        stats, scores = statistics_and_scores(net, inputs, names, scores=classifier)
        probabilities = torch.softmax(torch.from_numpy(scores), 1).numpy() if classifier else None
    else:
        stats = {
            name: UnitStatistics(
                name,
                probe[name].shape,
                stored[f"mean/{name}"],
                stored[f"peak/{name}"],
                stored[f"where/{name}"],
            )
            for name in names
        }
        probabilities = stored.get("probabilities")
    fields = receptive_fields(net, image_shape, names)
    data = {name: LayerData(name, stats[name], fields[name], None) for name in names}
    for d in data.values():
        d.top = d.stats.top(examples)
        d.top_maps = _top_maps(net, inputs, d)
    found = first_conv_kernels(net, all_layers)
    if found is not None and found[0] in data:
        data[found[0]].kernels = found[1]
    _connections(data, net)
    seconds["statistics"] = time.perf_counter() - began

    began = time.perf_counter()
    for name in bar(names, "OIPs, one batched search per layer", unit="layer"):
        if stored is not None:
            prefix = f"oip/{name}/"
            data[name].oip = {
                k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)
            }
        else:
            data[name].oip = _oips(net, name, oip_settings, image_shape)
    seconds["OIPs"] = time.perf_counter() - began

    began = time.perf_counter()
    labels = bundle.labels(split)
    pages, gradcam_layer, attributions = extra, None, {}
    if classifier:
        output = data[names[-1]]
        top_output = output.top if output.stats.units == n_classes else output.top[:0]
        pages = chosen_images(labels, probabilities.argmax(1), top_output, extra, confused)
        if "gradcam" in methods:
            try:
                gradcam_layer = last_map_layer(net, all_layers, torch.from_numpy(inputs[:1]))
            except ConfigError:
                methods = [m for m in methods if m != "gradcam"]  # an MLP: no map layer
        for method in methods:
            if stored is not None and f"attr/{method}" in stored:
                attributions[method] = stored[f"attr/{method}"]
            else:
                attributions[method] = _attributions(
                    inspection, inputs, pages, probabilities, method, all_layers, gradcam_layer
                )
    page_data = {}
    for k, position in enumerate(pages):
        page_data[position] = {
            "probabilities": probabilities[position] if classifier else None,
            "attributions": {m: a[k] for m, a in attributions.items()},
            "top_units": {
                name: np.argsort(-d.stats.mean[position])[:8].tolist() for name, d in data.items()
            },
        }
    seconds["attributions"] = time.perf_counter() - began

    if cache is not None and stored is None:
        arrays = {"probabilities": probabilities} if classifier else {}
        for name, d in data.items():
            arrays.update({f"mean/{name}": d.stats.mean, f"peak/{name}": d.stats.peak})
            arrays[f"where/{name}"] = d.stats.where
            arrays.update({f"oip/{name}/{k}": v for k, v in d.oip.items()})
        arrays.update({f"attr/{m}": a for m, a in attributions.items()})
        for old in cache.parent.glob("atlas-*.npz"):  # one cached build per site folder
            old.unlink()
        write_npz(cache, **arrays)

    history = _history(run) if run is not None else []
    checksums = bundle.dataset.checksums
    predicted = probabilities.argmax(1) if classifier else labels
    matrix = confusion_matrix(labels, predicted, n_classes)
    seed_of_run = run.config.get("train", {}).get("seed") if run is not None else None
    return Atlas(
        run_path=Path(inspection.source),
        kind=run.kind if run is not None else "module",
        dataset=bundle.dataset.name,
        class_names=tuple(bundle.dataset.class_names),
        split=split,
        raw=bundle.raw(split),
        labels=labels,
        probabilities=probabilities,
        layers=data,
        summary=_summary(net, probe, data, all_layers),
        history=history,
        images=page_data,
        attribution_layer=gradcam_layer,
        classes=class_profiles(data, labels, matrix),
        provenance={
            **provenance(checksums, split=split, seed=seed_of_run),
            "config": inspection.config,
        },
        seconds=seconds,
        cached=stored is not None,
    )


def _history(run: Run) -> list[dict[str, Any]]:
    from mapscope.history import from_stored
    from mapscope.io import read_json

    path = run.files.get("history")
    return [] if path is None else from_stored(read_json(path))[0]


def _summary(
    net: nn.Module, probe: dict[str, UnitStatistics], data: dict[str, LayerData], all_layers
) -> list[dict]:
    rows = []
    for name in all_layers:
        module = find_layer(net, name)
        kind = layer_kind(module)
        d = data.get(name)
        rows.append(
            {
                "name": name,
                "type": kind,
                "shape": list(probe[name].shape),
                "parameters": parameters_of(name, module),
                "field": list(d.field.size) if d and d.field else None,
                "stride": list(d.field.stride) if d and d.field else None,
                "units": d.stats.units if d else None,
                "dead": int(d.stats.dead.sum()) if d else None,
                "in_atlas": d is not None,
            }
        )
    return rows
