"""The pieces the atlas is computed from, on small networks built here: unit statistics,
receptive fields, attributions (Captum) and the PNG tiles."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mapscope.atlas import pictures
from mapscope.errors import ConfigError
from mapscope.inspect.attribution import attribute, check_methods, last_map_layer
from mapscope.inspect.receptive import _measured, receptive_fields
from mapscope.inspect.taps import layer_outputs
from mapscope.inspect.unit_stats import unit_statistics


def small_cnn(dead_unit: int | None = None) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(1, 4, 3, padding=1))
    net.add_module("relu1", nn.ReLU())
    net.add_module("pool1", nn.MaxPool2d(2))
    net.add_module("conv2", nn.Conv2d(4, 6, 3, stride=2, dilation=2))
    net.add_module("relu2", nn.ReLU())
    net.add_module("flat", nn.Flatten())
    net.add_module("dense", nn.Linear(6 * 2 * 2, 3))
    if dead_unit is not None:
        with torch.no_grad():
            net.conv2.weight[dead_unit] = 0
            net.conv2.bias[dead_unit] = -1
    return net.eval()


def test_statistics_equal_a_direct_computation():
    net = small_cnn(dead_unit=2)
    x = np.random.default_rng(0).normal(size=(37, 1, 16, 16)).astype(np.float32)
    labels = np.arange(37) % 3
    stats = unit_statistics(net, x, ["relu1", "relu2", "dense"], batch=10)
    full = layer_outputs(net, x, ["relu1", "relu2", "dense"])
    maps = full["relu2"].reshape(37, 6, -1)
    s = stats["relu2"]
    np.testing.assert_allclose(s.mean, maps.mean(2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.peak, maps.max(2), rtol=1e-5, atol=1e-6)
    assert s.shape == (6, 2, 2) and s.is_map
    top = s.top(5)
    assert top.shape == (6, 5)
    for unit in (0, 1, 5):
        assert np.all(np.diff(s.peak[top[unit], unit]) <= 0)  # best first
        # batched and whole forwards may differ in the last float bit
        assert s.peak[top[unit][-1], unit] >= np.sort(maps.max(2)[:, unit])[-5] - 1e-5
        image = top[unit][0]
        r, c = s.peak_position(image, unit)
        assert full["relu2"][image, unit, r, c] == pytest.approx(maps[image, unit].max())
    assert s.dead[2] and s.dead.tolist() == (maps.max((0, 2)) <= 0).tolist()
    assert not s.dead.all()
    class_means = s.class_means(labels, 3)
    np.testing.assert_allclose(class_means[1], maps.mean(2)[labels == 1].mean(0), rtol=1e-5)
    assert stats["dense"].dead.sum() == 0  # logits can be negative: alive while they vary
    np.testing.assert_allclose(stats["dense"].mean, full["dense"], rtol=1e-5, atol=1e-6)


def test_selectivity_and_correlation():
    from mapscope.inspect.unit_stats import UnitStatistics

    labels = np.repeat(np.arange(4), 25)
    only_class_2 = (labels == 2).astype(float)
    everyone = np.ones(100)
    noise = np.random.default_rng(1).random(100)
    mean = np.stack([only_class_2, everyone, only_class_2 * 2 + 0.01 * noise, noise], 1)
    s = UnitStatistics("x", (4,), mean, mean, np.zeros_like(mean, dtype=int))
    sel = s.selectivity(labels, 4)
    assert sel[0] == pytest.approx(1.0) and sel[1] == pytest.approx(0.0)
    order, r = s.correlated(2)
    assert order[0, 0] == 2 and r[0, 0] > 0.99


def test_receptive_fields_analytic_agree_with_gradients():
    net = small_cnn()
    fields = receptive_fields(net, (1, 16, 16), ["conv1", "pool1", "relu2", "dense"])
    assert fields["conv1"].size == (3, 3) and fields["conv1"].stride == (1, 1)
    assert fields["pool1"].size == (4, 4) and fields["pool1"].stride == (2, 2)
    # dilated 3x3 (span 5) at jump 2 on top of 4: 4 + 4 * 2 = 12; stride 2 * 2 = 4
    assert fields["relu2"].size == (12, 12) and fields["relu2"].stride == (4, 4)
    assert fields["dense"] is None
    x = torch.zeros(1, 1, 16, 16)
    for layer in ("conv1", "pool1"):  # interior positions: the gradient reaches the whole field
        assert _measured(net, x, layer).size == fields[layer].size
    # conv1 pads by 1: position (0, 0) sees rows/columns -1..1, clipped to 0..1
    assert fields["conv1"].box(0, 0, 16, 16) == (0, 0, 2, 2)
    assert fields["conv1"].box(5, 7, 16, 16) == (4, 6, 7, 9)


def test_unknown_resize_is_measured():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Conv2d(2, 2, 1)
    ).eval()
    fields = receptive_fields(net, (1, 16, 16), ["2", "3"])
    assert fields["2"] is not None and fields["3"] is not None
    # adaptive pooling 14 -> 4 averages bins of 4 or 5 columns: with the 3x3 conv, 6 or 7 pixels
    assert fields["3"].size[0] in (6, 7) and fields["3"].stride == (4, 4)


def test_attributions_on_a_linear_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = np.random.default_rng(0).normal(size=(2, 1, 4, 4)).astype(np.float32)
    blank = np.full((1, 1, 4, 4), -0.5, dtype=np.float32)
    targets = np.array([0, 2])
    w = net[1].weight.detach().numpy()
    sal = attribute(net, x, targets, "saliency", blank, (1, 4, 4)).maps
    np.testing.assert_allclose(sal[1], np.abs(w[2]).reshape(4, 4), rtol=1e-5)
    ig = attribute(net, x, targets, "ig", blank, (1, 4, 4)).maps
    # completeness: attributions add up to f(x) - f(baseline); exact for a linear model
    with torch.no_grad():
        gap = net(torch.from_numpy(x)) - net(torch.from_numpy(blank))
    assert ig[0].sum() == pytest.approx(float(gap[0, 0]), rel=1e-4)
    np.testing.assert_allclose(ig[1], (w[2].reshape(4, 4) * (x[1, 0] + 0.5)), rtol=1e-4)
    occ = attribute(net, x, targets, "occlusion", blank, (1, 4, 4)).maps
    assert occ.shape == (2, 4, 4) and np.isfinite(occ).all()
    with pytest.raises(ConfigError, match="Grad-CAM needs a layer"):
        attribute(net, x, targets, "gradcam", blank, (1, 4, 4), ["0", "1"])
    with pytest.raises(ConfigError, match="unknown"):
        check_methods(["lime"])


def test_gradcam_on_the_last_map_layer():
    net = small_cnn()
    x = np.random.default_rng(2).normal(size=(3, 1, 16, 16)).astype(np.float32)
    layers = ["conv1", "relu1", "pool1", "conv2", "relu2", "flat", "dense"]
    assert last_map_layer(net, layers, torch.from_numpy(x)) == "relu2"
    result = attribute(net, x, np.array([0, 1, 2]), "gradcam", x[:1] * 0, (1, 16, 16), layers)
    assert result.layer == "relu2" and result.maps.shape == (3, 16, 16)
    assert (result.maps >= 0).all()  # relu_attributions


def test_png_tiles_decode():
    values = np.linspace(-1, 1, 28 * 28).reshape(28, 28)
    for data, mode in (
        (pictures.grey(values), "L"),
        (pictures.contrast(values), "L"),
        (pictures.colour(values, "RdBu_r", symmetric=True), "RGB"),
        (pictures.strip(np.stack([values, values * 2])), "L"),
    ):
        image = Image.open(io.BytesIO(data))
        assert image.mode == mode
    assert Image.open(io.BytesIO(pictures.strip(np.zeros((3, 5, 4)), pad=1))).size == (14, 5)
    assert pictures.data_uri(b"x").startswith("data:image/png;base64,")


def test_oip_target_skips_a_saturating_activation():
    from mapscope.inspect.oip.objectives import oip_target
    from mapscope.mlp.module import MLPModule

    mlp = MLPModule((784, 20, 10), "sigmoid")
    assert oip_target(mlp, "Dense_1") == "layers.Dense_1.0"  # the Linear before the sigmoid
    assert oip_target(mlp, "Dense_2") == "Dense_2"  # logits: Identity does not saturate
    assert oip_target(small_cnn(), "relu2") == "relu2"


def test_masked_peaks_bottom_and_range_equal_a_direct_computation():
    net = small_cnn(dead_unit=2)
    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(3)).numpy()
    inside = np.zeros((8, 8), dtype=bool)
    inside[2:6, 1:7] = True
    s = unit_statistics(net, x, ["relu1"], batch=7, inside={"relu1": inside})["relu1"]
    maps = layer_outputs(net, x, ["relu1"])["relu1"]  # (40, 4, 8, 8)
    np.testing.assert_allclose(s.peak, maps[:, :, inside].max(2), rtol=1e-6)
    np.testing.assert_allclose(s.highest, maps.reshape(40, 4, -1).max(2), rtol=1e-6)
    rows, cols = np.divmod(s.where, 8)
    assert inside[rows, cols].all()  # the peak's position lies inside the mask
    # least: by peak, weakest first; across the range: one per equal-count slice
    np.testing.assert_array_equal(np.sort(s.peak[s.bottom(5)[1], 1]), s.peak[s.bottom(5)[1], 1])
    assert s.peak[s.bottom(5)[1], 1].max() <= np.sort(s.peak[:, 1])[4]
    spread = s.across_range(4, seed=1)[1]
    ranks = np.argsort(np.argsort(s.peak[:, 1], kind="stable"), kind="stable")[spread]
    assert [r // 10 for r in ranks] == [0, 1, 2, 3]
    # an all-True or all-False mask means "every position"
    plain = unit_statistics(net, x, ["relu1"], inside={"relu1": np.ones((8, 8), bool)})["relu1"]
    assert plain.inside is None and plain.peak_anywhere is None


def test_rarely_firing_units_are_told_apart_from_dead_ones():
    from mapscope.inspect.unit_stats import UnitStatistics

    peak = np.zeros((200, 3))
    peak[:, 0] = 1.0  # fires on every image
    peak[0, 1] = 0.5  # fires on one image in 200
    s = UnitStatistics("layer", (3,), peak.copy(), peak, np.zeros((200, 3), int))
    assert s.dead.tolist() == [False, False, True]
    assert s.rarely_fires().tolist() == [False, True, False]
    assert s.firing_rate().tolist() == [1.0, 0.005, 0.0]


def test_positions_away_from_rare_pixels():
    from mapscope.atlas.build import positions_away_from
    from mapscope.inspect.receptive import Field

    reach = np.ones((8, 8))
    reach[0, :] = 50.0  # the top row is almost never inked
    field = Field(size=(3, 3), stride=(1, 1), offset=(1.0, 1.0))  # a valid 3x3 conv: 6x6 map
    mask = positions_away_from(field, (4, 6, 6), reach)
    assert mask.shape == (6, 6) and not mask[0].any() and mask[1:].all()
    assert positions_away_from(None, (10,), reach) is None


def test_the_exported_chain_runs_like_the_network():
    from mapscope.atlas.network import _run, export_chain

    net = small_cnn()
    net.conv2 = nn.Conv2d(4, 6, 3, stride=2)  # the chain has no dilated convolutions
    net.dense = nn.Linear(6, 3)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).numpy()
    chain, why = export_chain(net, x, ["relu1", "pool1", "dense"])
    assert chain is not None, why
    out, outputs = _run(chain, torch.from_numpy(x))
    with torch.no_grad():
        torch.testing.assert_close(out, net(torch.from_numpy(x)))
    pooled = layer_outputs(net, x, ["pool1"])["pool1"]
    np.testing.assert_allclose(outputs[chain.ends["pool1"]].numpy(), pooled, rtol=1e-5)

    class Functional(nn.Module):  # a reshape the chain cannot follow: x * 2 between modules
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(64, 5), nn.Linear(5, 2)

        def forward(self, x):
            return self.b(self.a(x.flatten(1)) * 2)

    chain, why = export_chain(Functional().eval(), x, ["a", "b"])
    assert chain is None and "b does not read the output" in why
    larger = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)).numpy()
    dilated, why = export_chain(small_cnn(), larger, ["relu1"])
    assert dilated is None and "dilated" in why


def test_colour_scales_end_below_a_single_extreme_pixel():
    from mapscope.atlas.site import clipped_bound

    values = np.linspace(0, 1, 1000)
    assert clipped_bound(values) == 1.0  # no outlier: the largest value
    values[0] = 500.0
    assert clipped_bound(values) == pytest.approx(2 * np.percentile(values, 99))


def test_a_network_without_convolutions_gets_a_smooth_oip_search():
    from mapscope.inspect.oip.settings import OIPSettings, settings_for
    from mapscope.inspect.oip.start import gaussian_blur
    from mapscope.inspect.oip.strategies import run_oip

    plain = OIPSettings(steps=200, scales=(2, 4, 16), factors=(0.5, 0.5, 0.5), device="cpu")
    assert settings_for(small_cnn(), plain) == plain
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(256, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    chosen = settings_for(mlp, plain)
    assert (chosen.start_level, chosen.smooth) == (0.1, 1.0)
    assert settings_for(mlp, plain.with_options(smooth=0.5)).smooth == 0.5  # the user's choice
    with pytest.raises(ConfigError, match="smooth"):
        plain.with_options(smooth=-1)
    # the blur keeps a constant image and the total of an impulse, and spreads the impulse
    flat = torch.full((1, 1, 9, 9), 2.0)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1.0
    spread = gaussian_blur(impulse, 1.0)
    assert spread.sum().item() == pytest.approx(1.0, abs=1e-5) and spread.max() < 0.2
    # smoother OIPs: less difference between neighbouring pixels
    rough = run_oip(mlp, "3", [0, 1], settings=plain, input_shape=(1, 16, 16))
    smooth = run_oip(mlp, "3", [0, 1], settings=chosen, input_shape=(1, 16, 16))

    def jumps(images):
        return np.abs(np.diff(images, axis=-1)).mean()

    assert jumps(smooth.images) < 0.7 * jumps(rough.images)
    # random weights want pixel noise, so the prior costs them activation (a trained MLP's
    # hidden units lose a few percent); the search still climbs
    assert (smooth.final_activation > smooth.start_activation + 1).all()
