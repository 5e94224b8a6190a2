"""Everything the atlas shows, computed before a single file is written.

``build_atlas(run, ...)`` returns an ``Atlas``: per layer the statistics of every unit over the
split (one streamed forward pass for all layers), every unit's OIP (one batched search per
layer), receptive fields, kernels and connections; per chosen image its prediction and its
attributions. The expensive arrays (statistics, OIPs, attributions, predictions) are cached
beside the site folder (``cache_folder``), keyed by the model's weights, the data and the
options, so a rebuild with the same arguments only renders (``site.write_atlas``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mapscope.atlas.network import Chain, export_chain, input_affine
from mapscope.data.cache import sha256_file
from mapscope.errors import ConfigError
from mapscope.inspect.attribution import METHODS, attribute, check_methods, last_map_layer
from mapscope.inspect.inspection import Inspection
from mapscope.inspect.kernels import first_layer_weights
from mapscope.inspect.oip.objectives import oip_target
from mapscope.inspect.oip.settings import OIPSettings, settings_for
from mapscope.inspect.oip.strategies import pictures, run_oip
from mapscope.inspect.receptive import Field, receptive_fields
from mapscope.inspect.summary import layer_kind, parameters_of
from mapscope.inspect.taps import find_layer, layer_names, layer_outputs
from mapscope.inspect.unit_stats import UnitStatistics, statistics_and_scores, unit_statistics
from mapscope.io import write_npz
from mapscope.metrics import confusion_matrix, most_confused
from mapscope.progress import bar
from mapscope.runs import Run
from mapscope.runs.folder import provenance

CACHE = ".cache"  # where atlases before 0.2 kept their cache: inside the site folder


def cache_folder(site: str | Path) -> Path:
    """Where the rebuild cache of the site in ``site`` lives: beside it, never inside, so the
    site folder is exactly what one publishes (``.NAME.atlas-cache`` next to ``NAME``)."""
    site = Path(site)
    return site.parent / f".{site.name}.atlas-cache"


RARE_REACH = 10.0  # a pixel whose prepared value can exceed this is "rarely inked"


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
    bottom: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))  # (K, k)
    sampled: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))  # (K, k)
    oip_peak: np.ndarray | None = None  # (K,) each unit's peak on its own OIP (same measure)
    p99: np.ndarray | None = None  # (K,) 99th percentile of the peak over the split
    crowding: dict[str, Any] | None = None  # the image most shared by the units' top 3
    border: dict[str, Any] | None = None  # set when top examples avoid rarely inked pixels
    activation: str | None = None  # the activation function the layer ends in, if any


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
    pixel_reach: np.ndarray  # (H, W) the largest input value each pixel can take
    chain: Chain | None  # the network for the image viewer to run, or None (``chain_reason``)
    chain_reason: str
    input_affine: tuple[np.ndarray, np.ndarray] | None  # prepared = a * pixels + b
    map_scales: dict[str, tuple[float, float]]  # per layer: the colour range of its maps
    attribution_layer: str | None
    classes: list[dict[str, Any]]  # per class: its confuser, its top units, what separates them
    oip_settings: OIPSettings  # how the OIPs were searched (smooth, start_level: see settings_for)
    provenance: dict[str, Any]
    seconds: dict[str, float]
    cached: bool = False

    @property
    def classifier(self) -> bool:
        return self.probabilities is not None

    @functools.cached_property
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

    def top_units(self, position: int, n: int = 8) -> dict[str, list[int]]:
        """Per layer, the units with the highest map mean on image ``position``."""
        return {
            name: np.argsort(-d.stats.mean[position], kind="stable")[:n].tolist()
            for name, d in self.layers.items()
        }

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
            "version": 2,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_cache(
    path: Path,
    shapes: dict[str, tuple[int, ...]],
    optional: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray] | None:
    """The cached arrays of an earlier build with the same key, or None when there are none or
    they do not fit ``shapes`` (the arrays this build needs, by name: damaged, shrunk, or
    written by another version) or, where present, ``optional``; then everything is computed
    again and the cache replaced. An OIP entry needs only its leading axis, the units. Never
    unpickles."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {name: f[name] for name in f.files}
    except Exception:  # a damaged cache is no error of the user's: compute again
        return None
    present = {name: shape for name, shape in (optional or {}).items() if name in stored}
    for name, shape in {**shapes, **present}.items():
        found = stored.get(name)
        if found is None or found.dtype.kind not in "fiub" or found.shape[: len(shape)] != shape:
            return None
        if not name.startswith("oip/") and found.shape != shape:
            return None
    return stored


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


