"""Figures read at a glance: no two pieces of text on top of each other.

``overlapping_texts`` draws a figure and compares the window extents of every visible text
artist (titles, labels, tick labels, annotations); a pair that overlaps is a defect a person
would see, like the unit numbers that printed twice as "102102" in ``separation.png``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from mapscope.inspect.compare import class_mean_maps, class_separation, unit_means
from mapscope.report import ae as ae_figures
from mapscope.report.compare import plot_separation
from mapscope.report.curves import plot_ae_history
from mapscope.report.samples import image_tiles


def undrawn_tick_labels(fig) -> set[int]:
    """Tick labels whose tick lies outside its axis' view: matplotlib keeps them visible but
    does not draw them."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                location = tick.get_loc()
                if location is None or not low - span <= location <= high + span:
                    hidden.update((id(tick.label1), id(tick.label2)))
    return hidden


def overlapping_texts(fig, tolerance: float = 1.0) -> list[tuple[str, str]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = undrawn_tick_labels(fig)
    boxes = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in hidden:
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((text.get_text(), box.expanded(1, 1).padded(-tolerance)))
    return [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]


@pytest.fixture(scope="module")
def separation():
    rng = np.random.default_rng(0)
    acts = rng.random((200, 128, 3, 3)).astype(np.float32)
    labels = np.repeat([4, 9], 100)
    acts[labels == 4, :40] += 0.5  # units 0..39 separate the classes
    return class_separation(unit_means(acts), labels, 4, 9), class_mean_maps(acts, labels, (4, 9))


@pytest.mark.parametrize("top", [16, 8, 1])
def test_separation_bars_and_maps_share_columns_without_overlapping_text(separation, top):
    fig = plot_separation(*separation, ("4", "9"), "Conv2D_3", top)
    assert overlapping_texts(fig) == []
    bars = fig.axes[0]
    ticks = [t.get_text() for t in bars.get_xticklabels()]
    assert ticks == [
        str(u) for u in separation[0].units[:top]
    ]  # each unit named once, under its bar
    first_map = fig.axes[1]
    column = first_map.get_position()
    centre = bars.transData.transform((0, 0))[0] / fig.bbox.width
    assert column.x0 < centre < column.x1  # bar 0 stands over map column 0
    scales = [
        ax.get_ylabel() for ax in fig.axes if ax.get_ylabel() in ("mean activation", "difference")
    ]
    assert scales == ["mean activation", "difference"]  # one for both class means, one for A - B


def test_autoencoder_figures_have_no_overlapping_text():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(500, 16))
    labels = rng.integers(0, 10, 500)
    names = tuple(str(i) for i in range(10))
    images = rng.random((12, 1, 28, 28))
    figures = [
        ae_figures.plot_components(codes, np.full(16, 0.02)),
        ae_figures.plot_components(codes[:, :2], np.full(2, 0.02)),  # `ae train --latent 2`
        ae_figures.plot_radii(
            {"data": np.linalg.norm(codes, axis=1), "uniform": rng.random(100)}, 16
        ),
        ae_figures.plot_nearest({"test": rng.random(100), "gmm": rng.random(100)}, 0.9),
        ae_figures.plot_correlation(np.corrcoef(codes, rowvar=False)),
        ae_figures.plot_pca(np.full(16, 1 / 16), codes[:, :2], labels, names),
        ae_figures.plot_pairs(codes, labels, names, [(0, 1), (2, 3)]),
        ae_figures.plot_reconstructions(
            images[:5], images[5:10], [f"test #{i}: 7" for i in range(5)], np.full(5, 0.01)
        ),
        ae_figures.plot_strips(
            [images[:10], images[:10]], ["test #0 -> #1", "test #2 -> #3"], "interpolation"
        ),
        plot_ae_history([{"epoch": 1, "loss": 0.2, "val_loss": 0.1, "lr": 1e-3}]),
    ]
    for fig in figures:
        assert overlapping_texts(fig) == [], fig.axes[0].get_title()
    # a 2-d code's two principal axes are numbered 1 and 2, with no 1.25 between them
    scree = ae_figures.plot_pca(np.array([0.65, 0.35]), codes[:, :2], labels, names).axes[0]
    scree.figure.canvas.draw()
    ticks = [t.get_text() for t in scree.get_xticklabels() if t.get_text()]
    assert ticks and all(t.lstrip("\u2212-").isdigit() for t in ticks), ticks


