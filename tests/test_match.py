"""`mapscope match`: correlation matching, CKA and their baselines on known answers, then on
real runs and on plain PyTorch modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mapscope.inspect.inspection import Inspection
from mapscope.inspect.match import (
    LayerFeatures,
    UnitMatch,
    centred_gram,
    correlation,
    layer_features,
    linear_cka,
    standardized,
    unit_correlation,
    untrained_copy,
    weighted_layers,
)
from mapscope.inspect.oip.settings import OIPSettings
from mapscope.io import read_json
from mapscope.runs import Run
from mapscope.workflows.match import match_runs, shown_units, write_match


def test_correlation_is_pearson_and_dead_units_correlate_zero():
    rng = np.random.default_rng(0)
    a, b = (
        rng.normal(size=(500, 4)).astype(np.float32),
        rng.normal(size=(500, 3)).astype(np.float32),
    )
    b[:, 2] = 7.0  # a dead unit
    expected = np.corrcoef(a.T, b[:, :2].T)[:4, 4:]
    got = correlation(a, b)
    np.testing.assert_allclose(got[:, :2], expected, atol=1e-5)
    assert (got[:, 2] == 0).all()


def test_matching_recovers_a_permutation_and_counts_the_same_order():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2000, 12)).astype(np.float32)
    order = rng.permutation(12)
    b = a[:, order] + 0.1 * rng.normal(size=(2000, 12)).astype(np.float32)
    match = UnitMatch.of(correlation(a, b))
    assert (order[match.partner] == np.arange(12)).all()  # unit i of A found where it went
    numbers = match.numbers()
    assert numbers["reliable"] == 12 and numbers["poor"] == 0
    assert numbers["same_index"] == int((order == np.arange(12)).sum())
    assert numbers["same_index_chance"] == pytest.approx(1 / 12)
    same = UnitMatch.of(correlation(a, a)).numbers()
    assert same["same_index_share"] == 1.0 and same["mean"] == pytest.approx(1.0, abs=1e-5)


def test_linear_cka_is_one_for_rotations_and_matches_the_feature_formula():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 20)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    y = rng.normal(size=(300, 7)).astype(np.float32)
    gx = centred_gram(x)
    assert linear_cka(gx, centred_gram(3 * x @ rotation.astype(np.float32))) == pytest.approx(
        1, abs=1e-5
    )
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = np.linalg.norm(yc.T @ xc) ** 2 / (
        np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    )
    assert linear_cka(gx, centred_gram(y)) == pytest.approx(feature_form, rel=1e-4)


def test_positions_are_standardised_units_over_every_image_and_place():
    rng = np.random.default_rng(3)
    maps = rng.random((6, 5, 5, 3)).astype(np.float32)  # images, height, width, units
    other = rng.random((6, 5, 5, 2)).astype(np.float32)
    expected = np.corrcoef(maps.reshape(-1, 3).T, other.reshape(-1, 2).T)[:3, 3:]
    a = LayerFeatures(maps.mean((1, 2)), standardized(maps.copy()), None)
    b = LayerFeatures(other.mean((1, 2)), standardized(other.copy()), None)
    np.testing.assert_allclose(unit_correlation(a, b), expected, atol=1e-5)


class SmallNet(nn.Module):
    """A plain PyTorch network, not built by mapscope: 1 channel in, class scores out."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 10 * 10, 10))
        self.calls = 0
        self.head.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))

    def forward(self, x):
        return self.head(self.features(x))