def _oip_peaks(net: nn.Module, data: LayerData, input_shape) -> np.ndarray | None:
    """(K,) each unit's peak on its own OIP, measured exactly as on the split's images (after
    the layer's activation, over the same positions): the search may drive the module before
    a sigmoid, and its objective is the map's mean, not its peak."""
    images = (data.oip or {}).get("images")
    if images is None:
        return None
    batch = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    batch = np.ascontiguousarray(batch, dtype=np.float32).reshape(len(images), *input_shape)
    inside = {data.name: data.stats.inside} if data.stats.inside is not None else None
    stats = unit_statistics(net, batch, [data.name], inside=inside)[data.name]
    units = np.arange(data.stats.units)
    return stats.peak[units, units]


def _oips(
    net, layer, settings: OIPSettings, input_shape, inputs: np.ndarray, top: np.ndarray
) -> dict[str, np.ndarray]:
    """Every unit's OIP; a unit that no noise start wakes grows from the split's image among
    the units' best examples (``top``'s first column) that drives it most ("from_image": its
    position in the split, -1 for noise)."""
    steps = settings.steps
    snapshot_steps = tuple(int(s) for s in np.unique(np.geomspace(1, steps, 6).astype(int)))
    best = top[:, 0]
    r = run_oip(
        net,
        oip_target(net, layer),
        None,
        None,
        settings,
        snapshot_steps,
        input_shape,
        images=inputs[best],
    )
    out = {
        "images": r.images,
        "start": r.start_images,
        "final": r.final_activation,
        "dead": r.dead,
        "from_image": np.where(r.start_image >= 0, best[r.start_image], -1),
    }
    out.update({f"snapshot_{s}": pictures(v) for s, v in r.snapshots.items()})
    return out


def positions_away_from(
    field: Field | None, shape: tuple[int, ...], reach: np.ndarray, limit: float = RARE_REACH
) -> np.ndarray | None:
    """(h, w) the positions of a map whose receptive field holds no pixel that can reach more
    than ``limit`` (None for a dense layer or one without a known field). Under per-pixel
    standardisation a pixel inked in under about 1 % of the training images reaches 10
    standard deviations (sqrt((1 - f) / f) for a share f), and a unit that sees it answers any
    image that touches it with a huge value: its top examples say more about the scaler than
    about the unit."""
    if field is None or len(shape) != 3:
        return None
    height, width = reach.shape
    mask = np.zeros(shape[1:], dtype=bool)
    for row in range(shape[1]):
        for col in range(shape[2]):
            t, left, b, right = field.box(row, col, height, width)
            mask[row, col] = reach[t:b, left:right].max(initial=0.0) <= limit
    return mask


ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.SELU, nn.LeakyReLU, nn.GELU, nn.Softmax)


def activation_of(module: nn.Module) -> str | None:
    """The class name of the activation a layer ends in (``ReLU``), None when it has none."""
    leaves = [m for m in module.modules() if not list(m.children())]
    if leaves and isinstance(leaves[-1], ACTIVATIONS):
        return type(leaves[-1]).__name__
    return None