def test_the_layout_check_sees_text_on_text():
    from mapscope.report.figures import new_figure

    fig = new_figure(3, 2)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title("102")
    ax.text(0.5, 1.0, "102", transform=ax.transAxes, ha="center", va="bottom")
    assert overlapping_texts(fig)


def test_training_curves_count_whole_epochs():
    from mapscope.report.curves import plot_cnn_history

    row = {"loss": 0.3, "accuracy": 0.9, "val_loss": 0.2, "val_accuracy": 0.95, "lr": 1e-3}
    for epochs in (1, 3):
        fig = plot_cnn_history([{**row, "epoch": e} for e in range(1, epochs + 1)])
        assert overlapping_texts(fig) == []
        ax = fig.axes[0]
        assert ax.get_xlim() == (0.5, epochs + 0.5)  # not 0.96-1.04 for one epoch
        shown = [t for t in ax.get_xticks() if 0.5 <= t <= epochs + 0.5]
        assert shown and all(float(t).is_integer() for t in shown)  # no epoch 1.5


def test_activation_grids_label_their_scale_and_draw_nodes_as_bars():
    from mapscope.report.activations import plot_activation_grid

    rng = np.random.default_rng(0)
    images = rng.random((2, 28, 28))
    maps = rng.random((2, 32, 13, 13)).astype(np.float32)
    maps[:, 3] = 0.0  # a dead map
    fig = plot_activation_grid(images, maps, ["a", "b"], "Conv2D_1", standardize=True)
    assert overlapping_texts(fig) == []
    titles = [ax.get_title() for ax in fig.axes]
    assert any("standardized" in t for t in titles)
    assert any(ax.get_ylabel() == "standardized activation" for ax in fig.axes)  # colourbar
    shared = plot_activation_grid(images, maps, ["a", "b"], "Conv2D_1", shared_scale=(0.0, 2.0))
    assert any("one colour scale for all images" in ax.get_title() for ax in shared.axes)
    nodes = plot_activation_grid(images, rng.random((2, 100)), ["a", "b"], "Dense_1")
    assert len(nodes.axes[1].patches) == 100  # one bar per node
    assert overlapping_texts(nodes) == []


def test_group_agreement_names_its_groups_and_has_no_scale_for_masks():
    from mapscope.inspect.compare import group_difference, group_pattern
    from mapscope.report.compare import plot_group_agreement

    rng = np.random.default_rng(1)
    a, b = (
        group_pattern(rng.random((3, 16, 5, 5)) - 0.5),
        group_pattern(rng.random((3, 16, 5, 5)) - 0.5),
    )
    fig = plot_group_agreement(
        {"A": a, "B": b},
        group_difference(a, b),
        "Conv2D_2",
        members={"A": "test 1, 2", "B": "test 3"},
    )
    assert overlapping_texts(fig) == []
    titles = [ax.get_title() for ax in fig.axes]
    assert any("group A (test 1, 2)" in t for t in titles) and any(
        "group B (test 3)" in t for t in titles
    )
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert (
        labels.count("mean activation") == 2 and labels.count("mean A - mean B") == 1
    )  # no mask bar


