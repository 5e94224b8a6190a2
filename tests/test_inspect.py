import json

import numpy as np
import pytest
import torch

from mapscope.cnn.build import build
from mapscope.cnn.spec import default_spec
from mapscope.errors import ConfigError
from mapscope.inspect.compare import class_separation, group_pattern
from mapscope.inspect.oip import run_oip
from mapscope.inspect.oip.start import lowpass, multiscale_noise
from mapscope.inspect.taps import layer_outputs
from mapscope.report.grids import display_scale, mosaic
from mapscope.runs import Run


def test_taps_match_a_manual_forward():
    net = build(default_spec(), seed=1).eval()
    x = np.random.default_rng(0).normal(size=(3, 1, 28, 28)).astype(np.float32)
    outs = layer_outputs(net, x, ["Conv2D_1", "Max_Pool_2", "Dense_1", "Dense_2"])
    with torch.no_grad():
        manual = torch.nn.Sequential(*list(net.layers.values())[:4])(torch.from_numpy(x)).numpy()
        logits = net(torch.from_numpy(x)).numpy()
    assert outs["Conv2D_1"].shape == (3, 32, 26, 26) and outs["Conv2D_1"].min() >= 0  # relu applied
    np.testing.assert_allclose(outs["Max_Pool_2"], manual, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs["Dense_2"], logits, rtol=1e-5, atol=1e-6)
    assert not any(layer._forward_hooks for layer in net.layers.values())  # hooks removed


def test_unknown_layer_lists_valid_names():
    net = build(default_spec())
    with pytest.raises(ConfigError, match="valid names: Conv2D_1, Max_Pool_1"):
        layer_outputs(net, np.zeros((1, 1, 28, 28), np.float32), ["Conv2D_9"])


def test_grid_helpers():
    tiles = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    grid, corners = mosaic(tiles, per_row=2)
    assert grid.shape == (3 * (2 + 1), 2 * 3 + 1)  # a gap above every row, for its labels
    assert corners[3] == (4, 4) and np.isnan(grid[0, 0]) and np.isnan(grid[3, 0])
    np.testing.assert_array_equal(grid[4:6, 4:7], tiles[3])
    scaled = display_scale(np.random.default_rng(0).normal(size=(2, 8, 8)) * 5, standardize=True)
    assert scaled.min() >= 0 and scaled.max() <= 255
    assert abs(np.median(scaled) - 128) < 20


def test_group_pattern_and_separation():
    acts = np.zeros((3, 2, 2, 2))
    acts[:, 0, 0, 0] = 1.0  # map 0: the same point active in every image
    acts[0, 1, 1, 1] = 1.0  # map 1: one image only
    pattern = group_pattern(acts)
    assert pattern.all_active[0, 0, 0] and not pattern.all_active[1].any()
    np.testing.assert_allclose(pattern.agreement, [1.0, 0.0])
    rng = np.random.default_rng(0)
    labels = np.repeat([4, 9], 50)
    units = rng.normal(size=(100, 3))
    units[:50, 2] += 3  # unit 2 separates class 4 from 9
    sep = class_separation(units, labels, 4, 9)
    assert sep.units[0] == 2 and sep.effect_size[2] > 2


