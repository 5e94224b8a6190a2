import json
from pathlib import Path

import numpy as np
import pytest

from mapscope.errors import ConfigError, RunError
from mapscope.history import EPOCH_KEYS
from mapscope.io import read_json
from mapscope.mlp.network import MLP


@pytest.mark.parametrize(
    "activation,loss",
    [("sigmoid", "logloss"), ("tanh", "crossentropy"), ("relu", "mse"), ("sigmoid", "mse")],
)
def test_numerical_gradient_check(activation, loss):
    rng = np.random.default_rng(0)
    model = MLP((5, 4, 3), activation, loss, seed=1).initialize()
    model.weights_ = [w.astype(np.float64) for w in model.weights_]
    model.biases_ = [b.astype(np.float64) + 0.1 for b in model.biases_]
    x = rng.normal(size=(6, 5))
    target = np.eye(3)[rng.integers(0, 3, 6)]
    l1, l2 = 0.01, 0.05
    _, grads_w, grads_b = model.gradients(x, target, l1, l2)

    def cost():
        return model.data_loss(model.forward(x)[-1], target) + model.regularization(l1, l2)

    eps = 1e-6
    for params, grads in ((model.weights_, grads_w), (model.biases_, grads_b)):
        for p, g in zip(params, grads, strict=True):
            for idx in [(0,) * p.ndim, tuple(s - 1 for s in p.shape)]:
                old = p[idx]
                p[idx] = old + eps
                up = cost()
                p[idx] = old - eps
                down = cost()
                p[idx] = old
                assert g[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-6)


def test_forward_shapes_and_float32():
    model = MLP((784, 70, 30, 10)).initialize()
    acts = model.forward(np.zeros((4, 784), np.float32))
    assert [a.shape for a in acts] == [(4, 784), (4, 70), (4, 30), (4, 10)]
    assert all(a.dtype == np.float32 for a in acts)
    bound = 1 / np.sqrt(784)
    assert np.abs(model.weights_[0]).max() <= bound


def test_invalid_parameters_are_named():
    with pytest.raises(ConfigError, match="activation 'swish' unknown"):
        MLP(activation="swish")
    with pytest.raises(ConfigError, match=r"\(N, 784\)"):
        MLP().initialize().predict(np.zeros((2, 10), np.float32))


def test_save_load_round_trip(tmp_path):
    model = MLP((6, 5, 2), seed=3).initialize()
    model.save(tmp_path / "m.npz")
    back = MLP((6, 5, 2)).load_parameters(tmp_path / "m.npz")
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))
    with pytest.raises(RunError, match="do not fit layers"):
        MLP((6, 4, 2)).load_parameters(tmp_path / "m.npz")


def test_mlp_run_learns_real_mnist(mlp_run):
    metrics = read_json(mlp_run / "metrics.json")
    history = read_json(mlp_run / "history.json")
    batches = read_json(mlp_run / "batches.json")
    assert metrics["test_accuracy"] > 0.9  # 8 epochs on 30000 images
    assert len(batches) == 8 * 60 and len(history) == 8
    assert [set(row) for row in history] == [set(EPOCH_KEYS)] * 8  # the one history schema
    assert history[-1]["val_accuracy"] == metrics["test_accuracy"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert {"cost", "error", "reg_ratio"} <= set(batches[0])
    assert batches[-1]["cost"] < batches[0]["cost"]
    assert 0 < batches[-1]["reg_ratio"] < 1
    assert (mlp_run / "curves.png").stat().st_size > 10000


def test_same_seed_same_mlp(real_data, tmp_path):
    from mapscope.mlp.train import MLPConfig, train

    cfg = MLPConfig(epochs=1, max_train=2000)
    a = train(tmp_path / "a", cfg, real_data)
    b = train(tmp_path / "b", cfg, real_data)
    assert a["test_accuracy"] == b["test_accuracy"]
    np.testing.assert_array_equal(
        np.load(tmp_path / "a/model.npz")["w0"], np.load(tmp_path / "b/model.npz")["w0"]
    )


def test_wifi_mlp_adapts_layers(real_data, tmp_path):
    from mapscope.mlp.train import MLPConfig, train

    metrics = train(
        tmp_path / "w",
        MLPConfig(dataset="wifi", epochs=60, batch_size=50, scaling="standard", lr=1e-2, l2=0.01),
        real_data,
    )
    assert read_json(tmp_path / "w/config.json")["model"]["layers"] == [7, 70, 30, 4]
    assert metrics["test_accuracy"] > 0.9


def test_cli_train_and_sweep_share_options(cli, tmp_path):
    import json

    def mlp(*args):
        return cli("mlp", *args)

    done = mlp(
        "train",
        "--epochs",
        "2",
        "--max-train",
        "3000",
        "--lr",
        "5e-4",
        "--out",
        str(tmp_path / "t"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "t/config.json").read_text())["train"]["max_train"] == 3000
    done = mlp(
        "sweep",
        "--param",
        "l2",
        "--values",
        "0.01,0.8",
        "--epochs",
        "2",
        "--max-train",
        "3000",
        "--out",
        str(tmp_path / "s"),
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "s/sweep.json").read_text())["rows"]
    assert [r["l2"] for r in rows] == [0.01, 0.8]
    assert (tmp_path / "s/sweep.png").exists() and (tmp_path / "s/l2=0.8/model.npz").exists()
    bad = mlp("train", "--activation", "swish", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "activation 'swish' unknown" in bad.stderr


def test_time_to_accuracy_is_recorded(mlp_run):
    metrics = read_json(mlp_run / "metrics.json")
    epochs = read_json(mlp_run / "history.json")
    elapsed = np.cumsum([h["seconds"] for h in epochs])
    first = next((k for k, h in enumerate(epochs) if h["val_accuracy"] >= 0.95), None)
    assert metrics["seconds_to_95"] == (
        pytest.approx(elapsed[first]) if first is not None else None
    )
    assert metrics["seconds_to_97"] is None or metrics["seconds_to_97"] >= (
        metrics["seconds_to_95"] or 0
    )


def test_an_mlp_run_with_the_old_history_shape_is_still_read(mlp_run, tmp_path):
    """Runs written before the one history schema kept batches and epochs in one file, with
    train_/test_accuracy, the epoch's summed cost and cumulative seconds."""
    import shutil

    from mapscope.mlp.saved import read_history
    from mapscope.runs import Run

    run = Path(shutil.copytree(mlp_run, tmp_path / "old"))
    history, batches = read_json(run / "history.json"), read_json(run / "batches.json")
    elapsed = np.cumsum([h["seconds"] for h in history])
    old_epochs = [
        {
            "epoch": h["epoch"],
            "loss": h["loss"] * 60,  # 60 batches of 500 per epoch, costs summed
            "lr": h["lr"],
            "seconds": float(t),
            "train_accuracy": h["accuracy"],
            "test_accuracy": h["val_accuracy"],
        }
        for h, t in zip(history, elapsed, strict=True)
    ]
    (run / "batches.json").unlink()
    (run / "history.json").write_text(json.dumps({"batch": batches, "epoch": old_epochs}))
    epochs, old_batches = read_history(Run.open(run).path)
    assert old_batches == batches
    for new, read in zip(history, epochs, strict=True):
        assert read["val_accuracy"] == new["val_accuracy"] and read["accuracy"] == new["accuracy"]
        assert read["loss"] == pytest.approx(new["loss"])
        assert read["seconds"] == pytest.approx(new["seconds"])
        assert read["val_loss"] is None  # not recorded then