def test_oip_grid_and_evolution_read_their_data():
    from types import SimpleNamespace

    from mapscope.report.oip import describe_rise, plot_evolution, plot_oips

    rng = np.random.default_rng(2)
    result = SimpleNamespace(
        units=list(range(20)),
        dead=np.arange(20) == 3,
        start_image=np.where(np.arange(20) == 5, 1234, -1),
        images=rng.random((20, 28, 28)),
        final_activation=rng.random(20) + 1,
        layer="Conv2D_3",
        node=None,
    )
    fig = plot_oips(result, {"p99": np.full(20, 0.5)})
    assert overlapping_texts(fig) == []
    titles = [ax.get_title() for ax in fig.axes]
    assert "5*" in titles and "4" in titles and "grown from the test image" in fig.get_suptitle()
    late = np.r_[np.zeros(30), np.linspace(0, 1, 270), np.ones(300)]
    assert describe_rise(late) == "half of the rise by step 166, 90 % by step 274 of 600"
    fig = plot_evolution({1: rng.random((28, 28)), 300: rng.random((28, 28))}, late, "Conv2D_3", 5)
    assert "step 166" in fig.axes[-1].get_title() and overlapping_texts(fig) == []


def test_pca_has_a_class_legend_and_image_loadings():
    from mapscope.report.cluster import plot_feature_sweep, plot_pca

    rng = np.random.default_rng(3)
    x = rng.random((300, 784))
    labels = rng.integers(0, 10, 300)
    result = {
        "explained_variance_ratio": np.full(10, 0.05),
        "components": rng.normal(size=(10, 784)),
        "projection": rng.normal(size=(300, 10)),
    }
    names = [f"class {i}" for i in range(10)]
    fig = plot_pca(result, x, labels, labels, [f"px{i}" for i in range(784)], [], names, (28, 28))
    assert any(
        ax.get_legend() is not None and ax.get_legend().get_title().get_text() == "class"
        for ax in fig.axes
    )
    assert fig.axes[1].images[0].get_array().shape == (28, 28 * 3 + 4)  # three 28x28 loadings
    rows = [{"k": k, "inertia": 1.0 / k, "silhouette": 0.1, "fit_seconds": 1.0} for k in (2, 3)]
    assert len(plot_feature_sweep(rows).axes) == 3  # no empty panel without MLP accuracies


def fake_match(runs: int):
    """A RunMatch of made-up numbers, shaped like the default CNN's."""
    from mapscope.inspect.match import UnitMatch
    from mapscope.workflows.match import PairMatch, RunMatch

    rng = np.random.default_rng(0)
    sizes = {"Conv2D_1": 32, "Conv2D_2": 64, "Dense_1": 100, "Dense_2": 10}
    layers = list(sizes)
    pairs = []
    for a, b in itertools.combinations(range(runs), 2):
        per_layer = {
            layer: {
                against: UnitMatch.of(rng.uniform(-0.2, 1.0, (n, n)))
                for against in ("trained", "untrained", "shuffled")
            }
            for layer, n in sizes.items()
        }
        pairs.append(PairMatch(a, b, per_layer, rng.uniform(0, 1, (4, 4))))
    labels = [f"seeds/seed={i}" for i in range(runs)]
    result = RunMatch(labels, layers, [layers] * runs, pairs, 10000, 1000, True, 1.0)
    result.oips = {
        (run, layer): {u: rng.random((28, 28)) for u in range(n)}
        for run in range(runs)
        for layer, n in sizes.items()
    }
    result.kernels = {run: rng.normal(size=(32, 3, 3)) for run in range(runs)}
    result.kernel_layer = result.layers[0]
    return result


@pytest.mark.parametrize("runs", [2, 5])
def test_match_pictures_have_no_text_on_text(runs):
    from mapscope.report import match as pictures
    from mapscope.workflows.match import shown_units

    result = fake_match(runs)
    figures = [
        pictures.plot_summary(result.per_layer()),
        pictures.plot_distributions(result),
        pictures.plot_cka(result),
        pictures.plot_pairs(result, "Conv2D_1", shown_units(result, "Conv2D_1"), 0, 1),
        pictures.plot_pairs(result, "Dense_2", shown_units(result, "Dense_2"), 0, 1),
        pictures.plot_common_units(result, "Conv2D_2", [[1, 2, 3, 4, 5][:runs]] * 3, 3),
        pictures.plot_common_units(result, "Conv2D_2", [], 0),
    ]
    for fig in figures:
        assert overlapping_texts(fig) == [], fig.axes[0].get_title()
    assert len(figures[1].axes) == 4  # a histogram per layer
    assert len(figures[2].axes) == (2 if runs > 2 else 1) * 2  # maps and their colour bars
    kernels = [im for ax in figures[3].axes for im in ax.images if im.get_cmap().name == "RdBu_r"]
    assert kernels, "the first layer's pairs show their kernels"
    for image in kernels:  # a signed picture: white is 0
        low, high = image.get_clim()
        assert low == -high == -np.abs(image.get_array()).max()