def test_multiscale_noise_is_standardised_and_seeded():
    a = multiscale_noise(4, torch.Generator().manual_seed(1))
    b = multiscale_noise(4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.shape == (4, 1, 28, 28)
    torch.testing.assert_close(a.flatten(1).mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        a.flatten(1).std(1, unbiased=False), torch.ones(4), atol=1e-4, rtol=0
    )
    coarse = multiscale_noise(1, torch.Generator().manual_seed(1), scales=(3,), factors=(1.0,))
    # long wavelengths only: neighbouring pixels are strongly correlated
    assert (
        torch.corrcoef(
            torch.stack([coarse[0, 0, :, :-1].flatten(), coarse[0, 0, :, 1:].flatten()])
        )[0, 1]
        > 0.9
    )
    smooth = lowpass(a, 7)
    assert (smooth[:, :, :, 1:] - smooth[:, :, :, :-1]).abs().mean() < (
        a[:, :, :, 1:] - a[:, :, :, :-1]
    ).abs().mean()


@pytest.fixture(scope="module")
def inspection(cnn_run, real_data):
    return Run.open(cnn_run).inspection(real_data)


def test_oip_batch_drives_each_map(inspection):
    units = [0, 3, 7, 11]
    result = run_oip(inspection.net, "Conv2D_2", units, steps=150, seed=0)
    alive = ~result.dead
    assert alive.sum() >= 3
    assert np.all(
        result.final_activation[alive] > 2 * np.maximum(result.start_activation[alive], 1e-3)
    )
    # row i drives map i: each OIP excites its own map more than the other rows' maps
    out = layer_outputs(inspection.net, result.images[:, None], ["Conv2D_2"])["Conv2D_2"]
    out = torch.from_numpy(out).mean(dim=(2, 3))
    own = out[torch.arange(len(units)), torch.tensor(units)]
    for k in np.flatnonzero(alive):
        others = [out[j, units[k]] for j in range(len(units)) if j != k]
        assert own[k] > max(others)


@pytest.mark.parametrize("strategy", ["precursor", "coarse-to-fine"])
def test_other_strategies_and_nodes(inspection, strategy):
    result = run_oip(
        inspection.net,
        "Conv2D_3",
        [2, 5],
        node=(1, 1),
        strategy=strategy,
        steps=120,
        precursors=4,
        snapshot_steps=(1, 40, 100),
    )
    alive = ~result.dead
    assert np.all(result.final_activation[alive] > result.start_activation[alive])
    assert sorted(result.snapshots) == [1, 40, 100]  # evolution pictures work for every strategy


def test_dense_nodes_and_bad_node(inspection):
    result = run_oip(inspection.net, "Dense_2", [4, 9], steps=80)
    assert np.all(result.final_activation > result.start_activation)
    with pytest.raises(ConfigError, match="outside the 3x3 maps of Conv2D_3"):
        run_oip(inspection.net, "Conv2D_3", [0], node=(3, 0))
    with pytest.raises(ConfigError, match=r"128 maps \(0..127\)"):
        run_oip(inspection.net, "Conv2D_3", [128])


def test_dead_map_is_reported_not_drawn(inspection):
    net = inspection.net
    bias = net.layers["Conv2D_3"].inner.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias[4] = -1e6  # map 4 can never become positive
    try:
        result = run_oip(net, "Conv2D_3", [4, 5], steps=30, retries=2)
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    assert result.dead.tolist() == [True, False]
    assert result.retries[0] == 2


class _BlotDetector(torch.nn.Module):
    """Map 0 fires only where a 3x3 patch of the standardised image sums above 35: smooth
    noise stays far below, a small bright blot on a blank 16x16 image reaches 47, a wide
    stroke 26; map 1 fires on anything bright."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
        with torch.no_grad():
            self.conv[0].weight.fill_(1.0)
            self.conv[0].bias.copy_(torch.tensor([-35.0, 0.0]))

    def forward(self, x):
        return self.conv(x)


def test_a_map_no_noise_wakes_grows_from_the_real_image_that_drives_it_most():
    net = _BlotDetector()
    images = np.zeros((4, 1, 16, 16), np.float32)
    images[1, 0, 6:9, 3:12] = 1.0  # a wide stroke: not enough
    images[3, 0, 6:9, 6:9] = 1.0  # a blot: the image that drives map 0
    search = {"steps": 20, "retries": 2, "input_shape": (1, 16, 16), "scales": (4, 8)}
    search["factors"] = (1.0, 0.5)
    alone = run_oip(net, "conv", [0, 1], **search)
    assert alone.dead.tolist() == [True, False] and alone.start_image.tolist() == [-1, -1]
    given = run_oip(net, "conv", [0, 1], images=images, **search)
    assert given.dead.tolist() == [False, False]
    assert given.start_image.tolist() == [3, -1]  # map 1 woke from noise and keeps it
    blot = (images[3, 0] - images[3, 0].mean()) / images[3, 0].std()
    np.testing.assert_allclose(given.start_images[0], blot, rtol=1e-5)
    assert given.final_activation[0] >= given.start_activation[0] > 0  # a blot is its best
    blank = run_oip(net, "conv", [0], images=images[[0, 1, 2]], **search)
    assert blank.dead.tolist() == [True] and blank.start_image.tolist() == [-1]


def test_cli_activations_compare_oip(cli, cnn_run, tmp_path):
    run = str(cnn_run)
    done = cli(
        *[
            "activations",
            "--model",
            run,
            "--layer",
            "Dense_1,Conv2D_2",
            "--layer",
            "Max_Pool_1",
            "--index",
            "1302",
            "--index",
            "4",
            "--standardize",
            "--out",
            str(tmp_path / "a"),
        ]
    )
    assert done.returncode == 0, done.stderr
    for layer in ("Dense_1", "Conv2D_2", "Max_Pool_1"):  # several layers, one forward pass
        assert (tmp_path / "a" / f"{layer}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"wrote {tmp_path / 'a' / f'{layer}.png'}" in done.stdout
    bad = cli(
        *[
            "activations",
            "--model",
            run,
            "--layer",
            "Conv2D_1",
            "--index",
            "10000",
            "--out",
            str(tmp_path / "b.png"),
        ]
    )
    assert bad.returncode == 2 and "valid indices are 0..9999" in bad.stderr
    done = cli(
        *[
            "compare",
            "--model",
            run,
            "--layer",
            "Conv2D_3",
            "--classes",
            "4,9",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    assert done.returncode == 0, done.stderr
    ranking = json.loads((tmp_path / "c/separation.json").read_text())["ranking"]
    assert len(ranking) == 128 and abs(ranking[0]["effect_size"]) >= abs(ranking[-1]["effect_size"])
    assert abs(ranking[0]["effect_size"]) > 1.0
    done = cli(
        *[
            "compare",
            "--model",
            run,
            "--layer",
            "Conv2D_2",
            "--indices",
            "1816,1270,1302",
            "--vs",
            "1249,1410,1858",
            "--out",
            str(tmp_path / "g"),
        ]
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "g/agreement.png").exists()
    done = cli(
        *[
            "oip",
            "--model",
            run,
            "--layer",
            "Max_Pool_1",
            "--maps",
            "0,1,2",
            "--steps",
            "60",
            "--snapshots",
            "1",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "o/oip.json").read_text())
    assert [u["unit"] for u in report["per_unit"]] == [0, 1, 2]
    assert {
        "final_activation",
        "start_activation",
        "steps",
        "converged",
        "retries",
        "dead",
        "start_test_image",
    } <= set(report["per_unit"][0])
    # dead means that neither noise nor any of the test images it is measured on drives it
    assert all(u["test_max_activation"] <= 0 for u in report["per_unit"] if u["dead"])
    for name in ("oips.png", "oips.npz", "evolution_1.png"):
        assert (tmp_path / "o" / name).exists()


def test_outputs_carry_provenance(cnn_run, real_data, tmp_path):
    from mapscope.workflows.compare import compare_classes, write_comparison
    from mapscope.workflows.oip import oip_layer, write_oips

    inspection = Run.open(cnn_run).inspection(real_data)
    write_oips(oip_layer(inspection, "Conv2D_3", [0, 1], steps=5, seed=7), tmp_path / "o")
    report = json.loads((tmp_path / "o/oip.json").read_text())
    assert report["provenance"]["settings"]["seed"] == 7
    assert "torch" in report["provenance"]["versions"]
    assert "mnist/t10k-images-idx3-ubyte.gz" in report["provenance"]["data_checksums"]
    write_comparison(compare_classes(inspection, "Dense_1", "test", 4, 9, 8), tmp_path / "c")
    assert json.loads((tmp_path / "c/separation.json").read_text())["provenance"]["data_checksums"]


def test_oips_of_a_sigmoid_layer_climb_its_input(mlp_run, real_data):
    """A sigmoid saturates at 1 and its gradient vanishes, so ``mapscope oip`` drives the MLP's
    ``Dense_1`` at the Linear before it, and measures the real images there too."""
    from mapscope.workflows.oip import oip_layer

    inspection = Run.open(mlp_run).inspection(real_data)
    result = oip_layer(inspection, "Dense_1", [0, 1, 2, 3], steps=100, seed=0)
    assert result.searched == "layers.Dense_1.0" and result.search.layer == "Dense_1"
    assert "driven at layers.Dense_1.0" in result.summary()
    r = result.search
    assert (r.final_activation > 1.5).all()  # above anything a sigmoid can give
    assert (r.final_activation > r.start_activation + 1).all()
    # the yardstick is measured on the same pre-activation, which a sigmoid would keep below 1
    assert (result.reference["max"] > 1).any()
    assert (result.reference["mean"] < r.final_activation).all()
    assert result.numbers()["searched"] == "layers.Dense_1.0"
