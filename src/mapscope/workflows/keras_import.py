"""`mapscope import keras` as a Python function: a Keras model file becomes a CNN run folder.

The run is an ordinary CNN run (spec in ``config.json``, safetensors weights, split, scaler,
one committed "epoch" holding the imported weights and their test scores), so every command
that reads CNN runs reads it: ``cnn summary``, ``evaluate``, ``activations``, ``oip``, the
atlas, ``match``. ``config.json`` says where it came from under ``imported``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapscope.cnn import saved
from mapscope.cnn.build import Network
from mapscope.cnn.keras import convert, read_keras
from mapscope.cnn.predict import predict_proba
from mapscope.cnn.saved import IMAGE_SHAPE
from mapscope.cnn.train import TrainConfig
from mapscope.data.bundle import DataBundle
from mapscope.data.cache import sha256_file
from mapscope.errors import ConfigError
from mapscope.history import epoch_record
from mapscope.runs.folder import writing


def import_keras(
    model_file: str | Path,
    out: str | Path,
    dataset: str = "mnist",
    scaling: str = "standard",
    resplit: bool = False,
    seed: int = 0,
    data_root: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert ``model_file`` (.keras or .h5) into a CNN run at ``out`` and score it on the
    test split. ``scaling`` must be what the model was trained with: ``standard`` (the
    original experiments: StandardScaler fitted on the training images), ``unit`` (pixels / 255),
    ``image`` or ``none``."""
    keras_model = read_keras(model_file)
    spec, state = convert(keras_model)
    if spec.input_shape != IMAGE_SHAPE:
        raise ConfigError(
            f"{model_file}: the model reads {spec.input_shape} (channels, height, width); CNN "
            f"runs hold {IMAGE_SHAPE} images (mnist, fashion-mnist). Inspect other shapes "
            "with --module."
        )
    net = Network(spec)
    net.load_state_dict(state)
    # channels-last, as a run's network is loaded (torch's stubs lack the keyword)
    net.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    config = TrainConfig(dataset=dataset, scaling=scaling, resplit=resplit, seed=seed).validate()
    mode = "resplit" if resplit else "canonical"
    bundle = DataBundle.create(dataset, scaling, mode, seed, data_root=data_root)
    if spec.n_classes != bundle.dataset.n_classes:
        raise ConfigError(
            f"{model_file}: the model has {spec.n_classes} outputs but {dataset} has "
            f"{bundle.dataset.n_classes} classes."
        )
    probabilities = predict_proba(net, bundle.inputs("test", layout="nchw"))
    labels = bundle.labels("test")
    accuracy = float((probabilities.argmax(1) == labels).mean())
    loss = float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1)).mean())
    digest = sha256_file(Path(model_file))
    history = [epoch_record(1, None, None, loss, accuracy, None, 0.0)]  # scored, not trained
    metrics = {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "imported_from": str(model_file),
        "data_checksums": bundle.dataset.checksums,
    }
    checkpoint = {  # no optimizer state: the run holds Keras' weights, not a training state
        "optimizer": {},
        "generator": torch.Generator().manual_seed(seed).get_state(),
        "step": 0,
        "planned_epochs": 1,
    }
    with writing(out, overwrite) as writer:
        train_table = {**asdict(config), "epochs": 1}
        imported = {
            "format": "keras",
            "file": str(model_file),
            "sha256": digest,
            "keras_version": keras_model.keras_version,
        }
        saved.start(writer.folder, spec, train_table, bundle, net, {"imported": imported})
        saved.save_epoch(writer.folder, net, checkpoint, history, metrics)
    return {**metrics, "layers": spec.layer_names, "out": str(Path(out))}
