"""One way to ask any run folder for predictions, whatever kind of model it holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mapscope.data.bundle import DataBundle
from mapscope.errors import RunError
from mapscope.runs import read_config

Predictor = Callable[[DataBundle, str], np.ndarray]


def load_predictor(run_dir: str | Path) -> Predictor:
    """Return ``predict(bundle, part) -> predicted class indices`` for the run's model."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    kind = config.get("kind")
    if kind == "cnn":
        from mapscope.cnn.checkpoint import load_model
        from mapscope.cnn.predict import predict_proba

        net = load_model(run_dir)
        return lambda bundle, part: predict_proba(net, bundle.inputs(part, layout="nchw")).argmax(1)
    if kind == "mlp":
        from mapscope.mlp.network import MLP

        spec = config["model"]
        model = MLP(tuple(spec["layers"]), spec["activation"], spec["loss"]).load_parameters(
            run_dir / "model.npz"
        )
        features = None
        if (run_dir / "cluster_features.npz").exists():
            from mapscope.cluster.features import ClusterDistances

            features = ClusterDistances.load(run_dir / "cluster_features.npz")

        def predict_mlp(bundle: DataBundle, part: str) -> np.ndarray:
            x = bundle.inputs(part)
            return model.predict(features.transform(x) if features else x)

        return predict_mlp
    if kind == "kmeans":
        from mapscope.cluster.kmeans_classifier import KMeansClassifier

        model = KMeansClassifier.load(run_dir / "model.npz")
        return lambda bundle, part: model.predict(bundle.inputs(part))
    raise RunError(f"{run_dir}: unknown run kind {kind!r}; expected cnn, mlp or kmeans.")