def _crowding(
    stats: UnitStatistics, inputs: np.ndarray, image_shape, anywhere: bool
) -> dict[str, Any] | None:
    """The image most often among the top 3 of the layer's live units and how many of them
    share it; with the input value that stands out most in it (a rarely inked pixel, under
    standardisation)."""
    ranking = (stats.highest if anywhere else stats.peak)[:, ~stats.dead]
    if ranking.shape[1] == 0:
        return None
    top3 = np.argsort(-ranking, axis=0, kind="stable")[:3]  # (3, live units)
    images, counts = np.unique(top3, return_counts=True)
    image = int(images[counts.argmax()])
    values = np.abs(inputs[image].reshape(image_shape)).max(0)  # (H, W) over channels
    row, col = divmod(int(values.argmax()), values.shape[1])
    return {
        "image": image,
        "units": int(counts.max()),
        "of": ranking.shape[1],
        "pixel": (row, col),
        "value": float(values[row, col]),
    }


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
    labels: np.ndarray,
    predicted: np.ndarray,
    matrix: np.ndarray,
    top_output: np.ndarray,
    extra: list[int],
    most: int,
) -> list[int]:
    """Images that get a page: the user's, the first image of each confusion (largest cells
    of ``matrix``, the confusion of ``labels`` and ``predicted``, first, at most ``most``),
    and the best example of each output unit."""
    confused = [
        int(np.flatnonzero((labels == a) & (predicted == b))[0])
        for a, b, _ in most_confused(matrix, most)
    ]
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
    oip_settings = settings_for(net, oip_settings)
    options = {
        "oip_prior": [oip_settings.start_level, oip_settings.smooth],
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
    shapes = {
        f"{kind}/{name}": (n, probe[name].units)
        for name in names
        for kind in ("mean", "peak", "where")
    }
    shapes.update({f"oip/{name}/images": (probe[name].units,) for name in names})
    if classifier:
        shapes["probabilities"] = (n, n_classes)
    anywhere = {f"anywhere/{name}": (n, stats.units) for name, stats in probe.items()}
    stored = _read_cache(cache, shapes, anywhere) if cache is not None else None
    seconds: dict[str, float] = {}

    began = time.perf_counter()
    fields = receptive_fields(net, image_shape, names)
    reach = bundle.pixel_reach()
    inside = {n: positions_away_from(fields[n], probe[n].shape, reach) for n in names}
    if stored is None:
        stats, scores = statistics_and_scores(net, inputs, names, scores=classifier, inside=inside)
        probabilities = torch.softmax(torch.from_numpy(scores), 1).numpy() if classifier else None
    else:
        stats = {
            name: UnitStatistics(
                name,
                probe[name].shape,
                stored[f"mean/{name}"],
                stored[f"peak/{name}"],
                stored[f"where/{name}"],
                inside[name] if f"anywhere/{name}" in stored else None,
                stored.get(f"anywhere/{name}"),
            )
            for name in names
        }
        probabilities = stored.get("probabilities")
    data = {
        name: LayerData(
            name, stats[name], fields[name], None, activation=activation_of(find_layer(net, name))
        )
        for name in names
    }
    for d in data.values():
        d.top = d.stats.top(examples)
        d.bottom = d.stats.bottom(examples)
        d.sampled = d.stats.across_range(examples, seed)
        d.top_maps = _top_maps(net, inputs, d)
        d.p99 = np.percentile(d.stats.peak, 99, axis=0)
        d.crowding = _crowding(d.stats, inputs, image_shape, anywhere=False)
        if d.stats.inside is not None and d.crowding is not None:
            d.border = {
                **_crowding(d.stats, inputs, image_shape, anywhere=True),
                "positions": int(d.stats.inside.sum()),
                "total": int(d.stats.inside.size),
                "limit": RARE_REACH,
            }
    found = first_layer_weights(net, all_layers, image_shape)
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
            data[name].oip = _oips(net, name, oip_settings, image_shape, inputs, data[name].top)
        data[name].oip_peak = _oip_peaks(net, data[name], inputs.shape[1:])
    seconds["OIPs"] = time.perf_counter() - began

    began = time.perf_counter()
    labels = bundle.labels(split)
    predicted = probabilities.argmax(1) if classifier else labels
    matrix = confusion_matrix(labels, predicted, n_classes)
    pages, gradcam_layer, attributions = extra, None, {}
    if classifier:
        output = data[names[-1]]
        top_output = output.top if output.stats.units == n_classes else output.top[:0]
        pages = chosen_images(labels, predicted, matrix, top_output, extra, confused)
        if "gradcam" in methods:
            try:
                gradcam_layer = last_map_layer(net, all_layers, torch.from_numpy(inputs[:1]))
            except ConfigError:
                methods = [m for m in methods if m != "gradcam"]  # an MLP: no map layer
        for method in methods:
            kept = stored.get(f"attr/{method}") if stored is not None else None
            if kept is not None and len(kept) == len(pages):
                attributions[method] = kept
            else:
                attributions[method] = _attributions(
                    inspection, inputs, pages, probabilities, method, all_layers, gradcam_layer
                )
    page_data = {}
    for k, position in enumerate(pages):
        page_data[position] = {
            "probabilities": probabilities[position] if classifier else None,
            "attributions": {m: a[k] for m, a in attributions.items()},
        }
    seconds["attributions"] = time.perf_counter() - began

    if cache is not None and stored is None:
        arrays = {"probabilities": probabilities} if classifier else {}
        for name, d in data.items():
            arrays.update({f"mean/{name}": d.stats.mean, f"peak/{name}": d.stats.peak})
            arrays[f"where/{name}"] = d.stats.where
            if d.stats.peak_anywhere is not None:
                arrays[f"anywhere/{name}"] = d.stats.peak_anywhere
            arrays.update({f"oip/{name}/{k}": v for k, v in d.oip.items()})
        arrays.update({f"attr/{m}": a for m, a in attributions.items()})
        for old in cache.parent.glob("atlas-*.npz"):  # one cached build per site folder
            old.unlink()
        write_npz(cache, **arrays)

    chain, chain_reason = export_chain(net, inputs[:4], names)
    affine = input_affine(bundle, bundle.raw(split, np.arange(min(8, n))))
    if chain is not None and affine is None:
        chain, chain_reason = None, f"the run's scaling ({bundle.scaling}) is not per pixel"
    map_scales = {}
    for name, d in data.items():
        highest = d.stats.highest
        bound = float(np.percentile(np.abs(highest), 99.5)) or 1.0
        map_scales[name] = (-bound, bound) if highest.min() < 0 else (0.0, bound)

    history = _history(run) if run is not None else []
    checksums = bundle.dataset.checksums
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
        pixel_reach=reach,
        chain=chain,
        chain_reason=chain_reason,
        input_affine=affine,
        map_scales=map_scales,
        attribution_layer=gradcam_layer,
        classes=class_profiles(data, labels, matrix),
        oip_settings=oip_settings,
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
