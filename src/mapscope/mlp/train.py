"""Mini-batch gradient descent with momentum, learning-rate decrease and L1/L2 for the MLP.

One loop, visible in one screen: reshuffle each epoch, step through mini-batches, record the
batch history, evaluate train and test accuracy per epoch, save the run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mapscope.checks import Problems
from mapscope.data.bundle import DataBundle
from mapscope.data.datasets import DATASETS as DATASET_NAMES
from mapscope.data.features import ClusterDistances
from mapscope.data.prepare import SCALINGS, one_hot
from mapscope.errors import ConfigError, TrainingDiverged
from mapscope.history import epoch_record, total_seconds
from mapscope.mlp import saved
from mapscope.mlp.network import HIDDEN, LOSSES, MLP, check_mlp_size
from mapscope.runs.folder import writing

# measured with the default network: pixels to [0, 1] beat per-pixel standardisation (which
# overfits this small net) on MNIST; WIFI's signal strengths (-100..0 dBm) divided by 255 leave
# the net at 45.6 % after 60 epochs, standardised 97.8 %
DEFAULT_SCALING = {"mnist": "unit", "fashion-mnist": "unit", "wifi": "standard"}


@dataclass(frozen=True)
class MLPConfig:
    dataset: str = "mnist"
    layers: tuple[int, ...] | None = None  # None: 784,70,30,10 adapted to the dataset
    activation: str = "sigmoid"
    loss: str = "logloss"
    batch_size: int = 500
    epochs: int = 60
    max_batches: int | None = None
    lr: float = 1.5e-3
    decrease: float = 0.02
    momentum: float = 0.9
    l2: float = 0.1
    l1: float = 0.0
    init_scale: float = 1.0
    seed: int = 0
    resplit: bool = False
    # None: the dataset's own (``DEFAULT_SCALING``)
    scaling: str | None = None
    cluster_features: int | None = None  # K: train on distances to K MiniBatchKMeans centroids
    max_train: int | None = None  # train on the first N training samples (quick experiments)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based): lr / (1 + decrease * epoch)."""
        return self.lr / (1 + self.decrease * epoch)

    def validate(self) -> MLPConfig:
        """Every field against its allowed values; all problems in one ConfigError. Returns the
        config with the dataset's defaults filled in."""
        problems = Problems()
        problems.choice("dataset", self.dataset, DATASET_NAMES)
        problems.choice("activation", self.activation, HIDDEN)
        problems.choice("loss", self.loss, LOSSES)
        if self.scaling is not None:
            problems.choice("scaling", self.scaling, SCALINGS)
        for name in ("batch_size", "epochs"):
            problems.at_least(name, getattr(self, name), 1)
        for name in ("max_batches", "max_train", "cluster_features"):
            problems.at_least(name, getattr(self, name), 1, optional=True)
        if self.layers is not None and (len(self.layers) < 2 or any(n < 1 for n in self.layers)):
            problems.add(f"layers must be two or more sizes >= 1, got {self.layers}")
        elif self.layers is not None:
            check_mlp_size(self.layers, "layers")
        for name in ("lr", "init_scale"):
            problems.finite(name, getattr(self, name), strict=True)
        for name in ("l1", "l2", "decrease"):
            problems.finite(name, getattr(self, name))
        problems.fraction("momentum", self.momentum)
        problems.seed("seed", self.seed)
        problems.raise_any()
        return replace(self, scaling=self.scaling_name()) if self.scaling is None else self

    def scaling_name(self) -> str:
        """The scaling, or the dataset's own when none is given."""
        return self.scaling or DEFAULT_SCALING.get(self.dataset, "unit")


def resolve_layers(config: MLPConfig, n_features: int, n_classes: int) -> tuple[int, ...]:
    layers = config.layers or (n_features, 70, 30, n_classes)
    if layers[0] != n_features or layers[-1] != n_classes:
        raise ConfigError(
            f"layers {','.join(map(str, layers))} do not fit the data: the first size must be "
            f"{n_features} (input features) and the last {n_classes} (classes)."
        )
    return tuple(layers)


@dataclass
class Velocity:
    """Momentum buffers, one per weight matrix and bias vector."""

    w: list[np.ndarray]
    b: list[np.ndarray]

    @classmethod
    def zeros(cls, model: MLP) -> Velocity:
        return cls(
            [np.zeros_like(w) for w in model.weights_], [np.zeros_like(b) for b in model.biases_]
        )