@pytest.mark.parametrize(
    "varied", [["seed"], ["lr", "seed"], ["optimizer", "batch_size", "seed"], ["l2"]]
)
def test_sweep_plot_has_no_text_on_text(varied):
    from mapscope.report.sweeps import plot_points

    values = {
        "seed": [0, 1, 2],
        "lr": [0.001, 0.002],
        "optimizer": ["adam", "sgd"],
        "batch_size": [32, 64],
        "l2": [0.1, 0.8],
    }
    rows = [
        {**dict(zip(varied, combination, strict=True)), "test_accuracy": 0.9 + 0.01 * k}
        for k, combination in enumerate(itertools.product(*(values[v] for v in varied)))
    ]
    fig = plot_points(rows, varied, "test_accuracy", True)
    assert overlapping_texts(fig) == []
    assert len(fig.axes[0].lines) > 0


def test_sweep_plot_means_span_seeds_only():
    """Three options and seeds: one line per combination of the two beside the x axis, each
    mean over the seeds of that combination alone."""
    from mapscope.report.sweeps import plot_points

    varied = ["max_train", "lr", "label_smoothing", "seed"]
    rows = [
        {"max_train": n, "lr": lr, "label_smoothing": ls, "seed": seed,
         "test_accuracy": 0.9 + n / 1e6 + lr + ls / 10 + seed / 1e4}
        for n, lr, ls, seed in itertools.product((100, 200), (0.01, 0.02), (0.0, 0.1), (0, 1, 2))
    ]  # fmt: skip
    fig = plot_points(rows, varied, "test_accuracy", True)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert len(labels) == 4 and "lr=0.02, label_smoothing=0.1" in labels[3]
    means = sorted(tuple(line.get_ydata()) for line in ax.lines if line.get_linestyle() == "-")
    expected = sorted(
        tuple(0.9 + n / 1e6 + lr + ls / 10 + 1 / 1e4 for n in (100, 200))
        for lr, ls in itertools.product((0.01, 0.02), (0.0, 0.1))
    )
    np.testing.assert_allclose(means, expected)


@pytest.mark.parametrize("n", [1, 7, 23])
def test_image_tiles_keep_titles_apart_and_above_their_images(n):
    images = np.random.default_rng(0).random((n, 28, 28))
    titles = [f"#{9990 + i}\npred 4\ntrue 9" for i in range(n)]
    fig = image_tiles(images, titles, per_row=10, suptitle="false negatives for 9: first 23 of 60")
    assert overlapping_texts(fig) == []
    (ax,) = fig.axes
    renderer = fig.canvas.get_renderer()
    pictures = [image.get_window_extent(renderer) for image in ax.get_images()]
    labels = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(pictures) == len(labels) == n
    for picture, label in zip(pictures, labels, strict=True):
        assert label.y0 >= picture.y1 and abs(label.x0 + label.x1 - picture.x0 - picture.x1) < 2
        assert not any(label.overlaps(other) for other in pictures)
    width, height = fig.canvas.get_width_height()
    assert all(p.x0 >= 0 and p.x1 <= width and p.y0 >= 0 and p.y1 <= height for p in pictures)


