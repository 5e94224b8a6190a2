"""Opening a run checks every file once: a damaged or tampered file is one RunError naming it
(exit 2 on the command line), never garbage predictions and never code run on load. Training
that diverges anywhere stops before it is committed, and JSON outputs are strict."""

import json
import pickle
import shutil
import warnings
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mapscope.cnn.train import TrainConfig, train
from mapscope.errors import RunError, TrainingDiverged
from mapscope.io import read_json, write_json
from mapscope.runs import Run


@pytest.fixture(scope="module")
def tiny_run(real_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("files") / "run"
    train(
        run,
        TrainConfig(epochs=1, max_train=128, max_test=500, schedule="none"),
        data_root=real_data,
    )
    return run


@pytest.fixture()
def copy(tiny_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target)
    return target


def rewrite_npz(path, **changes):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def rewrite_weights(path, change):
    state = load_file(str(path))
    name = "layers.Conv2D_1.inner.weight"
    state[name] = change(state[name])
    save_file(state, str(path))


def test_an_intact_run_opens(copy, real_data):
    run = Run.open(copy)
    assert run.predictor().predict(run.bundle(real_data), "test", [0]).shape == (1,)


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda r: rewrite_npz(r / "split.npz", test=np.array([-1, 2, 3])), "negative index"),
        (lambda r: rewrite_npz(r / "split.npz", test=np.array([0, 1, 2])), "appears twice"),
        (lambda r: rewrite_npz(r / "split.npz", test=np.array([1.5, 2.5])), "int array"),
        (lambda r: rewrite_npz(r / "scaler.npz", scale=np.zeros(784, np.float32)), "> 0"),
        (lambda r: rewrite_npz(r / "scaler.npz", mean=np.full(784, np.nan)), "NaN"),
        (
            lambda r: (r / "split.npz").write_bytes((r / "split.npz").read_bytes()[:200]),
            "truncated",
        ),
        (lambda r: (r / "scaler.npz").write_bytes(b""), "truncated"),
        (
            lambda r: rewrite_weights(r / "epochs/0001/model.safetensors", lambda w: w.int()),
            "torch.int32",
        ),
        (
            lambda r: rewrite_weights(
                r / "epochs/0001/model.safetensors", lambda w: w.fill_(float("nan"))
            ),
            "NaN",
        ),
        (
            lambda r: (r / "epochs/0001/history.json").write_text('[{"epoch": 1, "loss": NaN}]'),
            "history",
        ),
        (lambda r: (r / "epochs/0001/history.json").write_text("[]"), "holds 0 epochs"),
        (lambda r: (r / "epoch.json").write_text('{"epoch": "../../etc"}'), "whole number"),
        (lambda r: (r / "epoch.json").write_text('{"epoch": 7}'), "missing"),
        (
            lambda r: torch.save({"step": 1}, r / "epochs/0001/checkpoint.pt"),
            "optimizer is missing",
        ),
        (
            lambda r: (r / "config.json").write_text(
                json.dumps({**read_json(r / "config.json"), "kind": "svm"})
            ),
            "unknown run kind",
        ),
    ],
)
def test_a_damaged_file_is_named_when_the_run_is_opened(copy, damage, says, real_data):
    damage(copy)
    with pytest.raises(RunError, match=says) as error:
        Run.open(copy).bundle(real_data)
    assert str(copy) in str(error.value)


def test_a_split_beyond_the_dataset_is_refused(copy, real_data):
    rewrite_npz(copy / "split.npz", test=np.array([69999, 70000]))
    with pytest.raises(RunError, match="beyond the 70000 samples"):
        Run.open(copy).bundle(real_data)


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('/tmp/mapscope-pwned').touch()",))


def test_a_malicious_checkpoint_never_runs_and_torch_advice_never_shows(copy, tmp_path):
    (copy / "epochs/0001/checkpoint.pt").write_bytes(pickle.dumps({"optimizer": Boom()}))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(RunError) as error:
        warnings.simplefilter("always")
        Run.open(copy)
    assert not caught, "torch's warnings reach the user"
    assert "weights_only" not in str(error.value) and "checkpoint" in str(error.value)
    assert not (tmp_path / "mapscope-pwned").exists()
    from pathlib import Path

    assert not Path("/tmp/mapscope-pwned").exists()


def test_a_pickled_npz_is_refused(copy):
    np.savez(copy / "split.npz", train=np.array([Boom()], dtype=object), test=np.arange(3))
    with pytest.raises(RunError, match="pickled objects"):
        Run.open(copy)


def test_a_text_file_in_place_of_an_npz_is_not_called_pickled(copy):
    """numpy reads what is neither an npz nor an npy as a pickle; the error says what it is."""
    (copy / "split.npz").write_text("train,test\n1,2\n")
    with pytest.raises(RunError, match=r"split\.npz: not a readable .*\(truncated or not an npz\)"):
        Run.open(copy)


def test_a_spec_with_many_problems_lists_them_all(copy):
    config = read_json(copy / "config.json")
    config["net"]["layers"][0]["name"] = "forward"
    config["net"]["layers"][1]["kind"] = "median"
    config["net"]["l2"] = "a lot"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError) as error:
        Run.open(copy)
    message = str(error.value)
    assert "l2 must be a finite number" in message  # the first problem stops the type checks
    config["net"]["l2"] = 0.0
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError) as error:
        Run.open(copy)
    assert "'forward'" in str(error.value) and "'median'" in str(error.value)


def test_divergence_at_the_last_step_stops_the_run(real_data, tmp_path):
    """One huge SGD step over the whole training set: the loss of that step is still finite,
    only the weights and the validation loss show the divergence."""
    config = TrainConfig(
        epochs=1, max_train=512, batch_size=512, optimizer="sgd", lr=1e30, schedule="none"
    )
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(tmp_path / "d", config, data_root=real_data)
    assert not (tmp_path / "d").exists()


def test_json_outputs_are_strict(tmp_path):
    path = write_json(tmp_path / "m.json", {"loss": float("nan"), "rows": [1.0, float("inf")]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "loss": None,
        "rows": [1.0, None],
        "non_finite": {"loss": "nan", "rows[1]": "inf"},
    }
    (tmp_path / "bad.json").write_text('{"loss": NaN}')
    with pytest.raises(ValueError, match="NaN is not a JSON number"):
        read_json(tmp_path / "bad.json")


def test_a_broken_zip_member_is_named(copy):
    with zipfile.ZipFile(copy / "split.npz", "w") as archive:
        archive.writestr("train.npy", b"not an array")
    with pytest.raises(RunError, match="split.npz"):
        Run.open(copy)
