"""Every file a user hands us is hostile: each format is read through its schema, every shape is
checked against the machine before anything is allocated, and archives are checked before they
are unpacked. Through the real commands, a damaged file gives one line ``error: ...`` naming
the file and the field, exit code 2, and nothing written.

The table holds the cases users met (each was a traceback or a silent misreading); the fuzzers
mutate a valid file of each format (types swapped, keys dropped, tables as lists, huge and
negative numbers, truncation) and hold every mutation to the same rule: 10 examples each in
every run of the suite, 500 with ``HYPOTHESIS_PROFILE=thorough`` (``MAPSCOPE_FUZZ_EXAMPLES``
sets any number).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import keras_config, keras_weights, mutated, write_h5, write_keras
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapscope.cnn.train import TrainConfig, train
from mapscope.io import read_json

RUN_FILES = {
    "config": "config.json",
    "history": "epochs/0001/history.json",
    "pointer": "epoch.json",
    "checkpoint": "epochs/0001/checkpoint.pt",
}


@pytest.fixture(scope="module")
def intact_run(real_data, tmp_path_factory) -> Path:
    """A one-epoch CNN run on 128 images: every file of it is valid."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    config = TrainConfig(epochs=1, max_train=128, max_test=100, schedule="none", threads=1)
    train(run, config, data_root=real_data)
    return run


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time: 'nothing written'."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(mapscope, root: Path, args: list, says: str = "") -> str:
    """Run the command; it must fail with one ``error:`` line naming what is wrong, exit 2, and
    leave every file under ``root`` as it was."""
    before = snapshot(root)
    code, _, err = mapscope(*args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert says in err, err
    assert snapshot(root) == before, "a refused command wrote files"
    return err


def edit_json(path: Path, change) -> None:
    value = read_json(path)
    change(value)
    path.write_text(json.dumps(value))


def save_one_array(path: Path, array: np.ndarray) -> None:
    """``array`` in np.save's format (one .npy array) under ``path``, whatever its suffix."""
    with open(path, "wb") as handle:
        np.save(handle, array)


def edit_checkpoint(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


# --- the cases users met ----------------------------------------------------------------------


def _flip_byte_inside(path: Path, marker: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(marker)
    data[at] ^= 0x20  # a stored member's content changed: its CRC no longer matches
    path.write_bytes(bytes(data))


def keras_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    """(file, what the error says) of each damaged Keras file seen."""
    bad_crc = write_keras(tmp / "crc.keras")
    _flip_byte_inside(bad_crc, b'"class_name"')
    big = keras_weights()
    big["out"] = [(1000000, 1000000), np.zeros(10, "f4")]
    absurd = keras_weights()
    absurd["conv"] = [(3, 3, 1, 10**11), np.zeros(2, "f4")]
    short = keras_weights()
    short["out"][0] = short["out"][0][:100]
    layers = [dict(layer) for layer in keras_config()["config"]["layers"]]
    layers[1] = {"class_name": "Conv2D", "config": "relu"}
    no_size = [dict(layer) for layer in keras_config()["config"]["layers"]]
    no_size[0] = {"class_name": "InputLayer", "config": {"batch_shape": [None, None, None, 1]}}
    huge = [dict(layer) for layer in keras_config()["config"]["layers"]]
    huge[0] = {"class_name": "InputLayer", "config": {"batch_shape": [None, 10**8, 10**7, 1]}}
    escaping = write_keras(tmp / "escape.keras", members={"../../evil.txt": b"x"})
    return {
        "keras zip with a bad CRC": (bad_crc, "CRC"),
        "keras zip member outside it": (escaping, "points outside the archive"),
        "h5 layer of 1000000x1000000": (write_h5(tmp / "big.h5", weights=big), "would need"),
        "h5 kernel of 1.8 TiB": (write_h5(tmp / "absurd.h5", weights=absurd), "would need"),
        "h5 kernel with fewer rows": (write_h5(tmp / "short.h5", weights=short), "shape"),
        "h5 model_config a list": (write_h5(tmp / "list.h5", config=[1, 2]), "must be a table"),
        "h5 layer config a string": (
            write_h5(tmp / "str.h5", config=keras_config(layers)),
            "layers[1].config must be a table",
        ),
        "h5 input shape None": (
            write_h5(tmp / "none.h5", config=keras_config(no_size)),
            "fixed image size",
        ),
        # found by the fuzzer: the flattening order of 10^15 features was built (in memory)
        # before the dense layer's 1152 rows were checked against them
        "h5 input of 10^15 pixels": (write_h5(tmp / "huge.h5", config=keras_config(huge)), "shape"),
        "not a keras file": (_written(tmp / "text.h5", b"hello"), "neither a .keras zip"),
    }


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "case",
    [
        "keras zip with a bad CRC",
        "keras zip member outside it",
        "h5 layer of 1000000x1000000",
        "h5 kernel of 1.8 TiB",
        "h5 kernel with fewer rows",
        "h5 model_config a list",
        "h5 layer config a string",
        "h5 input shape None",
        "h5 input of 10^15 pixels",
        "not a keras file",
    ],
)
def test_a_damaged_keras_file_is_refused(case, mapscope, tmp_path):
    path, says = keras_cases(tmp_path)[case]
    err = refused(mapscope, tmp_path, ["import", "keras", path, "--out", tmp_path / "out"], says)
    assert str(path) in err


# (what is changed in the run, the command, what the error says)
RUN_CASES = {
    "history without seconds": (
        lambda r: edit_json(r / RUN_FILES["history"], lambda h: h[0].pop("seconds")),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "epoch 1.seconds is missing",
    ),
    "unknown optimizer": (
        lambda r: edit_json(r / "config.json", lambda c: c["train"].update(optimizer="adagrad")),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "optimizer 'adagrad' unknown",
    ),
    "batch size 0": (
        lambda r: edit_json(r / "config.json", lambda c: c["train"].update(batch_size=0)),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "batch_size must be >= 1",
    ),
    "unknown training key": (
        lambda r: edit_json(r / "config.json", lambda c: c["train"].update(surprise=1)),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "unknown field 'train.surprise'",
    ),
    "damaged generator state": (
        lambda r: edit_checkpoint(
            r / RUN_FILES["checkpoint"], lambda s: s.update(generator=torch.zeros(9, dtype=torch.uint8))
        ),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "generator must be a torch generator state",
    ),
    "precision fp8": (
        lambda r: edit_checkpoint(r / RUN_FILES["checkpoint"], lambda s: s.update(precision="fp8")),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "precision must be one of 'fp32', 'bf16'",
    ),
    "optimizer state of another network": (
        lambda r: edit_checkpoint(
            r / RUN_FILES["checkpoint"],
            lambda s: s.update(optimizer={"state": {}, "param_groups": [{"params": [0]}]}),
        ),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "does not fit this run",
    ),
    "optimizer made differentiable": (  # found by the checkpoint fuzzer: torch's own error
        lambda r: edit_checkpoint(
            r / RUN_FILES["checkpoint"],
            lambda s: s["optimizer"]["param_groups"][0].update(differentiable=True),
        ),
        ["cnn", "train", "--resume", "{run}", "--epochs", "1"],
        "optimizer setting 'differentiable' is True; a mapscope training sets False",
    ),
    "split a single array": (  # np.save's format where np.savez's belongs
        lambda r: save_one_array(r / "split.npz", np.arange(60000)),
        ["cnn", "predict", "--model", "{run}", "--index", "0"],
        "split.npz: not a readable",
    ),
    "dataset a list": (
        lambda r: edit_json(r / "config.json", lambda c: c["data"].update(dataset=["mnist"])),
        ["cnn", "predict", "--model", "{run}", "--index", "0"],
        "data.dataset must be text",
    ),
    "a billion units": (
        lambda r: edit_json(
            r / "config.json", lambda c: c["net"]["layers"][-2].update(units=10**9)
        ),
        ["cnn", "predict", "--model", "{run}", "--index", "0"],
        "would need",
    ),
    "gradcam on a dense layer": (
        lambda r: None,
        ["attribute", "--model", "{run}", "--index", "0", "--method", "gradcam",
         "--layer", "Dense_2", "--out", "{tmp}/a.png"],
        "Grad-CAM weighs the channels of a map",
    ),
    "empty image selection": (
        lambda r: None,
        ["atlas", "--model", "{run}", "--images", ",", "--out", "{tmp}/atlas"],
        "--images names no number",
    ),
    "sweep into a run folder": (
        lambda r: None,
        ["sweep", "kmeans", "--out", "{run}", "--set", "dataset=wifi"],
        "is a run folder",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_a_damaged_run_is_refused(case, intact_run, mapscope, tmp_path):
    change, args, says = RUN_CASES[case]
    run = tmp_path / "run"
    shutil.copytree(intact_run, run)
    change(run)
    refused(mapscope, tmp_path, [a.format(run=run, tmp=tmp_path) for a in args], says)


def test_options_and_files_refused_up_front(mapscope, tmp_path):
    """Sweep grids and options whose values no point could train with, and a damaged
    TorchScript file: refused before anything starts."""
    grids = {
        "fixed = 5\n": "fixed must be a table",
        "grid = 3\n": "grid must be a table",
        "[grid]\nlr = 0.1\n": "grid.lr must be a list",
        "[fixed]\nepochs = 99999999999999999999\n": "out of range",
        "[fixed]\nepochs = [1]\n": "epochs must be a whole number",
    }
    for text, says in grids.items():
        grid = tmp_path / "grid.toml"
        grid.write_text(text)
        refused(mapscope, tmp_path, ["sweep", "cnn", "--grid", grid, "--out", tmp_path / "s"], says)
    for option in (["--seeds", "-1..0"], ["--set", "seed=-1"], ["--set", "seed=99999999999"]):
        args = ["sweep", "kmeans", "--set", "dataset=wifi", *option, "--out", tmp_path / "k"]
        refused(mapscope, tmp_path, args, "seed")
    refused(
        mapscope,
        tmp_path,
        ["kmeans", "analyze", "--k", ",", "--out", tmp_path / "k"],
        "--k names no number",
    )
    args = ["mlp", "train", "--layers", "784,1000000000,10", "--out", tmp_path / "m"]
    refused(mapscope, tmp_path, args, "would need")
    script = tmp_path / "net.pt"
    with zipfile.ZipFile(script, "w") as archive:
        archive.writestr("net/code/__torch__.py", "not python {")
        archive.writestr("net/data.pkl", b"\x80\x05garbage")
    err = refused(
        mapscope, tmp_path, ["evaluate", "--module", script, "--out", tmp_path / "e"], "damaged"
    )
    assert "TorchScript" in err
    spec = tmp_path / "huge.toml"
    spec.write_text(
        'input_shape = [1, 28, 28]\n[[layers]]\ntype = "conv"\nname = "Conv2D_1"\n'
        'filters = 1000000000\nkernel = 3\nactivation = "relu"\n[[layers]]\ntype = "dense"\n'
        'name = "out"\nunits = 10\nactivation = "softmax"\n'
    )
    err = refused(mapscope, tmp_path, ["cnn", "summary", "--config", spec], "would need")
    assert "'Conv2D_1'" in err and str(spec) in err


@pytest.mark.parametrize("content", ["[1, 2]", "7", '{"a": 1}', '{"a": {"stamp": 1}}', "{"])
def test_a_damaged_verified_cache_is_read_as_empty(content, mapscope, tmp_path, monkeypatch):
    """The verified-data cache is mapscope's own: damaged, it costs a re-hash, then is written
    afresh."""
    monkeypatch.setenv("MAPSCOPE_CACHE", str(tmp_path))
    (tmp_path / "verified.json").write_text(content)
    code, out, err = mapscope("data", "check", "wifi")
    assert code == 0, err
    assert all(
        set(v) == {"stamp", "sha256"} for v in read_json(tmp_path / "verified.json").values()
    )


def test_a_shrunk_atlas_cache_is_computed_again(tmp_path):
    """A cache whose arrays do not fit the build is never used (it used to crash every rebuild)."""
    from mapscope.atlas.build import _read_cache
    from mapscope.io import write_npz

    path = tmp_path / "atlas-x.npz"
    shapes = {"mean/Dense_1": (10, 4), "oip/Dense_1/images": (4,)}
    write_npz(
        path, **{"mean/Dense_1": np.zeros((10, 4)), "oip/Dense_1/images": np.zeros((4, 1, 2, 2))}
    )
    assert _read_cache(path, shapes) is not None
    write_npz(
        path, **{"mean/Dense_1": np.zeros((9, 4)), "oip/Dense_1/images": np.zeros((4, 1, 2, 2))}
    )
    assert _read_cache(path, shapes) is None
    write_npz(path, **{"mean/Dense_1": np.zeros((10, 4)), "oip/Dense_1/images": np.zeros((3, 1))})
    assert _read_cache(path, shapes) is None
    # an optional array is not needed, but when it is there it must fit as well
    optional = {"anywhere/Dense_1": (10, 4)}
    fitting = {"mean/Dense_1": np.zeros((10, 4)), "oip/Dense_1/images": np.zeros((4, 1, 2, 2))}
    write_npz(path, **fitting)
    assert _read_cache(path, shapes, optional) is not None
    write_npz(path, **fitting, **{"anywhere/Dense_1": np.zeros((10, 3))})
    assert _read_cache(path, shapes, optional) is None


# --- the fuzzers: one per format --------------------------------------------------------------

# examples per fuzzer: a short run in every suite, a long one before a release
# (HYPOTHESIS_PROFILE=thorough; MAPSCOPE_FUZZ_EXAMPLES=N sets any other number)
EXAMPLES = int(
    os.environ.get(
        "MAPSCOPE_FUZZ_EXAMPLES",
        500 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 10,
    )
)
FUZZ = settings(suppress_health_check=list(HealthCheck), deadline=None, max_examples=EXAMPLES)


def _check_mutation(mapscope, root: Path, args: list, label: str) -> None:
    """A mutated file: the command either works (the change was harmless) or is refused with one
    line, exit 2, nothing written; never a traceback (the ``mapscope`` fixture checks that)."""
    before = snapshot(root)
    code, _, err = mapscope(*args)
    assert code in (0, 2), f"{label}: {err}"
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), f"{label}: {err}"
        assert snapshot(root) == before, f"{label}: a refused command wrote files"


@pytest.fixture()
def fresh_run(intact_run, tmp_path_factory):
    """A copy of the intact run to damage (a new one for every example)."""

    def make() -> Path:
        run = tmp_path_factory.mktemp("fuzz") / "run"
        shutil.copytree(intact_run, run)
        return run

    return make


@pytest.mark.parametrize("role", ["config", "history", "pointer"])
@FUZZ
@given(data=st.data())
def test_fuzz_run_json(role, data, fresh_run, mapscope):
    """config.json, history.json and epoch.json, mutated; the run is opened as every command
    opens it (``cnn summary --model`` checks every file) and as ``predict`` reads it."""
    run = fresh_run()
    path = run / RUN_FILES[role]
    hot = ("train", "data", "net", "layers", "units", "filters", "seconds", "epoch", "dataset")
    value, label = data.draw(mutated(read_json(path), hot), label="mutation")
    path.write_text(json.dumps(value))
    _check_mutation(mapscope, run.parent, ["cnn", "summary", "--model", run], label)
    _check_mutation(mapscope, run.parent, ["cnn", "predict", "--model", run, "--index", "0"], label)


@FUZZ
@given(data=st.data())
def test_fuzz_truncated_run_files(data, fresh_run, mapscope):
    """Any run file cut short at any byte, as a crash or a full disk leaves it."""
    run = fresh_run()
    files = sorted(p for p in run.rglob("*") if p.is_file() and p.suffix != ".png")
    path = data.draw(st.sampled_from(files), label="file")
    content = path.read_bytes()
    cut = data.draw(st.integers(0, max(0, len(content) - 1)), label="cut")
    path.write_bytes(content[:cut])
    _check_mutation(
        mapscope, run.parent, ["cnn", "summary", "--model", run], f"{path} cut at {cut}"
    )


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint(data, fresh_run, mapscope):
    """checkpoint.pt's dictionary mutated (its tensors kept as they are), then resumed."""
    run = fresh_run()
    path = run / RUN_FILES["checkpoint"]
    state = torch.load(path, weights_only=True)
    plain = {k: v for k, v in state.items() if k not in ("generator", "optimizer")}
    plain["optimizer"] = {"param_groups": state["optimizer"]["param_groups"]}
    value, label = data.draw(mutated(plain, ("step", "precision", "threads", "lr")), label="m")
    if isinstance(value, dict):
        if isinstance(value.get("optimizer"), dict):
            value["optimizer"] = {**value["optimizer"], "state": state["optimizer"]["state"]}
        value.setdefault("generator", state["generator"])
    torch.save(value, path)
    args = ["cnn", "train", "--resume", run, "--epochs", "1", "--threads", "1"]
    _check_mutation(mapscope, run.parent, args, label)


@FUZZ
@given(data=st.data())
def test_fuzz_keras_model_config(data, mapscope, tmp_path_factory):
    """A Keras model_config mutated, in a legacy .h5 and in a .keras zip."""
    root = tmp_path_factory.mktemp("keras")
    hot = ("batch_shape", "kernel_size", "filters", "units", "config", "layers", "strides")
    value, label = data.draw(mutated(keras_config(), hot), label="mutation")
    for path in (
        write_h5(root / "m.h5", config=value),
        write_keras(root / "m.keras", config=value),
    ):
        args = ["import", "keras", path, "--out", root / f"out-{path.suffix[1:]}"]
        _check_mutation(mapscope, root, args, label)


@FUZZ
@given(data=st.data())
def test_fuzz_keras_weights(data, mapscope, tmp_path_factory):
    """Keras weights of other shapes (declared huge, short, missing or extra arrays)."""
    root = tmp_path_factory.mktemp("kerasw")
    weights = keras_weights()
    layer = data.draw(st.sampled_from(["conv", "out"]), label="layer")
    how = data.draw(st.sampled_from(["shape", "huge", "drop", "extra"]), label="how")
    if how == "shape":
        shape = data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=4), label="shape")
        weights[layer][0] = np.zeros(shape, "f4")
    elif how == "huge":
        dims = st.lists(st.integers(10**5, 10**7), min_size=2, max_size=4)
        weights[layer][0] = tuple(data.draw(dims, label="declared shape"))  # 40 GB and more
    elif how == "drop":
        weights[layer] = weights[layer][:1]
    else:
        weights[layer] = [*weights[layer], np.zeros(3, "f4")]
    path = write_h5(root / "w.h5", weights=weights)
    _check_mutation(mapscope, root, ["import", "keras", path, "--out", root / "out"], how)


@FUZZ
@given(data=st.data())
def test_fuzz_cnn_spec(data, mapscope, tmp_path_factory):
    """A CNN spec TOML mutated; ``cnn summary --config`` reads it as ``cnn train`` does."""
    import tomli_w

    from mapscope.cnn.spec import default_spec

    root = tmp_path_factory.mktemp("spec")
    spec = json.loads(json.dumps(default_spec().to_dict()))
    hot = ("filters", "units", "kernel", "size", "stride", "input_shape", "layers", "type")
    value, label = data.draw(mutated(spec, hot), label="mutation")
    path = root / "net.toml"
    try:
        path.write_text(tomli_w.dumps(value) if isinstance(value, dict) else repr(value))
    except (TypeError, ValueError):  # TOML cannot hold this value (null): the file is text
        path.write_text(json.dumps(value))
    _check_mutation(mapscope, root, ["cnn", "summary", "--config", path], label)


@FUZZ
@given(data=st.data())
def test_fuzz_sweep_grid_and_plan(data, mapscope, tmp_path_factory):
    """A sweep grid TOML, and a sweep folder's plan.json, mutated, read by ``sweep --dry-run``,
    which checks both as a sweep does and stops before training."""
    import tomli_w

    root = tmp_path_factory.mktemp("grid")
    grid = {"fixed": {"dataset": "wifi", "clusters": 4}, "grid": {"seed": [0]}}
    value, label = data.draw(mutated(grid, ("fixed", "grid", "clusters", "seed")), label="grid")
    path = root / "grid.toml"
    try:
        path.write_text(tomli_w.dumps(value) if isinstance(value, dict) else repr(value))
    except (TypeError, ValueError):
        path.write_text(json.dumps(value))
    out = root / "sweep"
    out.mkdir()
    plan = {"kind": "kmeans", "points": {"run": {"dataset": "wifi", "clusters": 4, "seed": 0}}}
    plan_value, plan_label = data.draw(mutated(plan, ("kind", "points")), label="plan")
    (out / "plan.json").write_text(json.dumps(plan_value))
    args = ["sweep", "kmeans", "--grid", path, "--out", out, "--dry-run"]
    _check_mutation(mapscope, root, args, f"{label}; plan: {plan_label}")


@FUZZ
@given(data=st.data())
def test_fuzz_atlas_cache(data, tmp_path_factory):
    """The atlas's rebuild cache with an array dropped, shrunk, grown, reshaped or of text: it
    is used only when every array fits this build, else everything is computed again."""
    from mapscope.atlas.build import _read_cache
    from mapscope.io import write_npz

    shapes = {"mean/Conv2D_1": (20, 4), "peak/Conv2D_1": (20, 4), "probabilities": (20, 10)}
    shapes["oip/Conv2D_1/images"] = (4,)
    arrays = {
        k: np.zeros(v if k != "oip/Conv2D_1/images" else (4, 1, 3, 3)) for k, v in shapes.items()
    }
    name = data.draw(st.sampled_from(sorted(arrays)), label="array")
    how = data.draw(st.sampled_from(["drop", "shrink", "grow", "flat", "text"]), label="how")
    if how == "drop":
        del arrays[name]
    elif how == "shrink":
        arrays[name] = arrays[name][: data.draw(st.integers(0, len(arrays[name]) - 1))]
    elif how == "grow":
        arrays[name] = np.zeros((arrays[name].shape[0] + 1, *arrays[name].shape[1:]))
    elif how == "flat":
        arrays[name] = arrays[name].ravel()
    else:
        arrays[name] = np.full(arrays[name].shape, "x")
    path = tmp_path_factory.mktemp("cache") / "atlas-k.npz"
    write_npz(path, **arrays)
    stored = _read_cache(path, shapes)
    assert stored is None, f"{how} {name}: a cache that does not fit was used"


@FUZZ
@given(data=st.data())
def test_fuzz_metrics(data, fresh_run):
    """metrics.json mutated: a sweep reads it through its schema (``read_metrics``: entries of
    the types it uses, or one RunError naming the file), and a run's card in Jupyter shows
    what it can."""
    from mapscope.errors import RunError
    from mapscope.runs import Run
    from mapscope.runs.folder import read_metrics

    run = fresh_run()
    path = run / "epochs/0001/metrics.json"
    hot = ("epochs", "test_accuracy", "train_seconds", "precision", "threads")
    value, label = data.draw(mutated(read_json(path), hot), label="mutation")
    path.write_text(json.dumps(value))
    try:
        metrics = read_metrics(path)
    except RunError as refused_file:
        assert str(path) in str(refused_file), label
    else:
        assert isinstance(metrics, dict), label
        epochs = metrics.get("epochs")
        assert epochs is None or (isinstance(epochs, int) and not isinstance(epochs, bool))
    assert "<" in Run.open(run)._repr_html_(), label


@pytest.fixture(scope="module")
def other_runs(real_data, tmp_path_factory) -> dict[str, Path]:
    """An MLP, an autoencoder and a KMeans run, each as small as it gets."""
    from mapscope.ae.spec import AESpec
    from mapscope.ae.train import AETrainConfig
    from mapscope.ae.train import train as train_ae
    from mapscope.cluster.saved import fit_run, write_run
    from mapscope.mlp.train import MLPConfig
    from mapscope.mlp.train import train as train_mlp

    root = tmp_path_factory.mktemp("kinds")
    train_mlp(root / "mlp", MLPConfig(epochs=1, max_train=500), real_data)
    tiny_ae = AETrainConfig(epochs=1, max_train=256, max_test=200, threads=1)
    train_ae(root / "ae", tiny_ae, AESpec(latent=2, filters=(4, 8)), data_root=real_data)
    write_run(fit_run("wifi", 8, data_root=real_data), root / "kmeans")
    return {kind: root / kind for kind in ("mlp", "ae", "kmeans")}


@pytest.mark.parametrize("kind", ["mlp", "ae", "kmeans"])
@FUZZ
@given(data=st.data())
def test_fuzz_config_of_every_kind(kind, data, other_runs, mapscope, tmp_path_factory):
    """config.json of an MLP, autoencoder and KMeans run mutated, opened by a command that
    reads it whole (``summary`` for networks, ``evaluate`` for KMeans)."""
    run = tmp_path_factory.mktemp("kind") / kind
    shutil.copytree(other_runs[kind], run)
    path = run / "config.json"
    hot = ("model", "net", "train", "data", "layers", "filters", "latent", "clusters", "dataset")
    value, label = data.draw(mutated(read_json(path), hot), label="mutation")
    path.write_text(json.dumps(value))
    if kind == "kmeans":
        args = ["evaluate", "--model", run, "--out", run.parent / "evaluation"]
    else:
        args = ["summary", "--model", run]
    _check_mutation(mapscope, run.parent, args, label)


@pytest.mark.parametrize("kind", ["png", "pt", "safetensors"])
@FUZZ
@given(data=st.data())
def test_fuzz_bytes_of_files_users_bring(kind, data, intact_run, mapscope, tmp_path_factory):
    """A drawing for ``cnn predict --image`` and the weights of your own module (``--weights``,
    torch.save or safetensors), cut short, with bytes flipped or inserted anywhere."""
    from PIL import Image
    from safetensors.torch import save_file
    from user_nets import LeNet5

    root = tmp_path_factory.mktemp("bytes")
    path = root / f"file.{kind}"
    if kind == "png":
        Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(path)
    elif kind == "pt":
        torch.save(LeNet5().state_dict(), path)
    else:
        save_file(LeNet5().state_dict(), str(path))
    content = bytearray(path.read_bytes())
    at = data.draw(st.integers(0, len(content) - 1), label="at")
    how = data.draw(st.sampled_from(["cut", "flip", "insert"]), label="how")
    if how == "cut":
        content = content[:at]
    elif how == "flip":
        content[at] ^= data.draw(st.integers(1, 255), label="bits")
    else:
        content[at:at] = data.draw(st.binary(min_size=1, max_size=64), label="bytes")
    path.write_bytes(bytes(content))
    if kind == "png":
        args = ["cnn", "predict", "--model", intact_run, "--image", path]
    else:
        nets = Path(__file__).parent / "user_nets.py"
        args = ["summary", "--module", f"{nets}:LeNet5", "--weights", path]
    _check_mutation(mapscope, root, args, f"{how} at {at}")