def test_signed_tiles_put_zero_at_the_middle_colour_of_every_image():
    from mapscope.report.samples import image_tiles

    weights = np.stack([np.full((4, 4), 0.5), np.linspace(-0.2, 1.0, 16).reshape(4, 4)])
    fig = image_tiles(weights, ["a", "b"], cmap="RdBu_r", signed=True)
    limits = [image.get_clim() for image in fig.axes[0].get_images()]
    assert limits == [(-0.5, 0.5), (-1.0, 1.0)]
    plain = image_tiles(weights, ["a", "b"])
    assert [image.get_clim() for image in plain.axes[0].get_images()][1] == (-0.2, 1.0)


def test_training_curves_say_what_the_training_loss_adds(real_data, tmp_path):
    """A label-smoothed run's training loss sits far above its plain validation loss; the
    legend says why, and says nothing for a run that minimises plain cross-entropy."""
    from small_nets import SMALL_CNN

    from mapscope.cnn.saved import minimised_beside_cross_entropy
    from mapscope.cnn.train import TrainConfig, train
    from mapscope.report.curves import plot_cnn_history, plot_mlp_history, what_training_adds
    from mapscope.runs import Run

    quick = {"epochs": 1, "max_train": 128, "max_test": 200, "threads": 1}
    train(tmp_path / "s", TrainConfig(label_smoothing=0.1, **quick), SMALL_CNN, data_root=real_data)
    train(tmp_path / "p", TrainConfig(**quick), SMALL_CNN, data_root=real_data)
    net = Run.open(tmp_path / "s").module()
    assert minimised_beside_cross_entropy(tmp_path / "s", net) == "label smoothing 0.1"
    assert minimised_beside_cross_entropy(tmp_path / "p", net) == ""
    row = {"epoch": 1, "loss": 0.6, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": 0.95, "lr": 0}
    loss_panel, accuracy_panel = plot_cnn_history([row], "label smoothing 0.1").axes[:2]
    assert [t.get_text() for t in loss_panel.get_legend().get_texts()] == [
        "train (mean over the pass,\nwith label smoothing 0.1)",
        "validation (test split)",
    ]
    assert accuracy_panel.get_legend().get_texts()[0].get_text() == "train (mean over the pass)"
    ae_loss_panel = plot_ae_history([{"epoch": 1, "loss": 0.2, "val_loss": 0.1, "lr": 0}]).axes[0]
    assert ae_loss_panel.get_legend().get_texts()[0].get_text() == "train (mean over the pass)"
    # the MLP's L2 penalty is over half of its default training loss (0.3 against 0.15)
    assert what_training_adds(0.1, 0.0, 0.5) == "label smoothing 0.1, L2 penalty"
    assert what_training_adds(l1=0.01) == "L1 penalty" and what_training_adds() == ""
    batch = {"epoch": 1, "cost": 150.0, "error": 0.01, "reg_ratio": 0.6}
    mlp_loss_panel = plot_mlp_history([row], [batch], what_training_adds(l2=0.1)).axes[3]
    assert [t.get_text() for t in mlp_loss_panel.get_legend().get_texts()] == [
        "train (mean over the pass,\nwith L2 penalty)",
        "test",
    ]


def test_an_attribution_that_is_zero_everywhere_says_so():
    """Grad-CAM is zero over an image when no map of its layer speaks for the class (the
    ReLU of a negative sum): the panel says so rather than showing an empty square."""
    from mapscope.report.attribution import plot_attributions

    rng = np.random.default_rng(0)
    images = rng.random((2, 28, 28))
    maps = {"gradcam": np.stack([rng.random((28, 28)), np.zeros((28, 28))])}
    maps["ig"] = np.stack([rng.normal(size=(28, 28)), np.zeros((28, 28))])
    fig = plot_attributions(images, maps, ["#0", "#1"], {"gradcam": "Grad-CAM", "ig": "IG"}, {"ig"})
    said = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    assert said == [[], [], [], [], ["zero everywhere"], ["zero everywhere"]]
    FigureCanvasAgg(fig)
    assert overlapping_texts(fig) == []
