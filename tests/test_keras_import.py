"""Keras models imported without TensorFlow: built and saved here with the ``keras`` package
(a test-only dependency, on its PyTorch backend), read back by mapscope with h5py alone.

mapscope's predictions must equal Keras' own on 200 real test images to 1e-5, for the Keras 3
``.keras`` zip and the legacy ``.h5`` file alike.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere

import numpy as np
import pytest

from mapscope.cnn.keras import convert, read_keras
from mapscope.errors import ConfigError
from mapscope.runs import Run
from mapscope.workflows.keras_import import import_keras

# on one worker: the Keras network the module's tests import (``original_files``) is fitted once
pytestmark = pytest.mark.xdist_group(name="keras")


def keras_modules():
    """Keras (a dev dependency: pip install -e .[dev]) and its layers, imported when a test
    builds a model: only the worker that runs this module spends the seconds that takes."""
    import keras

    return keras, keras.layers


def original_network():
    """The original experiments' network: Conv 32/64/128 + Dense 100/10, 28x28x1 channels-last."""
    keras, layers = keras_modules()
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu", name="Conv2D_1"),
            layers.MaxPooling2D(2, name="Max_Pool_1"),
            layers.Conv2D(64, 3, activation="relu", name="Conv2D_2"),
            layers.MaxPooling2D(2, name="Max_Pool_2"),
            layers.Conv2D(128, 3, activation="relu", name="Conv2D_3"),
            layers.Flatten(name="Flatten"),
            layers.Dense(100, activation="relu", name="Dense_1"),
            layers.Dense(10, activation="softmax", name="Dense_2"),
        ]
    )


def every_layer_kind(functional: bool = False):
    """Every convertible layer type, with the settings that need care: padding 'same', a pool
    whose stride differs from its size, batch norm on maps and after Flatten, a separate
    activation, and a final Activation('softmax') after a linear Dense."""
    keras, layers = keras_modules()
    chain = [
        layers.Conv2D(8, 5, padding="same", use_bias=False, name="conv_a"),
        layers.BatchNormalization(name="norm_a"),
        layers.Activation("tanh", name="tanh_a"),
        layers.AveragePooling2D(3, strides=2, name="pool_a"),
        layers.Conv2D(12, 3, strides=2, activation="elu", name="conv_b"),
        layers.MaxPooling2D(2, name="pool_b"),
        layers.Dropout(0.3, name="drop"),
        layers.Flatten(name="flat"),
        layers.BatchNormalization(center=False, name="norm_flat"),
        layers.Dense(24, activation="sigmoid", name="hidden"),
        layers.Dense(10, name="scores"),
        layers.Activation("softmax", name="softmax"),
    ]
    if not functional:
        return keras.Sequential([keras.Input((28, 28, 1)), *chain])
    x = inputs = keras.Input((28, 28, 1))
    for layer in chain:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.fixture(scope="module")
def mnist_bundle(real_data):
    from mapscope.data.bundle import DataBundle

    return DataBundle.create("mnist", "standard", data_root=real_data)


def trained(model, bundle, n=2000):
    """A short fit, so that weights and batch-norm statistics are far from their defaults."""
    keras, _ = keras_modules()
    keras.utils.set_random_seed(0)
    x = bundle.inputs("train", np.arange(n), "nhwc")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, bundle.labels("train", np.arange(n)), epochs=1, batch_size=100, verbose=0)
    return model


def saved_both_ways(model, folder, name):
    """(.keras, .h5) files of ``model``."""
    import warnings

    folder.mkdir(parents=True, exist_ok=True)
    modern, legacy = folder / f"{name}.keras", folder / f"{name}.h5"
    model.save(modern)
    with warnings.catch_warnings():  # Keras calls .h5 legacy; reading it is the point here
        warnings.simplefilter("ignore")
        model.save(legacy)
    return modern, legacy


@pytest.fixture(scope="module")
def original_files(mnist_bundle, tmp_path_factory):
    model = trained(original_network(), mnist_bundle)
    expected = model.predict(mnist_bundle.inputs("test", np.arange(200), "nhwc"), verbose=0)
    return saved_both_ways(model, tmp_path_factory.mktemp("keras"), "original"), expected


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_every_layer_kind_gives_keras_predictions(functional, mnist_bundle, tmp_path, real_data):
    model = trained(every_layer_kind(functional), mnist_bundle)
    x = mnist_bundle.inputs("test", np.arange(200), "nhwc")
    expected = model.predict(x, verbose=0)
    for path in saved_both_ways(model, tmp_path, "kinds"):
        result = import_keras(path, tmp_path / f"run_{path.suffix[1:]}", data_root=real_data)
        run = Run.open(result["out"])
        got = run.predictor().predict_proba(run.bundle(real_data), "test", np.arange(200))
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=str(path))
        spec = run.module().spec
        assert spec.layer_names[:4] == ["conv_a", "norm_a", "tanh_a", "pool_a"]
        assert spec.layer_names[-1] == "scores" and spec.layers[-1].activation == "softmax"
        assert spec.layers[3].stride == 2 and spec.layers[3].size == 3


