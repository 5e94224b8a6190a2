"""Every bad input is one line ``error: ...`` naming what was wrong, exit code 2, no traceback.

The table lists the bad values users met (each once a traceback or a silent misreading); the
property test feeds random bad values to every option of every command."""

import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapscope.cli.main import command, run
from mapscope.cnn.train import TrainConfig, train


@pytest.fixture(scope="module")
def places(real_data, tmp_path_factory):
    """A tiny CNN run, a file, a folder, a binary file and an empty data folder."""
    root = tmp_path_factory.mktemp("bad")
    run_dir = root / "run"
    train(
        run_dir,
        TrainConfig(epochs=1, max_train=128, max_test=500, schedule="none"),
        data_root=real_data,
    )
    (root / "file.txt").write_text("not a folder")
    (root / "binary.toml").write_bytes(bytes(range(256)))
    (root / "folder").mkdir()
    (root / "nodata").mkdir()
    return root


def call(args, capsys) -> tuple[int, str]:
    """Run the command line in-process (as the console script does); (exit code, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return stop.value.code, captured.err


R, F, D, B = "{run}", "{file}", "{folder}", "{binary}"
TRAIN = ["cnn", "train", "--out", "new"]
OIP = ["oip", "--model", R, "--layer", "Conv2D_1", "--out", "o"]
COMPARE = ["compare", "--model", R, "--layer", "Conv2D_1", "--out", "c"]
BAD = [
    # where the output goes
    (["cnn", "train", "--out", F], "is a file"),
    (["cnn", "train", "--out", F + "/child"], "below the file"),
    (["cnn", "train", "--out", ""], "--out is empty"),
    (["cnn", "train", "--out", "."], "a run needs a folder of its own"),
    (["mlp", "train", "--out", F], "is a file"),
    (["kmeans", "fit", "--out", F], "is a file"),
    (["evaluate", "--model", R, "--out", F], "is a file"),
    (
        ["activations", "--model", R, "--layer", "Conv2D_1", "--index", "0", "--out", "a.txt"],
        ".png",
    ),
    (["activations", "--model", R, "--layer", "Conv2D_1", "--index", "0", "--out", D], "folder"),
    (["data", "show", "mnist", "--index", "0", "--out", F + "/x.png"], "is a file"),
    # what is read
    ([*TRAIN, "--config", D], "--config"),
    ([*TRAIN, "--config", B], "--config"),
    ([*TRAIN, "--config", "missing.toml"], "not found"),
    (["evaluate", "--model", F, "--out", "e"], "not a folder"),
    (["evaluate", "--model", D, "--out", "e"], "no config.json"),
    (["kmeans", "fit", "--data-dir", "~0", "--out", "k"], "a user this machine does not know"),
    (["import", "keras", "~no-such-user/m.keras", "--out", "k"], "does not know"),
    # numbers
    ([*TRAIN, "--seed", "-1"], "--seed"),
    ([*TRAIN, "--seed", "99999999999999999999"], "--seed"),
    ([*TRAIN, "--momentum", "-1"], "momentum"),
    ([*TRAIN, "--beta1", "1"], "beta1"),
    ([*TRAIN, "--beta2", "1"], "beta2"),
    ([*TRAIN, "--schedule", "power", "--decay-rate", "-1"], "decay_rate"),
    ([*TRAIN, "--schedule", "exponential", "--decay-rate", "-1"], "decay"),
    ([*TRAIN, "--lr", "nan"], "--lr"),
    ([*TRAIN, "--lr", "inf"], "--lr"),
    ([*TRAIN, "--epochs", "0"], "epochs"),
    ([*TRAIN, "--epochs", "two"], "--epochs"),
    ([*TRAIN, "--max-train", "0"], "max_train"),
    ([*TRAIN, "--device", "cuda:x"], "device"),
    ([*TRAIN, "--optimizer", "adamw"], "optimizer"),
    (["cnn", "train", "--resume", R, "--lr", "0.1"], "--lr cannot be changed"),
    (["cnn", "train", "--resume", R, "--optimizer", "sgd"], "--optimizer cannot be changed"),
    (["cnn", "train", "--resume", R, "--lr", "2e-3"], "--lr cannot be changed"),  # the default
    (["cnn", "train", "--resume", R, "--no-resplit"], "--resplit cannot be changed"),
    (["cnn", "train", "--resume", R, "--out", "elsewhere"], "--out cannot be changed"),
    (["cnn", "train", "--resume", R, "--epochs", "0"], "epochs"),
    (["cnn", "predict", "--model", R, "--index", "-1"], "index"),
    (["cnn", "predict", "--model", R, "--index", "99999999999999"], "--index"),
    (["cnn", "predict", "--model", R, "--index", "10000"], "out of range"),
    ([*OIP, "--steps", "0"], "steps"),
    ([*OIP, "--maps", ","], "--maps"),
    ([*OIP, "--precursors", "0"], "precursors"),
    ([*OIP, "--patience", "-1"], "patience"),
    ([*OIP, "--epsilon", "inf"], "--epsilon"),
    ([*OIP, "--scales", "0"], "scale"),
    (["oip", "--model", R, "--layer", "Nope", "--out", "o"], "Nope"),
    ([*COMPARE, "--indices", ","], "--indices"),
    (
        [
            "compare",
            "--model",
            R,
            "--layer",
            "Conv2D_1",
            "--out",
            "c",
            "--classes",
            "4,9",
            "--top",
            "0",
        ],
        "top",
    ),
    (
        [
            "compare",
            "--model",
            R,
            "--layer",
            "Conv2D_1",
            "--out",
            "c",
            "--indices",
            "1",
            "--threshold",
            "nan",
        ],
        "--threshold",
    ),
    (["kmeans", "analyze", "--out", "k", "--k", "0..3"], "k must"),
    (["kmeans", "analyze", "--out", "k", "--k", "3000"], "k must"),
    (["kmeans", "analyze", "--out", "k", "--silhouette-sample", "0"], "silhouette"),
    (["kmeans", "features", "--out", "k", "--dataset", "wifi"], "wifi"),
    (["kmeans", "fit", "--out", "k", "--dataset", "wifi", "--pca", "100"], "pca"),
    (["kmeans", "fit", "--out", "k", "--dataset", "wifi", "--clusters", "0"], "cluster"),
    (["pca", "--out", "p", "--pairs", "0-1-2"], "--pairs"),
    (["pca", "--out", "p", "--clusters", "-2"], "clusters"),
    (["pca", "--out", "p", "--clusters", "0"], "clusters"),
    (["mlp", "train", "--out", "m", "--max-train", "-5"], "max_train"),
    (["mlp", "train", "--out", "m", "--max-train", "0"], "max_train"),
    (["mlp", "train", "--out", "m", "--cluster-features", "0"], "cluster_features"),
    (["mlp", "train", "--out", "m", "--max-batches", "-1"], "max_batches"),
    (["mlp", "train", "--out", "m", "--l2", "nan"], "--l2"),
    (["mlp", "train", "--out", "m", "--layers", "784,0,10"], "layers"),
    (["mlp", "train", "--out", "m", "--activation", "gelu"], "activation"),
    (["mlp", "sweep", "--out", "s", "--param", "l2", "--values", ","], "--values"),
    (["mlp", "sweep", "--out", "s", "--param", "batch_size", "--values", "1.9"], "whole numbers"),
    (["data", "show", "mnist", "--index", "70000", "--out", "x.png"], "out of range"),
    (["sweep", "cnn", "--out", "s", "--seeds", "0..1", "--epochs", "2"], "--set epochs=VALUE"),
]


@pytest.mark.parametrize("args, says", BAD, ids=[" ".join(a[:4]) + f" ({s})" for a, s in BAD])
def test_bad_input_is_one_line_naming_it(args, says, places, capsys, monkeypatch, real_data):
    monkeypatch.chdir(places)
    monkeypatch.setenv("MAPSCOPE_DATA", str(real_data))
    names = {"run": places / "run", "file": places / "file.txt", "folder": places / "folder"}
    names["binary"] = places / "binary.toml"
    code, err = call([a.format(**names) for a in args], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert says in err, err


def every_option() -> list[tuple[tuple[str, ...], str]]:
    """(command path, option) for every option of every command, from the command tree."""
    found = []

    def walk(node, path):
        for name, child in getattr(node, "commands", {}).items():
            walk(child, (*path, name))
        if not getattr(node, "commands", None):
            for param in node.params:
                if param.opts and param.opts[0].startswith("--") and param.opts[0] != "--help":
                    found.append((path, param.opts[0]))

    walk(command(), ())
    return [(path, opt) for path, opt in found if path != ("data", "fetch")]  # no network here


OPTIONS = every_option()


NASTY = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            ",",
            ",,",
            "-1",
            "0",
            "nan",
            "-inf",
            "inf",
            "1e309",
            "1.9",
            "0..0",
            "3..1",
            "99999999999999999999",
            "-99999999999999999999",
            "..",
            "/",
            "/dev/null",
            "\x7f",
            "a,b",
            "1-2-3",
            "cuda:x",
            "1/0",
            "--",
            "-",
            "~",
            "☃",
        ]
    ),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(string.printable, max_size=12),
)


@settings(suppress_health_check=list(HealthCheck))  # examples: the profile in conftest.py
@given(data=st.data())
def test_random_bad_values_never_give_a_traceback(data, places, capsys, monkeypatch):
    """Any value for any option: exit 0 or 2, at most one line on stderr, never a traceback.
    The data folder is empty, so a command whose options all pass stops at the data."""
    path, option = data.draw(st.sampled_from(OPTIONS), label="option")
    value = data.draw(NASTY, label="value")
    monkeypatch.chdir(places / "folder")
    monkeypatch.setenv("MAPSCOPE_DATA", str(places / "nodata"))
    required = {"--model": str(places / "run"), "--out": "out", "--layer": "Conv2D_1"}
    args = [*path]
    if path[0] == "data" and path[1] == "show":
        args.append("mnist")
    for opt, default in required.items():
        if opt != option and (path, opt) in OPTIONS:
            args += [opt, default]
    if path in (("cnn", "predict"), ("activations",)) and option != "--index":
        args += ["--index", "0"]
    if path == ("mlp", "sweep") and option not in ("--param", "--values"):
        args += ["--param", "l2", "--values", "0.1"]
    args += [option, value]
    code, err = call(args, capsys)
    assert code in (0, 2), err
    assert len(err.strip().splitlines()) <= 1, err
    assert os.getcwd() == str(places / "folder")


def test_no_arguments_shows_help_and_no_error_line(capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run([])
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.err == ""
    assert "Usage: mapscope" in captured.out
