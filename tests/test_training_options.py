"""No training option is recorded and ignored: every field of every kind's settings, given a
value other than its default, changes the run it trains or is refused with a ConfigError.

The runs are real but small (a narrow network, 64-500 training images, one or two epochs), so
that the whole table trains in seconds; what is compared is what a run keeps: its weights, its
split and scaler, its history's length and what its metrics say it trained on."""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from pathlib import Path

import pytest
from small_nets import SMALL_CNN  # noqa: E402

from mapscope.ae.spec import AESpec
from mapscope.ae.train import AETrainConfig
from mapscope.ae.train import train as train_ae
from mapscope.cnn.train import TrainConfig
from mapscope.cnn.train import train as train_cnn
from mapscope.errors import ConfigError
from mapscope.io import read_json
from mapscope.mlp.train import MLPConfig
from mapscope.mlp.train import train as train_mlp
from mapscope.runs import Run

# on one worker: each run every changed option is held to (``trained``) is then trained once
pytestmark = pytest.mark.xdist_group(name="options")

SMALL_AE = AESpec(latent=2, filters=(4, 8))
TRAIN = {
    "epochs": 1,
    "max_train": 64,
    "max_test": 500,
    "batch_size": 32,
    "threads": 1,  # the suite's workers share the cores
    "scaling": "unit",
}
KINDS = {
    "cnn": (
        TrainConfig(**TRAIN),
        lambda out, c, root: train_cnn(out, c, SMALL_CNN, data_root=root),
    ),
    "ae": (AETrainConfig(**TRAIN), lambda out, c, root: train_ae(out, c, SMALL_AE, data_root=root)),
    "mlp": (
        MLPConfig(epochs=2, max_train=500, batch_size=100),
        lambda out, c, root: train_mlp(out, c, root),
    ),
}
# (field, value, settings both runs share): the value differs from the kind's default;
# "precision" is filled in below with the one that "auto" does not pick on this machine
TRAINER = [
    ("dataset", "fashion-mnist", {}),
    ("epochs", 2, {}),
    ("batch_size", 16, {}),
    ("optimizer", "sgd", {}),
    ("lr", 1e-2, {}),
    ("momentum", 0.5, {}),  # refused: adam reads no momentum
    ("momentum", 0.5, {"optimizer": "sgd"}),
    ("beta1", 0.8, {}),
    ("beta1", 0.8, {"optimizer": "sgd"}),  # refused: sgd reads no beta1
    ("beta2", 0.95, {}),
    ("beta2", 0.95, {"optimizer": "sgd"}),  # refused: sgd reads no beta2
    ("schedule", "none", {}),
    ("decay_rate", 0.1, {}),  # refused: onecycle reads no decay rate
    ("decay_rate", 0.1, {"schedule": "power", "decay_steps": 1}),
    ("decay_steps", 1, {}),  # refused
    ("decay_steps", 1, {"schedule": "power"}),
    ("seed", 1, {}),
    ("resplit", True, {}),
    ("scaling", "standard", {}),
    ("device", "cuda", {}),  # refused where torch sees no GPU
    ("precision", None, {}),
    ("max_train", 32, {}),
    ("max_test", 100, {}),
    ("threads", 2, {}),
    ("label_smoothing", 0.1, {}),  # refused by the autoencoder: it has no labels
    ("shift", 2, {}),  # refused by the autoencoder: it rebuilds the image it is given
]
# fields that record where the other settings came from, rather than set anything themselves
# (a recipe's settings are the fields it fills: test_a_recipe_fills_the_options_left_out)
RECORDS = {"recipe"}
CASES = {
    "cnn": TRAINER,
    "ae": [
        *TRAINER,
        ("image_size", 32, {}),  # refused: MNIST images are read as stored
        ("colour", "rgb", {}),  # refused
    ],
    "mlp": [
        ("dataset", "fashion-mnist", {}),
        ("layers", (784, 20, 10), {}),
        ("activation", "relu", {}),
        ("loss", "crossentropy", {}),
        ("batch_size", 50, {}),
        ("epochs", 3, {}),
        ("max_batches", 2, {}),
        ("lr", 1e-2, {}),
        ("decrease", 0.5, {}),
        ("momentum", 0.5, {}),
        ("l2", 0.5, {}),
        ("l1", 0.01, {}),
        ("init_scale", 0.5, {}),
        ("seed", 1, {}),
        ("resplit", True, {}),
        ("scaling", "standard", {}),
        ("cluster_features", 8, {}),
        ("max_train", 300, {}),
    ],
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


KEPT_METRICS = ("n_train", "n_test", "epochs", "precision", "threads", "device", "data_checksums")


def fingerprint(run: Path) -> tuple:
    """What a run keeps of its training, leaving out the settings it merely records."""
    files = Run.open(run).files
    metrics = read_json(files["metrics"])
    return (
        *(_digest(files[r]) if r in files else "-" for r in ("model", "split", "scaler")),
        len(read_json(files["history"])),
        tuple(str(metrics.get(k)) for k in KEPT_METRICS),
    )


@pytest.fixture(scope="module")
def trained(real_data, tmp_path_factory):
    """Each (kind, shared settings) trained once: the run every changed option is held to."""
    folder, runs = tmp_path_factory.mktemp("options"), {}

    def run(kind: str, shared: dict, change: dict | None = None):
        base, fit = KINDS[kind]
        key = (kind, tuple(sorted(shared.items())), tuple(sorted((change or {}).items())))
        if key not in runs:
            out = folder / f"run{len(runs)}"
            fit(out, replace(base, **shared, **(change or {})), real_data)
            runs[key] = fingerprint(out)
        return runs[key]

    return run


def test_the_table_names_every_option_of_every_kind():
    for kind, (config, _) in KINDS.items():
        named = {name for name, _, _ in CASES[kind]}
        assert named == {f.name for f in fields(config)} - RECORDS, kind


@pytest.mark.parametrize(
    ("kind", "name", "value", "shared"),
    [(kind, *case) for kind, cases in CASES.items() for case in cases],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_option_changes_the_run_or_is_refused(kind, name, value, shared, trained, real_data):
    base, _ = KINDS[kind]
    if name == "precision":  # the precision "auto" does not choose here
        auto = trained(kind, shared)[-1][KEPT_METRICS.index("precision")]
        value = "fp32" if auto == "bf16" else "bf16"
    assert value != getattr(base, name), "the table must give a value other than the default"
    try:
        changed = trained(kind, shared, {name: value})
    except ConfigError as refused:
        assert name in str(refused) or "device" in str(refused), refused
        return
    assert changed != trained(kind, shared), f"{kind} {name}={value!r} trained the same run"


def test_a_recipe_fills_the_options_left_out():
    from mapscope.training.recipes import RECIPES

    fast = TrainConfig.from_recipe("fast", lr=1e-3)
    assert fast.recipe == "fast" and fast.lr == 1e-3  # what is given wins
    for name, value in RECIPES["fast"].items():
        if name != "lr":
            assert getattr(fast, name) == value, name
    assert fast.recipe_settings()["lr"] == 1e-3
    assert TrainConfig.from_recipe() == TrainConfig()
    with pytest.raises(ConfigError, match="recipe 'fastest' unknown; choose one of default, fast"):
        TrainConfig.from_recipe("fastest")
    with pytest.raises(ConfigError, match="recipe"):
        AETrainConfig(recipe="fast").validate()
    for name in RECIPES:  # every recipe is a valid config as it stands
        assert TrainConfig.from_recipe(name).validate().recipe == name
    accurate = TrainConfig.from_recipe("accurate")
    assert (accurate.shift, accurate.scaling, accurate.max_train) == (2, "unit", None)
    with pytest.raises(ConfigError, match="shift needs a scaling"):  # a given option that clashes
        TrainConfig.from_recipe("accurate", scaling="standard").validate()


def test_label_smoothing_is_the_loss_a_step_minimises():
    import torch
    import torch.nn.functional as F

    from mapscope.cnn.build import build
    from mapscope.cnn.train import CNNTask

    net = build(SMALL_CNN, 0)
    logits, target = torch.randn(8, 10), torch.arange(8)
    smooth = CNNTask().step_loss(net, logits, target, TrainConfig(label_smoothing=0.2))
    assert smooth == pytest.approx(F.cross_entropy(logits, target, label_smoothing=0.2).item())
    assert CNNTask().loss(net, logits, target) == pytest.approx(
        F.cross_entropy(logits, target).item()  # what is reported stays the plain loss
    )
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        TrainConfig(label_smoothing=1.0).validate()


def test_cli_recipe_prints_and_stores_its_settings(cli, tmp_path):
    run = tmp_path / "fast"
    done = cli(
        "cnn", "train", "--recipe", "fast", "--max-train", "256", "--max-test", "200",
        "--threads", "1", "--out", run,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "recipe fast: epochs=1 max_train=256 batch_size=64" in done.stdout
    stored = read_json(run / "config.json")["train"]
    assert stored["recipe"] == "fast" and stored["max_train"] == 256
    assert stored["lr"] == TrainConfig.from_recipe("fast").lr and stored["label_smoothing"] > 0
    resumed = cli("cnn", "train", "--resume", run, "--recipe", "fast")
    assert resumed.returncode == 2 and "--recipe" in resumed.stderr
    clash = cli("cnn", "train", "--recipe", "one-pass", "--scaling", "standard", "--out", run)
    assert clash.returncode == 2 and "shift needs a scaling" in clash.stderr
