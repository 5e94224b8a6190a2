"""Mini-batch gradient descent with momentum, learning-rate decrease and L1/L2 for the MLP.

One loop, visible in one screen: reshuffle each epoch, step through mini-batches, record the
batch history, evaluate train and test accuracy per epoch, save the run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mapscope.data.bundle import DataBundle
from mapscope.data.prepare import one_hot
from mapscope.errors import ConfigError, TrainingDiverged
from mapscope.io import write_json
from mapscope.mlp.network import MLP
from mapscope.report.curves import plot_mlp_history
from mapscope.report.figures import save_figure
from mapscope.runs import create_run, write_metrics


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
    scaling: str = "unit"  # measured: per-pixel standardisation overfits this small net
    cluster_features: int | None = None  # K: train on distances to K MiniBatchKMeans centroids
    max_train: int | None = None  # train on the first N training samples (quick experiments)

    def validate(self) -> MLPConfig:
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")
        if self.l1 < 0 or self.l2 < 0 or self.decrease < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("l1, l2 and decrease must be >= 0 and momentum in [0, 1).")
        return self


def resolve_layers(config: MLPConfig, n_features: int, n_classes: int) -> tuple[int, ...]:
    layers = config.layers or (n_features, 70, 30, n_classes)
    if layers[0] != n_features or layers[-1] != n_classes:
        raise ConfigError(
            f"layers {','.join(map(str, layers))} do not fit the data: the first size must be "
            f"{n_features} (input features) and the last {n_classes} (classes)."
        )
    return tuple(layers)


def fit(
    model: MLP,
    config: MLPConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
) -> tuple[dict[str, list], float]:
    """Train ``model`` in place; returns (history, training seconds)."""
    rng = np.random.default_rng(config.seed)
    targets = one_hot(y_train, n_classes)
    velocity_w = [np.zeros_like(w) for w in model.weights_]
    velocity_b = [np.zeros_like(b) for b in model.biases_]
    history: dict[str, list] = {"batch": [], "epoch": []}
    n_batches = -(-len(x_train) // config.batch_size)
    if config.max_batches:
        n_batches = min(n_batches, config.max_batches)
    seconds = 0.0
    for epoch in tqdm(range(config.epochs), desc="epochs", disable=None, unit="epoch"):
        began = time.perf_counter()
        lr = config.lr / (1 + config.decrease * epoch)
        order = rng.permutation(len(x_train))
        epoch_loss = 0.0
        for b in range(n_batches):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            result, grads_w, grads_b = model.gradients(
                x_train[idx], targets[idx], config.l1, config.l2
            )
            if not np.isfinite(result.cost):
                raise TrainingDiverged(
                    f"cost became {result.cost} in epoch {epoch + 1}; lower --lr (now {config.lr})."
                )
            for i in range(len(model.weights_)):
                velocity_w[i] = config.momentum * velocity_w[i] - lr * grads_w[i]
                velocity_b[i] = config.momentum * velocity_b[i] - lr * grads_b[i]
                model.weights_[i] += velocity_w[i]
                model.biases_[i] += velocity_b[i]
            epoch_loss += result.cost
            history["batch"].append(
                {
                    "epoch": epoch + 1,
                    "cost": result.cost,
                    "error": result.error,
                    "reg_ratio": result.regularization / result.cost if result.cost else 0.0,
                }
            )
        seconds += time.perf_counter() - began
        history["epoch"].append(
            {
                "epoch": epoch + 1,
                "loss": epoch_loss,
                "lr": lr,
                "seconds": seconds,
                "train_accuracy": float((model.predict(x_train) == y_train).mean()),
                "test_accuracy": float((model.predict(x_test) == y_test).mean()),
            }
        )
    return history, seconds


def train(
    out: str | Path, config: MLPConfig = MLPConfig(), data_root: str | Path | None = None
) -> dict[str, Any]:
    """Train an MLP into the run folder ``out``."""
    config.validate()
    mode = "resplit" if config.resplit else "canonical"
    bundle = DataBundle.create(
        config.dataset, config.scaling, mode, config.seed, data_root=data_root
    )
    subset = bundle.train_positions(config.max_train)
    x_train, x_test = bundle.inputs("train", subset), bundle.inputs("test")
    y_train, y_test = bundle.labels("train", subset), bundle.labels("test")
    l2, features = config.l2, None
    if config.cluster_features:
        from mapscope.cluster.features import ClusterDistances

        features = ClusterDistances(config.cluster_features, seed=config.seed).fit(x_train)
        x_train, x_test = features.transform(x_train), features.transform(x_test)
        l2 = config.l2 * config.cluster_features / 784  # the rule of the original study
    layers = resolve_layers(config, x_train.shape[1], bundle.dataset.n_classes)
    model = MLP(layers, config.activation, config.loss, config.init_scale, config.seed).initialize()
    run = create_run(
        out,
        {
            "kind": "mlp",
            "train": asdict(config),
            "data": bundle.config(),
            "model": {"layers": list(layers), "activation": config.activation, "loss": config.loss},
            "effective_l2": l2,
        },
    )
    bundle.save(run)
    if features is not None:
        features.save(run / "cluster_features.npz")
    effective = MLPConfig(**{**asdict(config), "layers": layers, "l2": l2})
    history, seconds = fit(
        model, effective, x_train, y_train, x_test, y_test, bundle.dataset.n_classes
    )
    model.save(run / "model.npz")
    write_json(run / "history.json", history)
    save_figure(plot_mlp_history(history), run / "curves.png")
    last = history["epoch"][-1]
    metrics = {
        "test_accuracy": last["test_accuracy"],
        "train_accuracy": last["train_accuracy"],
        "best_test_accuracy": max(h["test_accuracy"] for h in history["epoch"]),
        "train_seconds": seconds,
        "epochs": config.epochs,
        "seed": config.seed,
        "epochs_to_converge": epochs_to_converge(history),
        "seconds_to_95": seconds_to_accuracy(history, 0.95),
        "seconds_to_97": seconds_to_accuracy(history, 0.97),
        "data_checksums": bundle.dataset.checksums,
    }
    write_metrics(run, metrics)
    return metrics


def seconds_to_accuracy(history: dict[str, list], target: float) -> float | None:
    """Training seconds until the test accuracy first reached ``target`` (None if never)."""
    return next((h["seconds"] for h in history["epoch"] if h["test_accuracy"] >= target), None)


def epochs_to_converge(history: dict[str, list], tolerance: float = 0.002) -> int:
    """First epoch whose test accuracy is within ``tolerance`` of the best one reached."""
    accs = [h["test_accuracy"] for h in history["epoch"]]
    best = max(accs)
    return next(i + 1 for i, a in enumerate(accs) if a >= best - tolerance)
