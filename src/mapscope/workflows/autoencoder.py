"""What ``mapscope ae reconstruct``, ``ae latent`` and ``ae generate`` do, as functions that
open runs and return result objects; ``write_*`` turn a result into files and return their
paths. Nothing here prints.

    result = latent_study("runs/ae")           # a LatentResult
    print(result.study.summary())
    write_latent(result, "runs/ae_latent")
    gen = generate("runs/ae", judge="runs/cnn")
    print(gen.summary())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapscope.ae.build import AutoEncoder, decode_array, encode_array
from mapscope.ae.latent import LatentStudy, study
from mapscope.ae.samplers import PAIRS, SAMPLERS, make_sampler
from mapscope.data.bundle import DataBundle
from mapscope.data.cache import file_stamp
from mapscope.data.prepare import prepare_inputs
from mapscope.errors import ConfigError
from mapscope.io import write_csv, write_json
from mapscope.progress import stage
from mapscope.report import ae as figures
from mapscope.report.display import RichDisplay
from mapscope.report.figures import save_figure
from mapscope.runs import Run, provenance
from mapscope.workflows.judge import Judge, Judgement

# The training codes and the samplers fitted to them, per run weights and settings: the latent
# study and generation both start from them, and a notebook or a test calls both on one run.
_KEPT: dict[tuple, object] = {}
_KEPT_AT_MOST = 8


def _kept(key: tuple, compute):
    """``compute()`` once per process for ``key`` (a few of the latest kept)."""
    if key not in _KEPT:
        if len(_KEPT) >= _KEPT_AT_MOST:
            _KEPT.pop(next(iter(_KEPT)))
        _KEPT[key] = compute()
    return _KEPT[key]


def _run_key(run: Run) -> tuple:
    """A run folder and the stamps of its weights and config: changes when it is retrained."""
    files = run.files
    return (str(run.path.resolve()), file_stamp(files["model"]), file_stamp(files["config"]))


@dataclass
class AutoencoderRun:
    """An autoencoder run opened for work: its network, its inputs and how to draw them."""

    run: Run
    net: AutoEncoder
    bundle: DataBundle

    @classmethod
    def open(cls, path: str | Path, data_root: str | Path | None = None) -> AutoencoderRun:
        run = Run.open(path, "ae")
        return cls(run, run.module(), run.bundle(data_root))

    @property
    def cmap(self) -> str:
        """Digits and clothes are drawn dark on white, photographs as they are."""
        return "gray_r" if self.bundle.dataset.name in ("mnist", "fashion-mnist") else "gray"

    def pixels(self, part: str, indices=None) -> np.ndarray:
        """Images in [0, 1], NCHW: what the decoder is trained to give back."""
        return prepare_inputs(self.bundle.raw(part, indices), "unit", layout="nchw")

    def codes(self, part: str, indices=None) -> np.ndarray:
        return encode_array(self.net, self.bundle.inputs(part, indices, layout="nchw"))

    @property
    def data_key(self) -> tuple:
        """What identifies the data this run reads: its folder and the files' checksums."""
        return str(self.bundle.dataset.root), tuple(sorted(self.bundle.dataset.checksums.items()))

    @property
    def weights_key(self) -> tuple:
        """What identifies this run's trained network and its inputs within a process."""
        return (*_run_key(self.run), *self.data_key)

    def positions(self, part: str) -> np.ndarray:
        """The images of ``part`` this run was trained (train) or validated (test) on: the
        first ``max_train`` / ``max_test`` of its split for a quick run, else all of them."""
        return self.bundle.first(part, self.run.config.get("train", {}).get(f"max_{part}"))

    def training_codes(self) -> np.ndarray:
        """The codes of the images the run was trained on, encoded once per process
        (read-only)."""

        def encode():
            codes = self.codes("train", self.positions("train"))
            codes.flags.writeable = False
            return codes

        return _kept((*self.weights_key, "train codes"), encode)

    def fitted_samplers(self, names, b, truncate, components, seed) -> dict:
        """The samplers fitted to the training codes, once per process for these settings."""
        key = (*self.weights_key, "samplers", tuple(names), b, truncate, components, seed)
        return _kept(
            key,
            lambda: fit_samplers(self.training_codes(), names, b, truncate, components, seed),
        )

    def provenance(self, **settings) -> dict:
        return provenance(self.bundle.dataset.checksums, model=str(self.run.path), **settings)