def test_untrained_copy_leaves_the_module_and_global_random_state_alone():
    net = SmallNet()
    before = [p.detach().clone() for p in net.parameters()]
    state = torch.random.get_rng_state()
    fresh = untrained_copy(net, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    assert not torch.equal(fresh.features[0].weight, net.features[0].weight)
    again = untrained_copy(net, seed=5)
    assert torch.equal(fresh.features[0].weight, again.features[0].weight)


def test_features_of_an_early_layer_do_not_run_the_head():
    net = SmallNet()
    assert weighted_layers(net) == ["features.0", "features.3", "head.1"]
    x = np.random.default_rng(0).random((30, 1, 28, 28)).astype(np.float32)
    found = layer_features(net, x, ["features.0"], sample=10, batch=8)
    assert net.calls == 0
    assert found["features.0"].units.shape == (30, 6)
    assert found["features.0"].positions.shape == (10, 24 * 24, 6)
    assert found["features.0"].gram.shape == (10, 10)
    assert next(net.parameters()).is_contiguous()  # the caller's memory format is kept


@pytest.mark.slow
def test_a_run_matched_with_itself_and_with_another_seed(cnn_run, real_data, tmp_path):
    from mapscope.cnn.train import TrainConfig, train

    other = tmp_path / "other"
    train(
        other,
        TrainConfig(
            epochs=1, max_train=6000, max_test=1000, lr=3e-3, schedule="none", seed=1, threads=1
        ),
        data_root=real_data,
    )
    same = Run.open(cnn_run).inspection(real_data)
    second = Run.open(other).inspection(real_data)
    result = match_runs([same, same, second], ["a", "a2", "b"], images=2000, sample=300, oips=False)
    card = result._repr_html_()
    assert "Do 3 runs learn the same units?" in card and "Conv2D_1" in card
    assert result.layers == ["Conv2D_1", "Conv2D_2", "Conv2D_3", "Dense_1", "Dense_2"]
    itself = result.pairs[0]
    for layer, matches in itself.layers.items():
        numbers = matches["trained"].numbers()
        assert numbers["mean"] == pytest.approx(1.0, abs=1e-4), layer
        assert numbers["same_index_share"] == 1.0
        assert matches["shuffled"].numbers()["mean"] < 0.3
    np.testing.assert_allclose(np.diag(itself.cka), 1.0, atol=1e-5)
    # the pictures' best and worst pairs are of units that respond, as the numbers are: a run
    # against itself has no poor match among them (its dead units would show as r = 0)
    dead = sum(itself.layers[layer]["trained"].numbers()["dead"] for layer in result.layers)
    assert dead > 0  # the fixture's CNN has some
    for layer in result.layers:
        assert min(r for _, _, r in shown_units(result, layer)) > 0.99, layer
    across = result.pairs[1]  # a against b: alike, but not the same, and not in the same order
    conv = across.layers["Conv2D_2"]
    assert 0.3 < conv["trained"].numbers()["mean"] < 0.99
    assert conv["trained"].numbers()["mean"] > conv["shuffled"].numbers()["mean"] + 0.2
    assert conv["trained"].numbers()["same_index_share"] < 0.3
    # the output units are the classes: same order in every run
    assert across.layers["Dense_2"]["trained"].numbers()["same_index_share"] == 1.0
    # CKA finds corresponding layers: each conv layer of a is most like its namesake in b (the
    # two dense layers are nearly alike to CKA, as in the README's runs)
    assert (across.cka[:3].argmax(1) == np.arange(3)).all()
    assert np.diag(across.cka).min() > 0.7
    # a is learned by a2 wholly; units it shares with b above 0.9 are the common ones
    for layer in result.layers:
        for units in result.common_units(layer):
            assert across.layers[layer]["trained"].matched[units[0]] > 0.9
    written = write_match(result, tmp_path / "m")
    names = {p.name for p in written}
    assert {"match.json", "match.csv", "layers.csv", "summary.png", "cka.png"} <= names
    assert "common_Conv2D_1.png" in names and "pairs_Dense_2.png" in names
    record = read_json(tmp_path / "m" / "match.json")
    assert len(record["pairs"]) == 3 * 5 * 3  # pairs x layers x (trained + two baselines)


@pytest.mark.slow
def test_match_on_plain_pytorch_modules(cnn_run, real_data):
    bundle = Run.open(cnn_run).bundle(real_data)
    torch.manual_seed(0)
    a, b = SmallNet(), SmallNet()
    result = match_runs(
        [Inspection(a, bundle), Inspection(b, bundle)],
        ["a", "b"],
        images=300,
        sample=100,
        oips=True,
        oip=OIPSettings(steps=20),
    )
    assert result.layers == ["features.0", "features.3", "head.1"]
    assert result.pairs[0].cka.shape == (3, 3)
    assert set(result.oips) >= {(0, "features.0"), (1, "features.0")}
    assert next(iter(result.oips[(0, "features.0")].values())).shape == (28, 28)


@pytest.mark.slow
def test_cli_match_writes_tables_and_pictures(
    cli, cnn_run, real_data, tmp_path, capsys, monkeypatch
):
    import shutil

    from mapscope.cli.main import run

    def in_process(*args) -> tuple[int, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            run([str(a) for a in args])
        return stop.value.code, capsys.readouterr().err

    monkeypatch.setenv("MAPSCOPE_DATA", str(real_data))
    out, copy = tmp_path / "m", tmp_path / "copy"
    code, err = in_process("match", cnn_run, cnn_run, "--out", out)
    assert code == 2 and "given twice" in err
    shutil.copytree(cnn_run, copy)
    code, err = in_process("match", cnn_run, copy, "--out", out, "--layers", "Conv9")
    assert code == 2 and "Conv9" in err and len(err.strip().splitlines()) == 1
    done = cli(
        "match",
        cnn_run,
        copy,
        "--out",
        out,
        "--images",
        "500",
        "--sample",
        "200",
        "--layers",
        "Conv2D_1,Dense_2",
        "--oip-steps",
        "30",
    )
    assert done.returncode == 0, done.stderr
    assert "Conv2D_1" in done.stdout and f"wrote {out / 'pairs_Conv2D_1.png'}" in done.stdout
    rows = read_json(out / "match.json")["per_layer"]
    assert [r["layer"] for r in rows] == ["Conv2D_1", "Dense_2"]