def train_epoch(
    model: MLP,
    velocity: Velocity,
    x: np.ndarray,
    targets: np.ndarray,
    config: MLPConfig,
    epoch: int,
    rng: np.random.Generator,
) -> tuple[float, list[dict]]:
    """One pass of mini-batch gradient descent with momentum; (summed cost, per-batch rows)."""
    lr = config.lr_at(epoch)
    order = rng.permutation(len(x))
    n_batches = -(-len(x) // config.batch_size)
    if config.max_batches:
        n_batches = min(n_batches, config.max_batches)
    epoch_loss, rows = 0.0, []
    for b in range(n_batches):
        idx = order[b * config.batch_size : (b + 1) * config.batch_size]
        result, grads_w, grads_b = model.gradients(x[idx], targets[idx], config.l1, config.l2)
        if not np.isfinite(result.cost):
            raise TrainingDiverged(
                f"cost became {result.cost} in epoch {epoch + 1}; lower --lr (now {config.lr})."
            )
        for i in range(len(model.weights_)):
            velocity.w[i] = config.momentum * velocity.w[i] - lr * grads_w[i]
            velocity.b[i] = config.momentum * velocity.b[i] - lr * grads_b[i]
            model.weights_[i] += velocity.w[i]
            model.biases_[i] += velocity.b[i]
        epoch_loss += result.cost
        rows.append(
            {
                "epoch": epoch + 1,
                "cost": result.cost,
                "error": result.error,
                "reg_ratio": result.regularization / result.cost if result.cost else 0.0,
            }
        )
    return epoch_loss, rows


def fit(
    model: MLP,
    config: MLPConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
) -> tuple[list[dict], list[dict]]:
    """Train ``model`` in place; returns the history (per-epoch records of
    ``mapscope.history``, per-batch records apart)."""
    rng = np.random.default_rng(config.seed)
    targets, test_targets = one_hot(y_train, n_classes), one_hot(y_test, n_classes)
    velocity = Velocity.zeros(model)
    epochs, batches = [], []
    for epoch in tqdm(range(config.epochs), desc="epochs", disable=None, unit="epoch"):
        began = time.perf_counter()
        cost, rows = train_epoch(model, velocity, x_train, targets, config, epoch, rng)
        if not all(np.isfinite(w).all() for w in (*model.weights_, *model.biases_)):
            raise TrainingDiverged(
                f"the weights became non-finite in epoch {epoch + 1}; nothing was written. "
                f"Lower --lr (now {config.lr})."
            )
        seconds = time.perf_counter() - began
        seen = min(len(x_train), len(rows) * config.batch_size)
        test_outputs = model.predict_proba(x_test)
        batches += rows
        epochs.append(
            epoch_record(
                epoch + 1,
                loss=cost / seen,
                accuracy=float((model.predict(x_train) == y_train).mean()),
                val_loss=model.data_loss(test_outputs, test_targets) / len(x_test),
                val_accuracy=float((test_outputs.argmax(1) == y_test).mean()),
                lr=config.lr_at(epoch),
                seconds=seconds,
            )
        )
    return epochs, batches


def train(
    out: str | Path,
    config: MLPConfig = MLPConfig(),
    data_root: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train an MLP into the run folder ``out``, which appears only when the run is complete;
    an existing run there is replaced only with ``overwrite``."""
    config = config.validate()
    with writing(out, overwrite) as writer:
        return _train(config, data_root, writer.folder)


def _train(config: MLPConfig, data_root: str | Path | None, folder: Path) -> dict[str, Any]:
    """Load the data, fit, and write the run into ``folder`` (the writer's staging folder)."""
    mode = "resplit" if config.resplit else "canonical"
    bundle = DataBundle.create(
        config.dataset, config.scaling_name(), mode, config.seed, data_root=data_root
    )
    subset = bundle.first("train", config.max_train)
    x_train, x_test = bundle.inputs("train", subset), bundle.inputs("test")
    y_train, y_test = bundle.labels("train", subset), bundle.labels("test")
    l2, features = config.l2, None
    if config.cluster_features:
        features = ClusterDistances(config.cluster_features, seed=config.seed).fit(x_train)
        x_train, x_test = features.transform(x_train), features.transform(x_test)
        l2 = config.l2 * config.cluster_features / 784  # the rule of the original study
    layers = resolve_layers(config, x_train.shape[1], bundle.dataset.n_classes)
    model = MLP(layers, config.activation, config.loss, config.init_scale, config.seed).initialize()
    effective = MLPConfig(**{**asdict(config), "layers": layers, "l2": l2})
    history, batches = fit(
        model, effective, x_train, y_train, x_test, y_test, bundle.dataset.n_classes
    )
    last = history[-1]
    metrics = {
        "test_accuracy": last["val_accuracy"],
        "train_accuracy": last["accuracy"],
        "best_test_accuracy": max(h["val_accuracy"] for h in history),
        "test_loss": last["val_loss"],
        "train_loss": last["loss"],
        "train_seconds": total_seconds(history),
        "epochs": config.epochs,
        "seed": config.seed,
        "n_train": len(x_train),
        "epochs_to_converge": epochs_to_converge(history),
        "seconds_to_95": seconds_to_accuracy(history, 0.95),
        "seconds_to_97": seconds_to_accuracy(history, 0.97),
        "data_checksums": bundle.dataset.checksums,
    }
    saved.write_run(folder, config, bundle, model, features, l2, history, batches, metrics)
    return metrics


def seconds_to_accuracy(history: list[dict], target: float) -> float | None:
    """Training seconds until the test accuracy first reached ``target`` (None if never)."""
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["val_accuracy"] >= target:
            return elapsed
    return None


def epochs_to_converge(history: list[dict], tolerance: float = 0.002) -> int:
    """First epoch whose test accuracy is within ``tolerance`` of the best one reached."""
    accs = [h["val_accuracy"] for h in history]
    best = max(accs)
    return next(i + 1 for i, a in enumerate(accs) if a >= best - tolerance)