# --- reconstruct -----------------------------------------------------------------------------


@dataclass
class Reconstruction(RichDisplay):
    split: str
    indices: list[int]
    titles: list[str]
    originals: np.ndarray
    reconstructions: np.ndarray
    mse: np.ndarray  # per image, mean over pixels
    bce: np.ndarray
    cmap: str
    provenance: dict

    def summary(self) -> str:
        lines = [
            f"{t}: mse {m:.5f}  bce {b:.4f}"
            for t, m, b in zip(self.titles, self.mse, self.bce, strict=True)
        ]
        return "\n".join([*lines, f"mean: mse {self.mse.mean():.5f}  bce {self.bce.mean():.4f}"])

    def figure(self):
        """Each image above its reconstruction, with the reconstruction's error."""
        return figures.plot_reconstructions(
            self.originals, self.reconstructions, self.titles, self.mse, self.cmap
        )

    def _card(self):
        facts = [
            ("images", f"{len(self.indices)} of the {self.split} split"),
            ("mean error", f"mse {self.mse.mean():.5f}, bce {self.bce.mean():.4f}"),
        ]
        return "Reconstructions", facts, self.figure, None


def reconstruct(
    model: str | Path, indices: Sequence[int], split: str = "test", data_root=None
) -> Reconstruction:
    m = AutoencoderRun.open(model, data_root)
    indices = list(indices)
    originals = m.pixels(split, indices)
    out = decode_array(m.net, m.codes(split, indices))
    eps = 1e-7
    clipped = np.clip(out, eps, 1 - eps)
    bce = -(originals * np.log(clipped) + (1 - originals) * np.log(1 - clipped))
    names = m.bundle.dataset.class_names
    titles = [
        f"{split} #{i}: {names[y]}" if len(names) > 1 else f"{split} #{i}"
        for i, y in zip(indices, m.bundle.labels(split, indices), strict=True)
    ]
    return Reconstruction(
        split,
        indices,
        titles,
        originals,
        out,
        ((out - originals) ** 2).reshape(len(out), -1).mean(1),
        bce.reshape(len(out), -1).mean(1),
        m.cmap,
        m.provenance(split=split, indices=indices),
    )


def write_reconstruction(result: Reconstruction, out: str | Path) -> list[Path]:
    out = Path(out)
    fig = result.figure()
    rows = [
        {"index": i, "mse": float(m), "bce": float(b)}
        for i, m, b in zip(result.indices, result.mse, result.bce, strict=True)
    ]
    return [
        save_figure(fig, out),
        write_json(
            out.with_suffix(".json"), {"split": result.split, "images": rows, **result.provenance}
        ),
    ]


# --- the latent study ------------------------------------------------------------------------


def fit_samplers(
    codes: np.ndarray,
    names: Sequence[str],
    b: float,
    truncate: float | None,
    components: int,
    seed: int,
) -> dict:
    return {name: make_sampler(name, b, truncate, components, seed).fit(codes) for name in names}