def test_the_original_network_imports_in_both_formats(original_files, tmp_path, real_data):
    (modern, legacy), expected = original_files
    for path in (modern, legacy):
        model = read_keras(path)
        spec, state = convert(model)
        assert spec.layer_names == [
            "Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3", "Flatten",
            "Dense_1", "Dense_2",
        ]  # fmt: skip
        assert tuple(state["layers.Conv2D_1.inner.weight"].shape) == (32, 1, 3, 3)  # OIHW
        run_dir = tmp_path / path.suffix[1:]
        import_keras(path, run_dir, data_root=real_data)
        run = Run.open(run_dir)
        assert run.config["imported"]["format"] == "keras"
        got = run.predictor().predict_proba(run.bundle(real_data), "test", np.arange(200))
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_original_network_is_inspected_from_the_command_line(
    original_files, tmp_path, mapscope
):
    """The README's three commands, then activations and OIPs of the imported run."""
    (modern, _), _ = original_files

    def ok(*args):
        code, out, err = mapscope(*args)
        assert code == 0, err
        return out

    run_dir = tmp_path / "imported"
    assert "test accuracy" in ok("import", "keras", modern, "--out", run_dir)
    summary = ok("cnn", "summary", "--model", run_dir)
    assert "Conv2D_3" in summary and "Total params: 208,982" in summary
    site = tmp_path / "atlas"
    printed = ok(
        "atlas", "--model", run_dir, "--layers", "Conv2D_1,Dense_2", "--oip-steps", "10",
        "--confused", "1", "--methods", "saliency", "--out", site,
    )  # fmt: skip
    assert (site / "index.html").exists() and "index.html" in printed
    mapscope(
        "activations",
        "--model",
        run_dir,
        "--layer",
        "Conv2D_2",
        "--index",
        "0",
        "--out",
        tmp_path / "a.png",
    )
    mapscope(
        "oip",
        "--model",
        run_dir,
        "--layer",
        "Conv2D_3",
        "--maps",
        "0,1",
        "--steps",
        "10",
        "--out",
        tmp_path / "o",
    )
    assert (tmp_path / "a.png").exists() and (tmp_path / "o" / "oips.png").exists()


def test_what_cannot_be_converted_is_named(mnist_bundle, tmp_path, real_data):
    keras, layers = keras_modules()
    dilated = keras.Sequential(
        [keras.Input((28, 28, 1)), layers.Conv2D(4, 3, dilation_rate=2, name="wide"),
         layers.Flatten(), layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    pooled = keras.Sequential(
        [keras.Input((28, 28, 1)), layers.Conv2D(4, 3), layers.GlobalAveragePooling2D(name="gap"),
         layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    per_position = keras.Sequential(
        [keras.Input((28, 28, 1)), layers.Dense(4, name="dense_on_maps"), layers.Flatten(),
         layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    x = inputs = keras.Input((28, 28, 1))
    y = layers.Conv2D(1, 3, padding="same", name="branch")(x)
    x = layers.Add(name="skip")([x, y])
    residual = keras.Model(inputs, layers.Dense(10, activation="softmax")(layers.Flatten()(x)))
    cases = [
        (dilated, "'wide' \\(Conv2D\\): dilated"),
        (pooled, "'gap' \\(GlobalAveragePooling2D\\) cannot be converted; supported layers"),
        (per_position, "'dense_on_maps'.*only dense layers after Flatten"),
        (residual, "only chains of layers convert|'skip' \\(Add\\) cannot be converted"),
    ]
    for k, (model, message) in enumerate(cases):
        for path in saved_both_ways(model, tmp_path, f"bad{k}"):
            with pytest.raises(ConfigError, match=message):
                import_keras(path, tmp_path / f"run{k}", data_root=real_data)
            assert not (tmp_path / f"run{k}").exists()
    (tmp_path / "weights_only.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match="neither a .keras zip nor an HDF5"):
        read_keras(tmp_path / "weights_only.h5")
