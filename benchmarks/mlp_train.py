"""mapscope's numpy MLP against scikit-learn's MLPClassifier with the same layers, in one run.

Prints seconds per epoch, best test accuracy and time to 96 % / 97.5 % on MNIST.
Usage: MAPSCOPE_DATA=... python benchmarks/mlp_train.py [--epochs 80]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, str(Path(__file__).parent))
from _common import data_root, table, time_to  # noqa: E402

from mapscope.data.bundle import DataBundle  # noqa: E402
from mapscope.io import read_json  # noqa: E402
from mapscope.mlp.train import MLPConfig, train  # noqa: E402


def sklearn_reference(epochs: int) -> list[tuple[float, float]]:
    bundle = DataBundle.create("mnist", "standard", data_root=data_root())
    x, y = bundle.inputs("train"), bundle.labels("train")
    xt, yt = bundle.inputs("test"), bundle.labels("test")
    model = MLPClassifier((70, 30), activation="logistic", batch_size=500, random_state=0)
    history, total = [], 0.0
    classes = np.arange(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            began = time.perf_counter()
            model.partial_fit(x, y, classes=classes)
            total += time.perf_counter() - began
            history.append((total, float((model.predict(xt) == yt).mean())))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=MLPConfig.epochs)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        train(Path(tmp) / "run", MLPConfig(epochs=args.epochs), data_root())
        epochs = read_json(Path(tmp) / "run/history.json")
    elapsed = np.cumsum([h["seconds"] for h in epochs])
    ours = [(t, h["val_accuracy"]) for t, h in zip(elapsed, epochs, strict=True)]
    ref = sklearn_reference(args.epochs)
    rows = []
    for name, history in (
        ("mapscope MLP (numpy float32)", ours),
        ("scikit-learn MLPClassifier", ref),
    ):
        rows.append(
            [
                name,
                history[-1][0] / len(history),
                max(a for _, a in history),
                history[-1][1],
                time_to(history, 0.96),
                time_to(history, 0.975),
                history[-1][0],
            ]
        )
    print(f"\nMNIST, 784-70-30-10 logistic, batch 500, {args.epochs} epochs (training time only)")
    print(
        table(
            ["model", "s/epoch", "best acc", "final acc", "s to 96%", "s to 97.5%", "total s"], rows
        )
    )


if __name__ == "__main__":
    main()