def draw(samplers: dict, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` vectors from each sampler, each from its own stream of the seed."""
    return {name: s.sample(n, seed=[seed, k]) for k, (name, s) in enumerate(samplers.items())}


@dataclass
class LatentResult(RichDisplay):
    study: LatentStudy
    codes: np.ndarray  # training codes
    labels: np.ndarray
    class_names: tuple[str, ...]
    manifold: tuple[np.ndarray, tuple[float, float, float, float]] | None
    cmap: str
    provenance: dict

    def summary(self) -> str:
        return self.study.summary()

    def _card(self):
        s = self.study
        return (
            f"The latent space of a {s.latent}-D autoencoder",
            [("training codes", len(self.codes)), ("classes", len(self.class_names))],
            lambda: figures.plot_pca(
                s.explained_variance_ratio, s.pca_train, s.pca_labels, self.class_names
            ),
            None,
        )


def latent_study(
    model: str | Path,
    n: int = 1000,
    b: float = 1.5,
    truncate: float | None = None,
    components: int = 10,
    seed: int = 0,
    data_root=None,
    manifold_side: int = 20,
) -> LatentResult:
    """Encode the training and test images (those the run trained and was validated on), fit
    the four samplers, draw ``n`` from each and
    study where everything lies (``ae/latent.py``); for a 2-D latent space also decode a grid
    over the region the codes occupy."""
    if n < 2:
        raise ConfigError(f"--n must be >= 2 to compare distributions, got {n}.")
    m = AutoencoderRun.open(model, data_root)
    with stage("encoding the training and test images"):
        codes, test_codes = m.training_codes(), m.codes("test", m.positions("test"))
    labels = m.bundle.labels("train", m.positions("train"))
    with stage("fitting the samplers"):
        samplers = m.fitted_samplers(SAMPLERS, b, truncate, components, seed)
    names = m.bundle.dataset.class_names
    with stage("studying the codes and the samplers' vectors"):
        result = study(codes, labels, test_codes, draw(samplers, n, seed), names, seed)
    manifold = None
    if codes.shape[1] == 2:
        low, high = np.quantile(codes, 0.01, axis=0), np.quantile(codes, 0.99, axis=0)
        xs = np.linspace(low[0], high[0], manifold_side)
        ys = np.linspace(low[1], high[1], manifold_side)
        grid = np.array([(x, y) for y in ys for x in xs], dtype=np.float32)
        manifold = (decode_array(m.net, grid), (low[0], high[0], low[1], high[1]))
    settings = {"n": n, "b": b, "truncate": truncate, "components": components, "seed": seed}
    return LatentResult(result, codes, labels, names, manifold, m.cmap, m.provenance(**settings))


def write_latent(result: LatentResult, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = result.study
    shown = np.random.default_rng(0).choice(
        len(result.codes), min(5000, len(result.codes)), replace=False
    )
    pairs = [p for p in PAIRS if p[1] < s.latent]
    drawn = {
        "components.png": figures.plot_components(result.codes, s.ks_distance),
        "radii.png": figures.plot_radii(s.radii, s.latent),
        "nearest.png": figures.plot_nearest(s.nearest, s.empty_threshold),
        "correlation.png": figures.plot_correlation(s.correlation),
        "pca.png": figures.plot_pca(
            s.explained_variance_ratio, s.pca_train, s.pca_labels, result.class_names
        ),
    }
    if pairs:
        drawn["pairs.png"] = figures.plot_pairs(
            result.codes[shown], result.labels[shown], result.class_names, pairs
        )
    if result.manifold is not None:
        images, extent = result.manifold
        drawn["manifold.png"] = figures.plot_manifold(
            images,
            extent,
            result.codes[shown],
            result.labels[shown],
            result.class_names,
            result.cmap,
        )
    paths = [write_json(out / "latent.json", {**s.to_dict(), **result.provenance})]
    return paths + [save_figure(fig, out / name) for name, fig in drawn.items()]


# --- generation ------------------------------------------------------------------------------


@dataclass
class Generation(RichDisplay):
    images: dict[str, np.ndarray]  # per sampler
    interpolations: list[np.ndarray]
    interpolation_labels: list[str]
    traversals: list[np.ndarray]
    judgements: list[Judgement] = field(default_factory=list)
    class_names: tuple[str, ...] = ()
    cmap: str = "gray_r"
    provenance: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [{"source": j.source, **j.to_dict(self.class_names)} for j in self.judgements]

    def summary(self) -> str:
        if not self.judgements:
            return f"generated {', '.join(f'{len(v)} {k}' for k, v in self.images.items())} images (no --judge given)"
        lines = ["source            confidence   classes covered   Fréchet distance"]
        for j in self.judgements:
            lines.append(
                f"{j.source:<17} {j.mean_top_probability:10.3f}   {j.classes_covered():8d} of "
                f"{len(j.class_counts):<4}  {j.frechet_distance:14.2f}"
            )
        return "\n".join(lines)

    def _card(self):
        table = None
        if self.judgements:
            table = (
                ["source", "confidence", "classes covered", "Fréchet distance"],
                [
                    (
                        j.source,
                        f"{j.mean_top_probability:.3f}",
                        j.classes_covered(),
                        f"{j.frechet_distance:.2f}",
                    )
                    for j in self.judgements
                ],
            )
        names = list(self.images)
        return (
            "Images generated from the latent space",
            [(name, f"{len(v)} images") for name, v in self.images.items()],
            lambda: figures.plot_strips(
                [self.images[name][:10] for name in names],
                names,
                "the first 10 images of each sampler",
                cmap=self.cmap,
            ),
            table,
        )


def generate(
    model: str | Path,
    samplers: Sequence[str] = SAMPLERS,
    n: int = 100,
    b: float = 1.5,
    truncate: float | None = None,
    components: int = 10,
    judge: str | Path | None = None,
    judge_layer: str | None = None,
    seed: int = 0,
    between: Sequence[tuple[int, int]] = PAIRS,
    steps: int = 10,
    data_root=None,
) -> Generation:
    """Decode ``n`` vectors from each sampler; an interpolation between the codes of the test
    images in ``between``, and traversals along the first principal axes of the codes; with a
    ``judge`` (a classifier run on the same data) every sampler judged, with reconstructions
    and real training images as the floor."""
    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown or not samplers:
        raise ConfigError(
            f"--sampler {unknown or '(none)'} unknown; choose from {', '.join(SAMPLERS)}."
        )
    if n < 2:
        raise ConfigError(f"--n must be >= 2, got {n}.")
    m = AutoencoderRun.open(model, data_root)
    referee, judge_key = _open_judge(judge, m, judge_layer, data_root) if judge else (None, ())
    with stage("encoding the training images and fitting the samplers"):
        codes = m.training_codes()
        fitted = m.fitted_samplers(samplers, b, truncate, components, seed)
        images = {name: decode_array(m.net, z) for name, z in draw(fitted, n, seed).items()}
    n_test = len(m.bundle.split.test)
    bad = [i for pair in between for i in pair if not 0 <= i < n_test]
    if bad:
        raise ConfigError(f"--between index {bad[0]} is outside the test split (0..{n_test - 1}).")
    interpolations, labels = [], []
    for i, j in between:
        za, zb = m.codes("test", [i, j])
        t = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
        interpolations.append(decode_array(m.net, (1 - t) * za + t * zb))
        labels.append(f"test #{i} -> #{j}")
    traversals = _traversals(m.net, codes, steps)
    result = Generation(
        images, interpolations, labels, traversals, [], m.bundle.dataset.class_names, m.cmap
    )
    if referee is not None:
        with stage(f"judging {len(images)} x {n} images with {judge}"):
            result.judgements = _judged(referee, judge_key, m, images, n, seed)
    settings = {
        "samplers": list(samplers),
        "n": n,
        "b": b,
        "truncate": truncate,
        "components": components,
        "seed": seed,
        "judge": str(judge) if judge else None,
        "judge_layer": referee.feature_layer if referee else None,
    }
    result.provenance = m.provenance(**settings)
    return result


def _judged(
    referee: Judge, judge_key: tuple, m: AutoencoderRun, images: dict, n: int, seed: int
) -> list[Judgement]:
    """Every sampler's images judged against the real test images, after the two floors: real
    training images and reconstructions of test images. The judge's statistics of the real
    test images are computed once per process for a judge, layer and test split."""
    test = m.bundle.split.test
    key = (*judge_key, referee.feature_layer, *m.data_key, test.tobytes())

    def statistics():
        referee.fit(m.pixels("test"))
        return referee.mean_, referee.covariance_

    referee.mean_, referee.covariance_ = _kept(key, statistics)
    rng = np.random.default_rng(seed)
    n_test, n_train = len(m.bundle.split.test), len(m.bundle.split.train)
    chosen_test = np.sort(rng.choice(n_test, min(n, n_test), replace=False))
    chosen_train = np.sort(rng.choice(n_train, min(n, n_train), replace=False))
    floors = {
        "real training": m.pixels("train", chosen_train),
        "reconstructions": decode_array(m.net, m.codes("test", chosen_test)),
    }
    return [referee.judge(k, v) for k, v in {**floors, **images}.items()]


def _traversals(net: AutoEncoder, codes: np.ndarray, steps: int, axes: int = 4) -> list[np.ndarray]:
    """Along each of the first principal axes, from -3 to +3 standard deviations."""
    mean = codes.mean(0)
    values, vectors = np.linalg.eigh(np.cov(codes, rowvar=False).reshape(len(mean), len(mean)))
    order = np.argsort(values)[::-1][: min(axes, len(mean))]
    t = np.linspace(-3, 3, steps)[:, None]
    return [
        decode_array(
            net, (mean + t * np.sqrt(max(values[k], 0)) * vectors[:, k]).astype(np.float32)
        )
        for k in order
    ]


def _open_judge(path, m: AutoencoderRun, layer: str | None, data_root) -> tuple[Judge, tuple]:
    """The judge, and the key of its run for the statistics kept per process."""
    run = Run.open(path)
    if not run.is_neural:
        raise ConfigError(
            f"--judge {path} holds a {run.kind!r} run; give a CNN run trained on {m.bundle.dataset.name}."
        )
    if run.kind == "ae":
        raise ConfigError(f"--judge {path} is an autoencoder; give a classifier (CNN) run.")
    inspection = run.inspection(data_root)
    if inspection.bundle.dataset.name != m.bundle.dataset.name:
        raise ConfigError(
            f"--judge {path} was trained on {inspection.bundle.dataset.name}, the autoencoder "
            f"on {m.bundle.dataset.name}; a judge must know the same classes."
        )
    if layer is not None and layer not in inspection.layer_names:
        raise ConfigError(
            f"--judge-layer {layer!r} is not a layer of {path}; choose one of {', '.join(inspection.layer_names)}."
        )
    if layer is None and "Dense_1" in inspection.layer_names:
        layer = "Dense_1"
    layout = "nchw" if inspection.bundle.dataset.is_image else "flat"

    def prepare(images: np.ndarray) -> np.ndarray:
        pixels = figures.to_display(images) * 255.0
        return inspection.bundle.prepare(pixels, layout=layout)

    return Judge(inspection.net, prepare, layer), _run_key(run)


def write_generation(result: Generation, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, images in result.images.items():
        fig = figures.plot_image_grid(
            images[:100], f"decoded from the {name} sampler", cmap=result.cmap
        )
        paths.append(save_figure(fig, out / f"samples_{name}.png"))
    fig = figures.plot_strips(
        result.interpolations,
        result.interpolation_labels,
        "linear interpolation between the codes of two test images",
        result.cmap,
    )
    paths.append(save_figure(fig, out / "interpolation.png"))
    labels = [f"PCA axis {k + 1}" for k in range(len(result.traversals))]
    fig = figures.plot_strips(
        result.traversals,
        labels,
        "traversal along the principal axes of the codes, from -3 to +3 standard deviations",
        result.cmap,
    )
    paths.append(save_figure(fig, out / "traversal.png"))
    table = result.table()
    if table:
        paths.append(
            save_figure(figures.plot_judgements(table, result.class_names), out / "judged.png")
        )
        header = ["source", "n", "mean_top_probability", "classes_covered", "frechet_distance"]
        paths.append(
            write_csv(out / "judged.csv", header, [[row[h] for h in header] for row in table])
        )
    paths.insert(0, write_json(out / "generation.json", {"judged": table, **result.provenance}))
    return paths
